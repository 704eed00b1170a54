"""The evaluation loop end to end on a tiny random model: records, resume, tables, plot."""

import json

import jax
import numpy as np
import pytest

from prophetkv_jax import evaluation
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine
from prophetkv_jax.prompts import build_rag_prompt, split_chunks
from prophetkv_jax.tasks.sample import Sample
from runkit.records import SettingsMismatch, load_records

CONFIG = tiny_config(num_layers=2)


class ByteTokenizer:
    """Bytes as token ids (vocab 256): enough to drive the loop on a random model."""

    eos_ids = {0}
    bos_id = 1

    def encode(self, text, add_bos=False):
        return ([self.bos_id] if add_bos else []) + [b for b in text.encode() if b > 1]

    def decode(self, ids):
        return bytes(i for i in ids if i > 1).decode(errors="replace")

    def apply_chat_template(self, messages, add_generation_prompt=True):
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")


def samples(n=2):
    return [
        Sample(task="toy", index=i, instruction="Find the number. ", context=f"filler text {i} " * 12 + "number 7. ",
               question=" What is the number?", answer_prefix=" Answer:", references=("7",),
               metric="string_match_all", max_new_tokens=3, extra={})
        for i in range(n)
    ]


def contains_reference(sample, prediction):
    return 100.0 * all(r in prediction for r in sample.references)


@pytest.fixture(scope="module")
def engine():
    return Engine(llama.init_params(CONFIG, jax.random.PRNGKey(0)), CONFIG, max_new_tokens=4)


def test_chat_prompt_segments_cover_the_rendered_prompt():
    tok = ByteTokenizer()
    s = samples(1)[0]
    prompt = build_rag_prompt(tok, s.instruction, s.context, s.question, s.answer_prefix, chunk_tokens=16)
    rendered = tok.apply_chat_template([{"role": "user", "content": s.instruction + s.context + s.question}])
    joined = np.concatenate([prompt.prefix, *prompt.chunks, prompt.query])
    assert tok.decode(joined.tolist()) == rendered + s.answer_prefix
    assert all(len(c) == 16 for c in prompt.chunks[:-1]) and 0 < len(prompt.chunks[-1]) <= 16
    assert tok.decode(prompt.query.tolist()).endswith("</user><assistant> Answer:")


def test_split_chunks_rejects_bad_size():
    with pytest.raises(ValueError, match="--chunk-tokens"):
        split_chunks(np.arange(5), 0)


def test_loop_writes_records_tables_plot_and_resumes(engine, tmp_path):
    runs = evaluation.runs_for(["full", "naive", "epic", "prophetkv"], [0.2, 0.5])
    assert ("full", None) in runs and ("prophetkv", 0.5) in runs and len(runs) == 6
    kwargs = dict(chunk_tokens=32, show_progress=False)
    records = evaluation.evaluate_samples(engine, ByteTokenizer(), samples(), runs, contains_reference, tmp_path,
                                          **kwargs)
    assert len(records) == 2 * len(runs)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    by_key = {r["key"]: r for r in records}
    assert by_key["toy/0/prophetkv@0.5"]["recomputed"] == int(0.5 * by_key["toy/0/prophetkv@0.5"]["context_tokens"])
    assert by_key["toy/0/naive"]["recomputed"] == 0

    # An interrupted run: drop the last two records and cut the line before them mid-way.
    (tmp_path / "records.jsonl").write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20])
    calls = []
    counting = lambda s, p: calls.append(1) or contains_reference(s, p)  # noqa: E731
    resumed = evaluation.evaluate_samples(engine, ByteTokenizer(), samples(), runs, counting, tmp_path, **kwargs)
    assert len(calls) == 3 and len({r["key"] for r in resumed}) == len(records)
    for r in resumed:  # recomputed results are the same deterministic runs
        assert r["prediction"] == by_key[r["key"]]["prediction"]

    summary = evaluation.write_outputs(resumed, tmp_path, {"test": True})
    table = (tmp_path / "results.md").read_text()
    assert "prophetkv@0.5" in table and "| toy |" in table
    assert json.loads((tmp_path / "summary.json").read_text())["settings"] == {"test": True}
    assert summary["plot"] and (tmp_path / "ratio_sweep.png").stat().st_size > 1000
    full = next(a for a in summary["averages"] if a["method"] == "full")
    assert full["retention"] in (None, 1.0)


@pytest.mark.parametrize(("argv", "named"), [
    (["--ratios", "0.2,1.5"], "--ratios"), (["--ratios", "nan"], "--ratios"), (["--ratios", "inf"], "--ratios"),
    (["--methods", "prophetkv,magic"], "--methods"),
    (["--max-new-tokens", "0"], "--max-new-tokens"), (["--max-new-tokens", "-1"], "--max-new-tokens"),
    (["--context", "0"], "--context"), (["--samples", "x"], "--samples"),
    (["--store-host-gib", "-1"], "--store-host-gib"), (["--store-device-gib", "nan"], "--store-device-gib"),
    (["--store-dtype", "int8"], "--store-dtype"),
])
def test_cli_rejects_bad_arguments_in_one_line_with_exit_code_2(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluation.parse_args(["--task", "ruler", *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


@pytest.mark.slow
def test_context_beyond_the_model_is_refused_before_any_sample_is_made(tmp_path):
    """A subprocess, as a user runs it: one line, exit 2, and no records (nothing was generated)."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "evaluate.py", "--task", "ruler", "--context", "100000",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--context 100000" in result.stderr and "8192" in result.stderr
    assert not (tmp_path / "records.jsonl").exists()


def test_records_carry_fidelity_and_settings_and_other_settings_are_refused(engine, tmp_path):
    runs = evaluation.runs_for(["full", "naive", "prophetkv"], [0.3])
    kwargs = dict(chunk_tokens=32, show_progress=False, settings={"seed": 0})
    records = evaluation.evaluate_samples(engine, ByteTokenizer(), samples(1), runs, contains_reference, tmp_path,
                                          **kwargs)
    by_method = {r["method"]: r for r in records}
    full, naive, prophet = by_method["full"], by_method["naive"], by_method["prophetkv"]
    assert full["kl"] == pytest.approx(0.0, abs=1e-9) and full["top1_agreement"] == 1.0 and full["same_answer"]
    assert naive["kl"] > 1e-6  # a random model's naive cache differs from full prefill's
    assert full["oracle_overlap"] is None and naive["oracle_overlap"] is None
    assert 0.0 <= prophet["oracle_overlap"] <= 1.0 and 0.0 <= prophet["top1_agreement"] <= 1.0
    assert len({r["settings_digest"] for r in records}) == 1 and records[0]["settings"]["seed"] == 0

    with pytest.raises(SettingsMismatch, match="seed=0.*seed=1"):
        evaluation.evaluate_samples(engine, ByteTokenizer(), samples(1), runs, contains_reference, tmp_path,
                                    **{**kwargs, "settings": {"seed": 1}})
    with pytest.raises(SettingsMismatch, match="chunk_tokens=32.*chunk_tokens=16"):
        evaluation.evaluate_samples(engine, ByteTokenizer(), samples(1), runs, contains_reference, tmp_path,
                                    **{**kwargs, "chunk_tokens": 16})

    path = tmp_path / "records.jsonl"
    path.write_text(path.read_text() * 2)  # two runs appended the same records
    again = evaluation.evaluate_samples(engine, ByteTokenizer(), samples(1), runs, contains_reference, tmp_path,
                                        **kwargs)
    assert len(again) == len(records) == len(load_records(path))
