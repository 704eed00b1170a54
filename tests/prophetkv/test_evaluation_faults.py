"""``python evaluate.py --task ruler`` under faults, run in-process on a tiny random HF checkpoint:
non-finite logits, Ctrl-C, a full disk, an unwritable --out. Each ends in one line with the
right exit code, and the records on disk stay valid and resumable.

The first run in this module compiles the tiny model (a few seconds); the others reuse it.
"""

import dataclasses
import errno
import json
import os

import numpy as np
import pytest
from tiny_checkpoints import HF_CONFIG, write_hf_dir

import evaluate as evaluate_cli
from prophetkv_jax import evaluation, run_records
from prophetkv_jax.pipeline import Engine
from runkit.records import load_records

ARGS = ["--task", "ruler", "--subtasks", "niah_single_1", "--samples", "1", "--context", "256",
        "--chunk-tokens", "64", "--methods", "full,naive", "--max-new-tokens", "2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_hf_dir(tmp_path_factory.mktemp("tiny") / "m")


def run(capsys, model, out) -> tuple[int, str]:
    """(exit code, last stderr line) of evaluate.py on ``model`` writing to ``out``."""
    code = evaluate_cli.main([*ARGS, "--model", str(model), "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines[-1] if lines else ""


def records_in(out) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def poison_method(monkeypatch, method: str) -> None:
    """Engine.prefill gives ``method`` NaN logits (as an overflowing cache would)."""
    real = Engine.prefill

    def prefill(self, prompt, method_=method, ratio=0.2):
        result = real(self, prompt, method_, ratio)
        nan = np.full_like(np.asarray(result.last_logits), np.nan)
        return dataclasses.replace(result, last_logits=nan) if method_ == method else result

    monkeypatch.setattr(Engine, "prefill", prefill)


def test_non_finite_logits_fail_the_record_and_are_left_out_of_every_mean(model, tmp_path, capsys, monkeypatch):
    poison_method(monkeypatch, "naive")
    out = tmp_path / "out"
    code, line = run(capsys, model, out)
    assert code == 2 and line == (f"evaluate.py: error: 1 of 2 records failed (non-finite logits); they are kept in "
                                  f"{out / 'records.jsonl'} with an error field and left out of every mean")
    by_method = {r["method"]: r for r in records_in(out)}
    assert by_method["naive"]["error"] == "non-finite logits from this method"
    assert all(by_method["naive"][k] is None for k in ("score", "kl", "top1_agreement", "same_answer"))
    assert "error" not in by_method["full"] and by_method["full"]["kl"] == pytest.approx(0.0, abs=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["full"]
    assert summary["failed"] == [{"task": "niah_single_1", "method": "naive", "ratio": None,
                                  "error": "non-finite logits from this method", "records": 1}]
    table = (out / "results.md").read_text()
    assert "**1 of 2 records failed**" in table and "| niah_single_1 | naive | 1 | non-finite logits" in table

    monkeypatch.undo()  # the same command resumes: the failed record is kept, not redone
    assert run(capsys, model, out)[0] == 2 and len(records_in(out)) == 2


def test_a_model_whose_logits_overflow_fails_every_record(tmp_path, capsys):
    """Finite weights (they pass the load check) whose logits are +-inf: full prefill's reference is
    not finite, so no method can agree with it."""
    signs = np.where(np.random.default_rng(0).random((HF_CONFIG["vocab_size"], 16)) < 0.5, -3e38, 3e38)
    overflowing = write_hf_dir(tmp_path / "m", edit=lambda t: t.update({"lm_head.weight": signs.astype(np.float32)}))
    out = tmp_path / "out"
    code, line = run(capsys, overflowing, out)
    assert code == 2 and line.startswith("evaluate.py: error: 2 of 2 records failed (non-finite logits)")
    assert {r["error"] for r in records_in(out)} == {"non-finite logits from full prefill"}
    assert json.loads((out / "summary.json").read_text())["rows"] == []


@pytest.mark.parametrize("at_call", [1, 2])
def test_ctrl_c_says_what_is_saved_and_the_same_command_resumes(model, tmp_path, capsys, monkeypatch, at_call):
    """Ctrl-C before the first record or after one: exit 130, one line, the records intact."""
    real, calls = run_records.append_jsonl, []

    def append(path, row):
        calls.append(row)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        real(path, row)

    monkeypatch.setattr(run_records, "append_jsonl", append)
    out = tmp_path / "out"
    code, line = run(capsys, model, out)
    saved = at_call - 1
    assert code == 130 and line == (f"evaluate.py: interrupted: {saved} record(s) saved in {out / 'records.jsonl'}; "
                                    "the same command resumes")
    before = (out / "records.jsonl").read_text() if saved else ""
    assert len(load_records(out / "records.jsonl")) == saved
    monkeypatch.undo()
    assert run(capsys, model, out)[0] == 0
    assert len(records_in(out)) == 2 and (out / "records.jsonl").read_text().startswith(before)


def test_full_disk_while_appending_a_record_names_the_file_and_keeps_the_others(model, tmp_path, capsys, monkeypatch):
    real, calls = run_records.append_jsonl, []

    def append(path, row):
        calls.append(row)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises: no file name
        real(path, row)

    monkeypatch.setattr(run_records, "append_jsonl", append)
    out = tmp_path / "out"
    code, line = run(capsys, model, out)
    assert code == 2 and line == (f"evaluate.py: error: {out / 'records.jsonl'}: cannot write it (No space left on "
                                  "device); the records already written are kept")
    assert len(records_in(out)) == 1
    monkeypatch.undo()
    assert run(capsys, model, out)[0] == 0 and len(records_in(out)) == 2


def test_full_disk_while_writing_the_tables_names_the_file(model, tmp_path, capsys, monkeypatch):
    real = evaluation.atomic_write

    def atomic_write(path, data, durable=False):
        if path.name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data, durable)

    monkeypatch.setattr(evaluation, "atomic_write", atomic_write)
    out = tmp_path / "out"
    code, line = run(capsys, model, out)
    assert code == 2 and line.startswith(f"evaluate.py: error: {out / 'summary.json'}: cannot write it (No space")
    assert len(records_in(out)) == 2 and not (out / "summary.json").exists()


def _out_is_a_file(tmp_path, read_only):
    (tmp_path / "out").write_text("not a folder")
    return tmp_path / "out", tmp_path / "out"


def _records_is_a_folder(tmp_path, read_only):
    (tmp_path / "out" / "records.jsonl").mkdir(parents=True)
    return tmp_path / "out", tmp_path / "out" / "records.jsonl"


def _read_only_folder(tmp_path, read_only):
    return read_only(tmp_path / "out"), tmp_path / "out"


@pytest.mark.parametrize("make", [_out_is_a_file, _records_is_a_folder, _read_only_folder])
def test_an_unwritable_out_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, read_only, make):
    from prophetkv_jax.model import checkpoint

    out, named = make(tmp_path, read_only)
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("loaded the model first"))
    code, line = run(capsys, tmp_path / "model-never-read", out)
    assert code == 2 and line.startswith(f"evaluate.py: error: --out {out}: cannot write {named} (")
    assert not (out.is_dir() and (out / "summary.json").exists())
