"""benchmarks/gpu_ttft_8b.py: the 8B shape, its refusal on CPU, and a seconds-long CPU smoke run."""

import importlib.util
import json
from pathlib import Path

import pytest

from prophetkv_jax.model.weights import shape_mismatches

_PATH = Path(__file__).parents[2] / "benchmarks" / "gpu_ttft_8b.py"
_spec = importlib.util.spec_from_file_location("gpu_ttft_8b", _PATH)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


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


def test_cpu_smoke_run_times_both_methods(tmp_path):
    out = tmp_path / "ttft.json"
    assert script.main(["--allow-cpu", "--scale", "0.02", "--contexts", "384", "--chunk-tokens", "64",
                        "--repeats", "1", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    config = script.scaled_config(0.02)
    assert not shape_mismatches(script.random_params(config), config)
    assert payload["config"]["num_layers"] == config.num_layers == 2 and payload["config"]["dtype"] == "bfloat16"
    full, prophet = payload["results"]
    assert (full["method"], prophet["method"], prophet["ratio"]) == ("full", "prophetkv", 0.2)
    assert full["ttft_s"] > 0 and prophet["speedup_vs_full"] == pytest.approx(full["ttft_s"] / prophet["ttft_s"])
    assert prophet["kv_cache_dtype"] == "bfloat16"
