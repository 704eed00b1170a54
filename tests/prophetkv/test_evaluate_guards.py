"""``python evaluate.py --task ruler`` guarding its --out folder: what makes a record is in the settings
digest (tokenizer, chat template, the contents of data files), a flag listing a value twice runs it
once, one run at a time writes a folder, hand-edited record lines cost only themselves, and SIGTERM
says what is saved as Ctrl-C does. Run in-process on a tiny random HF checkpoint."""

import json
import logging
import os
import shutil
import signal

import pytest
from tiny_checkpoints import write_hf_dir

import evaluate as evaluate_cli
from prophetkv_jax import evaluation, run_records
from runkit.folder_lock import folder_lock

ARGS = ["--task", "ruler", "--samples", "1", "--context", "256", "--chunk-tokens", "64", "--max-new-tokens", "2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_hf_dir(tmp_path_factory.mktemp("tiny") / "m")


def run(capsys, model, out, *flags) -> tuple[int, str]:
    """(exit code, last stderr line) of evaluate.py on ``model`` writing to ``out``."""
    argv = [*ARGS, "--model", str(model), "--out", str(out), *flags]
    if "--subtasks" not in flags:
        argv += ["--subtasks", "niah_single_1"]
    if "--methods" not in flags:
        argv += ["--methods", "full,naive"]
    try:
        code = evaluate_cli.main(argv)
    except SystemExit as end:  # a settings mismatch ends through argparse's refusal path
        code = end.code
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines[-1] if lines else ""


def records_in(out) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_an_edited_chat_template_or_tokenizer_is_refused_on_resume(model, tmp_path, capsys):
    copy = shutil.copytree(model, tmp_path / "m")
    out = tmp_path / "out"
    assert run(capsys, copy, out)[0] == 0
    config = json.loads((copy / "tokenizer_config.json").read_text())
    edited = {**config, "chat_template": "Q: {{ messages[0]['content'] }}"}
    (copy / "tokenizer_config.json").write_text(json.dumps(edited))
    code, line = run(capsys, copy, out)
    assert code == 2 and "made with tokenizer=" in line and len(records_in(out)) == 2
    (copy / "tokenizer_config.json").write_text(json.dumps(config))  # back as it was: the run resumes
    assert run(capsys, copy, out)[0] == 0
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {f"t{(i + 1) % 32}": i for i in range(32)}  # same ids, other words
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    code, line = run(capsys, copy, out)
    assert code == 2 and "made with tokenizer=" in line and len(records_in(out)) == 2


def test_haystack_contents_not_its_path_are_in_the_digest(model, tmp_path, capsys):
    essays = tmp_path / "essays"
    essays.mkdir()
    (essays / "a.txt").write_text("The first essay has several words in it. It says more things here. " * 20)
    flags = ("--subtasks", "niah_single_2", "--haystack-dir")
    out = tmp_path / "out"
    assert run(capsys, model, out, *flags, str(essays))[0] == 0
    moved = essays.rename(tmp_path / "moved")
    assert run(capsys, model, out, *flags, str(moved))[0] == 0  # same sentences, another folder: resumes
    (moved / "a.txt").write_text("A second essay with other words in it. It tells another story here. " * 20)
    code, line = run(capsys, model, out, *flags, str(moved))
    assert code == 2 and "made with haystack_dir_sha256=" in line


def test_a_value_listed_twice_is_run_once(model, tmp_path, capsys):
    out = tmp_path / "out"
    code, _ = run(capsys, model, out, "--subtasks", "niah_single_1,niah_single_1", "--methods", "full,naive,full",
                  "--ratios", "0.2,0.20,0.2")
    assert code == 0
    assert sorted(r["method"] for r in records_in(out)) == ["full", "naive"]
    assert all(row["samples"] == 1 for row in json.loads((out / "summary.json").read_text())["rows"])
    args = evaluation.parse_args(["--task", "ruler", "--methods", "naive,full,naive", "--ratios", "0.5,0.2,0.5"])
    assert (args.methods, args.ratios) == (["naive", "full"], [0.5, 0.2])


def test_a_second_run_on_an_out_in_use_is_refused_before_the_model_loads(model, tmp_path, capsys, monkeypatch):
    from prophetkv_jax.model import checkpoint

    out = tmp_path / "out"
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("loaded the model first"))
    with folder_lock(out, evaluation.OUT_LOCK, "held by this test"):
        code, line = run(capsys, model, out)
    assert code == 2 and line.startswith(f"evaluate.py: error: {out}: in use by pid {os.getpid()} on ")
    assert line.endswith("wait for it to finish or use another --out") and not (out / "records.jsonl").exists()
    monkeypatch.undo()
    assert run(capsys, model, out)[0] == 0 and not (out / evaluation.OUT_LOCK).exists()


def test_rows_that_are_not_records_are_skipped_with_a_warning(model, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text(json.dumps({"score": 1.0}) + "\n" + json.dumps({"key": "x", "score": "high"})
                                       + "\n")
    with caplog.at_level(logging.WARNING, logger="runkit"):
        assert run(capsys, model, out)[0] == 0
    assert f"{out / 'records.jsonl'}: skipped 2 record(s) (line 1: no 'key'; line 2: no 'task')" in caplog.text
    assert len(run_records.load(out / "records.jsonl")) == 2


def test_sigterm_says_what_is_saved_and_the_same_command_resumes(model, tmp_path, capsys, monkeypatch):
    real, calls = run_records.append_jsonl, []

    def append(path, row):
        calls.append(row)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        real(path, row)

    ignored = []

    def ours(*_):  # stands in for the default action, which would end pytest itself
        ignored.append(1)

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        monkeypatch.setattr(run_records, "append_jsonl", append)
        out = tmp_path / "out"
        code, line = run(capsys, model, out)
        assert signal.getsignal(signal.SIGTERM) is ours and not ignored  # evaluate.py's handler, then ours back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143 and line == (f"evaluate.py: terminated: 1 record(s) saved in {out / 'records.jsonl'}; "
                                    "the same command resumes")
    monkeypatch.undo()
    assert run(capsys, model, out)[0] == 0 and len(records_in(out)) == 2


def test_longbench_files_are_in_the_digest_by_contents(tmp_path):
    def digests(folder):
        args = evaluation.parse_args(["--task", "longbench", "--data-dir", str(folder), "--subtasks", "trec,lcc"])
        return evaluation.data_digests(args)["data_sha256"]

    first = tmp_path / "a"
    first.mkdir()
    (first / "trec.jsonl").write_text('{"input": "q", "context": "c", "answers": ["a"]}\n')
    before = digests(first)
    assert before["trec"] and before["lcc"] is None  # a missing file is refused later, by the loader
    assert digests(first.rename(tmp_path / "b")) == before
    (tmp_path / "b" / "trec.jsonl").write_text('{"input": "q", "context": "c2", "answers": ["a"]}\n')
    assert digests(tmp_path / "b")["trec"] != before["trec"]
