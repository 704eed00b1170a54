"""``--dtype bfloat16`` reaches the model on every CLI that loads one: evaluate.py and the benchmarks."""

import importlib
import json

import pytest

from prophetkv_jax import evaluation
from prophetkv_jax.model.checkpoint import load_checkpoint
from prophetkv_jax.store import model_fingerprint


def benchmark(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def test_evaluate_records_the_bfloat16_model(tiny_llama_dir, tmp_path):
    """The records' settings carry the fingerprint of the bf16-loaded model (its config names the dtype)."""
    argv = ["--task", "ruler", "--model", str(tiny_llama_dir), "--dtype", "bfloat16", "--no-chat",
            "--subtasks", "niah_single_1", "--samples", "1", "--context", "192", "--chunk-tokens", "64",
            "--methods", "full,prophetkv", "--max-new-tokens", "2", "--out", str(tmp_path)]
    assert evaluation.main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    fingerprint = lambda dtype: model_fingerprint(*reversed(load_checkpoint(tiny_llama_dir, dtype)[:2]))  # noqa: E731
    assert {r["settings"]["model"] for r in records} == {fingerprint("bfloat16")} != {fingerprint("float32")}
    assert json.loads((tmp_path / "summary.json").read_text())["settings"]["dtype"] == "bfloat16"


def test_evaluate_refuses_an_unknown_dtype_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        evaluation.parse_args(["--task", "ruler", "--dtype", "float16"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--dtype" in err


def test_ttft_benchmark_runs_every_method_with_a_bfloat16_cache(tiny_llama_dir, tmp_path):
    out = tmp_path / "ttft.json"
    benchmark("prophetkv_ttft").main([
        "--model", str(tiny_llama_dir), "--dtype", "bfloat16", "--contexts", "256", "--chunks", "64",
        "--ratios", "0.2", "--methods", "full,prophetkv", "--repeats", "1", "--out", str(out)])
    payload = json.loads(out.read_text())
    assert payload["dtype"] == "bfloat16"
    assert {(r["method"], r["kv_cache_dtype"]) for r in payload["results"]} == {
        ("full", "bfloat16"), ("prophetkv", "bfloat16")}


def test_decode_benchmark_decodes_from_a_bfloat16_cache(tiny_llama_dir, tmp_path):
    out = tmp_path / "decode.jsonl"
    benchmark("llama_decode").main(["--model", str(tiny_llama_dir), "--dtype", "bfloat16", "--context", "32",
                                    "--new-tokens", "4", "--repeats", "1", "--label", "bf16", "--out", str(out)])
    row = json.loads(out.read_text())
    assert (row["dtype"], row["kv_cache_dtype"]) == ("bfloat16", "bfloat16")


def test_prefill_benchmark_runs_both_implementations_in_bfloat16(tiny_llama_dir, tmp_path):
    out = tmp_path / "prefill.json"
    benchmark("llama_prefill").main(["--model", str(tiny_llama_dir), "--dtype", "bfloat16", "--lengths", "64",
                                     "--repeats", "1", "--matmul-sizes", "64", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["dtype"] == "bfloat16" and report["results"][0]["project_tokens_per_s"] > 0
