"""benchmarks.llama_decode stamps a row with the code the caller names, never by asking git."""

import json
import subprocess

from benchmarks import llama_decode


def test_the_row_carries_the_code_it_was_given_and_no_git_is_run(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_decode, "load_checkpoint", lambda *args, **kwargs: (None, None, None))
    monkeypatch.setattr(llama_decode, "decode_seconds", lambda *args: ([0.5, 0.25], "float32"))
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: (_ for _ in ()).throw(AssertionError(args)))
    out = tmp_path / "decode.jsonl"
    base = ["--context", "8", "--new-tokens", "4", "--label", "after", "--out", str(out)]
    llama_decode.main([*base, "--code", "abc1234"])
    llama_decode.main(base)
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["code"] == "abc1234" and second["code"] is None
    assert first["tokens_per_s_best"] == 4 / 0.25
