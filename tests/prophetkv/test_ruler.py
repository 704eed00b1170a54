"""RULER generation: determinism, sizing, answers present, task semantics."""

import collections
import json
import re

import pytest

from prophetkv_jax.tasks import ruler
from prophetkv_jax.tasks.sample import Sample


def words(text: str) -> int:
    return len(text.split())


SYNTHETIC = [t for t in ruler.TASKS if not t.startswith("qa")]
# RULER sizes vt and fwe in steps and backs off one, so their prompts may end up to a step short of the
# budget: ten noise rows for vt, context // 32 words for fwe; the other tasks fill it within a tenth.
STEP_SLACK = {"vt": ruler.VT_STEP * words(ruler.NOISE), "fwe": 900 // 32}


@pytest.mark.parametrize("task", SYNTHETIC)
def test_deterministic_sized_and_answerable(task):
    first = ruler.generate(task, 2, 900, words, seed=3)
    assert first == ruler.generate(task, 2, 900, words, seed=3)
    assert first[0].context != ruler.generate(task, 1, 900, words, seed=4)[0].context
    assert first[0].context != first[1].context
    budget = 900 - first[0].max_new_tokens
    for sample in first:
        size = words(sample.prompt)
        assert budget - STEP_SLACK.get(task, budget // 10) <= size <= budget, size
        assert sample.references
        if task.startswith("niah"):
            for ref in sample.references:
                assert ref in sample.context


def test_niah_templates_and_needle_format():
    sample = ruler.generate("niah_multivalue", 1, 600, words)[0]
    assert sample.instruction.startswith("Some special magic numbers are hidden within the following text.")
    single = ruler.generate("niah_single_1", 1, 600, words)[0]
    assert single.instruction.startswith("A special magic number is hidden within the following text.")
    assert single.answer_prefix.endswith("mentioned in the provided text is")
    assert sample.answer_prefix.startswith(" The special magic numbers for ")
    key = re.search(r"for (\S+) mentioned", sample.question).group(1)
    found = re.findall(rf"One of the special magic numbers for {re.escape(key)} is: (\d{{7}})\.", sample.context)
    assert sorted(found) == sorted(sample.references) and len(found) == 4
    noise = ruler.generate("niah_single_1", 1, 600, words)[0]
    assert noise.context.count(ruler.NOISE) > 10


def test_multiquery_asks_for_every_key_and_multikey_hides_distractors():
    query = ruler.generate("niah_multiquery", 1, 600, words)[0]
    assert ", and " in query.question and len(query.references) == 4
    multikey = ruler.generate("niah_multikey_1", 1, 600, words)[0]
    assert multikey.context.count("One of the special magic numbers for") == 4
    assert len(multikey.references) == 1
    uuids = ruler.generate("niah_multikey_3", 1, 600, words)[0]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuids.references[0])


def test_variable_tracking_chain_leads_from_the_value():
    sample = ruler.generate("vt", 1, 700, words, seed=1)[0]
    value = re.search(r"assigned the value (\d+)", sample.question).group(1)
    assignments = dict(re.findall(r"VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+)", sample.context))
    reached = {name for name, rhs in assignments.items() if rhs == value}
    while True:
        more = {name for name, rhs in assignments.items() if rhs.startswith("VAR ") and rhs[4:] in reached}
        if more <= reached:
            break
        reached |= more
    assert reached == set(sample.references) and len(reached) == 5


def test_common_and_frequent_words_are_really_the_most_frequent():
    cwe = ruler.generate("cwe", 1, 1200, words)[0]
    listed = collections.Counter(re.findall(r"\d+\. (\S+)", cwe.context))
    top = {w for w, _ in listed.most_common(10)}
    assert top == set(cwe.references)
    assert min(listed[w] for w in top) > max(c for w, c in listed.items() if w not in top)
    fwe = ruler.generate("fwe", 1, 900, words)[0]
    counts = collections.Counter(fwe.context.split(" "))
    assert counts.most_common(1)[0][0] == "..."  # RULER's top-ranked word is the noise dots
    assert [c for _, c in counts.most_common(4)[1:]] == [counts[w] for w in fwe.references]


def test_qa_needs_its_file_and_reads_squad(tmp_path):
    with pytest.raises(FileNotFoundError, match="--squad"):
        ruler.generate("qa_1", 1, 500, words)
    squad = {"data": [{"paragraphs": [
        {"context": f"Paragraph {i} says the code is {i * 11}.",
         "qas": [{"question": f"What code does paragraph {i} give?", "answers": [{"text": str(i * 11)}]}]}
        for i in range(40)]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad))
    sample = ruler.generate("qa_1", 1, 300, words, squad_path=str(path))[0]
    number = re.search(r"paragraph (\d+)", sample.question).group(1)
    assert f"Paragraph {number} says" in sample.context and sample.references == (str(int(number) * 11),)


def test_unknown_task_and_tiny_context_are_refused():
    with pytest.raises(ValueError, match="unknown RULER task"):
        ruler.generate("niah_single_9", 1, 900, words)
    with pytest.raises(ValueError, match="too short"):
        ruler.generate("niah_single_1", 1, 150, words)


@pytest.mark.parametrize("texts", [{"a.txt": ""}, {"a.txt": "Too short.\nTwo words.\n", "b.txt": "   \n"}])
def test_a_haystack_dir_without_usable_sentences_is_refused_naming_it(tmp_path, texts):
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"--haystack-dir {tmp_path}: no sentence of 4 or more words"):
        ruler.generate("niah_single_2", 1, 300, words, haystack_dir=str(tmp_path))


def _padded(n: int) -> Sample:
    return Sample("t", 0, "a b ", "x " * n, "", "", ("x",), "string_match_all", 1)


def test_stepped_sizing_walks_up_then_backs_off_like_ruler():
    """From 30 in steps of 7 while under 100 (count = n + 2): 93 is the last below, 100 reaches it."""
    assert words(ruler.stepped_fitting(_padded, words, 100, first=30, step=7).context) == 93
    # a prompt that reaches the budget exactly still counts as reached: RULER steps back from it (93 -> 86)
    assert words(ruler.stepped_fitting(_padded, words, 95, first=30, step=7).context) == 86
    # a start already over the budget walks down in steps until the prompt fits: 200 - 15 * 7 = 95 (97 <= 100)
    assert words(ruler.stepped_fitting(_padded, words, 100, first=200, step=7).context) == 95
    with pytest.raises(ValueError, match="too short"):
        ruler.stepped_fitting(_padded, words, 1, first=5, step=5)


def test_vt_example_is_sized_alone_with_the_answer_budget_reserved():
    """RULER strips the model template from the one-shot example and counts 500 tokens with vt's 30-token
    answer budget in: a chat template's tokens (here 40 per prompt) must not shrink the example."""
    plain = ruler.generate("vt", 1, 2000, words, seed=2)[0]
    chat = ruler.generate("vt", 1, 2000, lambda text: words(text) + 40, seed=2)[0]
    head = ruler.VT_TEMPLATE.split("{context}")[0]
    example = plain.instruction[: -len(head)]
    assert example == chat.instruction[: -len(head)]
    limit = ruler.VT_EXAMPLE_TOKENS - ruler.GENERATION_BUDGET["vt"]
    assert limit - ruler.VT_EXAMPLE_STEP * words(ruler.NOISE) <= words(example) < limit
