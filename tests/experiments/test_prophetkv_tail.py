"""The prophetkv_tail experiment: which prompts it picks and how it labels and weighs context rows."""

from pathlib import Path

import numpy as np
import pytest

from experiments.prophetkv_tail import run as script
from prophetkv_jax import run_records
from prophetkv_jax.pipeline import RagPrompt
from prophetkv_jax.tasks.sample import Sample
from runkit.records import settings_digest


def _records(kls):
    return [{"task": task, "index": index, "method": method, "kl": kl}
            for (task, index), by_method in kls.items() for method, kl in by_method.items()]


def test_tail_is_prophetkv_above_the_best_baseline_and_controls_sit_at_the_task_median():
    kls = {("a", i): {"prophetkv": p, "cacheblend": 0.2, "epic": 0.3, "kvshare": 0.25}
           for i, p in enumerate([0.9, 0.1, 0.15, 0.25, 0.19, 0.28])}
    kls[("b", 0)] = {"prophetkv": 0.1, "cacheblend": 0.2}  # a baseline missing: no gap
    gap = script.gaps(_records(kls))
    assert set(gap) == {("a", i) for i in range(6)} and gap[("a", 0)] == pytest.approx(0.7)
    # untaken gaps of task a: -0.1, -0.05, +0.05, -0.01, +0.08 -> median -0.01: index 4
    assert script.pick(gap, 0.1) == [(("a", 0), "tail"), (("a", 4), "control")]


class CharTokenizer:
    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_rows_are_labelled_prefix_answer_value_needle_other_needle_chunk_first_rest():
    text = "xxAB1yyCD2zz"
    ids = [ord(ch) for ch in text]
    prompt = RagPrompt(prefix=np.array([5, 6, 7]), chunks=(np.array(ids[:5]), np.array(ids[5:])), query=np.array([1]))
    sample = Sample("niah_multikey_1", 0, "", text, "", "", ("2",), "string_match_all", 8,
                    {"needles": ["AB1", "CD2"]})
    kinds = script.row_categories(prompt, sample, CharTokenizer())
    names = [script.CATEGORIES[k] for k in kinds]
    assert names[:3] == ["prefix"] * 3
    assert names[3:] == ["chunk_first", "rest", "other_needle", "other_needle", "other_needle",
                         "chunk_first", "rest", "answer_needle", "answer_needle", "answer_value", "rest", "rest"]
    shares = script.breakdown(np.array([0, 5, 10, 14]), kinds)
    assert shares == pytest.approx({"prefix": 0.25, "answer_value": 0.0, "answer_needle": 0.25, "other_needle": 0.25,
                                    "chunk_first": 0.0, "rest": 0.25})
    assert script.coverage(np.array([12, 3]), kinds, "answer_value") == 1.0  # row 12: the value "2"
    assert script.coverage(np.array([10]), kinds, "answer_needle") == 0.5
    assert script.coverage(np.array([0]), kinds[3:], "prefix") is None  # no such rows


def test_concentration_of_uniform_and_one_hot_scores():
    kinds = np.array([0, 5, 5, 5])  # prefix, rest, rest, rest
    flat = script.concentration(np.ones(4), np.array([1]), kinds)
    assert flat["entropy"] == pytest.approx(1.0) and flat["topk_mass"] == pytest.approx(0.25)
    assert flat["mass_prefix"] == pytest.approx(0.25) and flat["mass_rest"] == pytest.approx(0.75)
    peaked = script.concentration(np.array([1.0, 0, 0, 0]), np.array([0]), kinds)
    assert peaked["entropy"] == pytest.approx(0.0) and peaked["topk_mass"] == pytest.approx(1.0)


@pytest.mark.parametrize(("cut", "expected"), [
    (5, {"value_offset": 4, "value_in_chunk_head": 0.0, "needle_split": 0.0}),  # "xxAB1" | "yyCD2zz"
    (9, {"value_offset": 0, "value_in_chunk_head": 1.0, "needle_split": 1.0}),  # "xxAB1yyCD" | "2zz": key apart
])
def test_answer_layout_finds_the_values_offset_and_a_needle_cut_by_a_chunk_boundary(cut, expected):
    ids = [ord(ch) for ch in "xxAB1yyCD2zz"]
    prompt = RagPrompt(prefix=np.array([5, 6, 7]), chunks=(np.array(ids[:cut]), np.array(ids[cut:])),
                       query=np.array([1]))
    sample = Sample("niah_multikey_1", 0, "", "", "", "", ("2",), "string_match_all", 8, {"needles": ["AB1", "CD2"]})
    kinds = script.row_categories(prompt, sample, CharTokenizer())
    assert script.answer_layout(prompt, kinds) == expected


def _run_folder(tmp_path, settings, ratios=(0.2,)):
    """A RULER run folder whose records carry ``settings`` and its digest."""
    run = tmp_path / "ruler_x"
    run.mkdir()
    digest = settings_digest(settings)
    for ratio in ratios:
        for method in ("prophetkv", *script.SELECTING_BASELINES):
            run_records.append_record(run / "records.jsonl", {
                "key": f"a/0/{method}/{ratio}", "task": "a", "index": 0, "method": method, "ratio": ratio,
                "kl": 0.1, "settings": settings, "settings_digest": digest})
    return run


def test_rows_from_a_run_since_redone_with_other_settings_are_refused(tmp_path, capsys):
    settings = {"model": "m", "context": 2048}
    run, rows = _run_folder(tmp_path, settings), tmp_path / "tail.rows.jsonl"
    run_records.append_record(run / "records.jsonl", run_records.mark_failed(
        {"key": "a/1/prophetkv/0.2", "task": "a", "index": 1, "method": "prophetkv", "ratio": 0.2,
         "settings": settings, "settings_digest": settings_digest(settings)}, "non-finite logits"))
    records, *rest = script.checked_records(run, "m", rows, {})
    assert rest == [settings, 0.2] and len(records) == 4 and script.gaps(records) == {("a", 0): 0.0}  # failed left out
    old = {"model": "m", "context": 1024}
    done = {"ruler_x/a/0": {"key": "ruler_x/a/0", "run": "ruler_x", "settings": old,
                            "settings_digest": settings_digest(old)}}
    with pytest.raises(SystemExit) as exit_:
        script.checked_records(run, "m", rows, done)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"prophetkv_tail: error: {rows} holds records made with context=1024, this "
                                       "run has context=2048; use another --out or the same settings\n")


def test_a_run_with_several_prophetkv_ratios_is_refused(tmp_path, capsys):
    run = _run_folder(tmp_path, {"model": "m"}, ratios=(0.1, 0.2))
    with pytest.raises(SystemExit) as exit_:
        script.checked_records(run, "m", tmp_path / "tail.rows.jsonl", {})
    assert exit_.value.code == 2 and "ProphetKV was run at ratios [0.1, 0.2]" in capsys.readouterr().err


def test_the_summary_averages_measures_not_the_rows_settings():
    rows = [{"group": "tail", "settings": {"seed": 3, "context": 1024}, "prophetkv": {"kl": kl},
             "prophetkv_chunks": {"kl": kl}, "best_baseline_kl": 0.1} for kl in (0.5, 0.7)]
    summary = script.summarize(rows, 0.1)
    assert summary["tail"] == pytest.approx({"prompts": 2, "prophetkv.kl": 0.6, "prophetkv_chunks.kl": 0.6,
                                             "best_baseline_kl": 0.1})
    assert summary["tail_still_above_with_chunk_only"] == 2


def test_prompts_that_template_4_resized_are_not_rebuilt_for_an_older_run(capsys):
    """A template-3 run's vt/fwe prompts would come out of today's generator another length: refused."""
    with pytest.raises(SystemExit) as stopped:
        script.run_samples(Path("runs/old"), [("niah_single_1", 0), ("vt", 3)], None, {"template_version": 3})
    assert stopped.value.code == 2
    assert "its vt prompts (template_version 3) cannot be rebuilt" in capsys.readouterr().err
