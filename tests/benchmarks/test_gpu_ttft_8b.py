"""benchmarks.gpu_ttft_8b: the 8B shape, its refusal on CPU, and a seconds-long CPU smoke run."""

import json

import jax
import pytest

from benchmarks import gpu_ttft_8b as script
from prophetkv_jax import pipeline
from prophetkv_jax.model.weights import shape_mismatches


def test_full_scale_is_llama_3_1_8b_in_bfloat16():
    c = script.scaled_config(1.0)
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.intermediate_size, c.vocab_size) == (
        32, 4096, 32, 8, 14336, 128256)
    assert c.dtype == "bfloat16" and c.rope_scaling.factor == 8.0
    assert c.rope_scaling.original_max_position_embeddings == 8192


@pytest.mark.parametrize("argv", [[], ["--allow-cpu"], ["--allow-cpu", "--scale", "0.5"]])
def test_refuses_cpu_in_one_line_unless_asked_with_a_tiny_scale(argv, capsys):
    assert script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to run on CPU" in err


def test_cpu_smoke_run_times_every_row_and_phase(tmp_path, monkeypatch):
    hashes = []  # the weights are hashed once per run, not once per engine (8B: ~16 GB a hash)

    def counted(real):
        return lambda *args: hashes.append(args) or real(*args)

    for module in (script, pipeline):
        monkeypatch.setattr(module, "model_fingerprint", counted(module.model_fingerprint))
    out = tmp_path / "ttft.json"
    assert script.main(["--allow-cpu", "--scale", "0.02", "--contexts", "384", "--chunk-tokens", "64",
                        "--repeats", "1", "--matmul-sizes", "256", "--out", str(out)]) == 0
    assert len(hashes) == 1
    payload = json.loads(out.read_text())
    config = script.scaled_config(0.02)
    assert not shape_mismatches(script.random_params(config), config)
    assert payload["config"]["num_layers"] == config.num_layers == 2 and payload["config"]["dtype"] == "bfloat16"
    assert payload["matmul_peak_tflops"] > 0 and any("transformers row skipped" in n for n in payload["notes"])
    full, device, host = payload["results"]
    assert [r["method"] for r in (full, device, host)] == ["full", "prophetkv_device_tier", "prophetkv_host_tier"]
    assert 0 < full["share_of_matmul_peak"] and full["speedup_vs_fastest_full"] == 1.0
    for row in (device, host):
        assert row["ratio"] == 0.2 and row["kv_cache_dtype"] == "bfloat16"
        assert row["speedup_vs_fastest_full"] == pytest.approx(full["ttft_s"] / row["ttft_s"])
        assert set(row["phases_s"]) == set(script.PHASES) and 0 < row["assembly_share"] < 1
        assert 0 < row["attended_pair_fraction"] <= 1 and row["program_launches"] > 0
    # one sync for the result; the host tier's copies are waited for once more, before the first write
    assert (device["host_syncs"], host["host_syncs"]) == (1, 2)
    assert [r["recompiles"] for r in (full, device, host)] == [0, 0, 0]  # every shape was warmed before timing
    assert payload["jax"] == jax.__version__ and payload["device_kind"]
    # each pass's kernel as traced in this process (other tests' choices for a "gpu" included): on CPU all blocked
    kernels = [k for k in payload["kernels"] if k["backend"] == "cpu"]
    assert {k["kernel"] for k in kernels} == {"blocked"} and any(k["stage_one"] for k in kernels)
    assert (tmp_path / "ttft.md").read_text().count("| 384 |") == 3
