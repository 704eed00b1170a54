"""LongBench loading: official record fields, template split, clear errors."""

import json

import pytest

from prophetkv_jax.tasks import longbench


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def record(i):
    return json.dumps({"input": f"Who wrote book {i}?", "context": f"Passage 1:\nBook {i} was written by Ann.",
                       "answers": ["Ann"], "all_classes": None, "length": 9, "dataset": "hotpotqa", "_id": f"id{i}"})


def test_records_become_samples_with_the_official_template(tmp_path):
    write(tmp_path / "hotpotqa.jsonl", [record(i) for i in range(5)])
    samples = longbench.load(tmp_path, "hotpotqa", limit=3)
    assert len(samples) == 3
    s = samples[1]
    assert s.prompt == longbench.PROMPTS["hotpotqa"].format(context=s.context, input="Who wrote book 1?")
    assert s.instruction.endswith("The following are given passages.\n")
    assert s.question.endswith("Question: Who wrote book 1?\nAnswer:")
    assert (s.metric, s.max_new_tokens, s.references) == ("qa_f1", 32, ("Ann",))


def test_every_dataset_has_prompt_length_and_metric():
    for name in longbench.DATASETS:
        assert longbench.PROMPTS[name].count("{context}") == 1
        assert name in longbench.MAX_NEW_TOKENS and name in longbench.METRIC


def test_missing_file_unknown_dataset_and_malformed_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="qasper.jsonl: missing"):
        longbench.load(tmp_path, "qasper")
    with pytest.raises(ValueError, match="unknown LongBench dataset"):
        longbench.load(tmp_path, "squad")
    write(tmp_path / "trec.jsonl", [record(0), "{broken", record(2)])
    with pytest.raises(ValueError, match=r"trec.jsonl, line 2: not a LongBench record"):
        longbench.load(tmp_path, "trec")
    write(tmp_path / "lcc.jsonl", [json.dumps({"input": "", "context": "x = 1"})])
    with pytest.raises(ValueError, match="line 1: .*missing field\\(s\\) answers"):
        longbench.load(tmp_path, "lcc")


def test_few_shot_and_code_sets_skip_the_chat_template(tmp_path):
    write(tmp_path / "trec.jsonl", [record(0)])
    write(tmp_path / "hotpotqa.jsonl", [record(0)])
    assert longbench.load(tmp_path, "trec")[0].extra["chat"] is False
    assert longbench.load(tmp_path, "hotpotqa")[0].extra["chat"] is True


def edited(**fields):
    return json.dumps({**json.loads(record(0)), **fields})


@pytest.mark.parametrize(("line", "problem"), [
    (edited(input=None), "'input' must be a string, got None"),
    (edited(context=7), "'context' must be a string, got 7"),
    (edited(answers=[123]), "'answers' must be a non-empty list of strings, got [123]"),
    (edited(answers="Ann"), "'answers' must be a non-empty list of strings, got 'Ann'"),
    (edited(all_classes=[1, 2]), "'all_classes' must be null or a list of strings, got [1, 2]"),
    ('{"input": "q", "context": "c\\ud800", "answers": ["a"]}', "'context' holds a lone surrogate (\\ud800)"),
    ('[1, 2]', "expected a JSON object, got list"),
])
def test_fields_of_the_wrong_type_are_refused_naming_file_and_line(tmp_path, line, problem):
    write(tmp_path / "hotpotqa.jsonl", [record(0), line])
    with pytest.raises(ValueError) as err:
        longbench.load(tmp_path, "hotpotqa")
    assert str(err.value) == f"{tmp_path / 'hotpotqa.jsonl'}, line 2: not a LongBench record ({problem})"


def test_bytes_that_are_not_utf8_are_refused_naming_file_and_line(tmp_path):
    (tmp_path / "hotpotqa.jsonl").write_bytes(record(0).encode() + b"\n" + b'{"input": "\xff"}\n')
    with pytest.raises(ValueError, match=r"hotpotqa.jsonl, line 2: not a LongBench record \(not UTF-8"):
        longbench.load(tmp_path, "hotpotqa")
