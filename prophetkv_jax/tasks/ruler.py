"""RULER's synthetic tasks, generated locally and sized in the model's own tokens.

Task definitions follow NVIDIA/RULER (scripts/data/synthetic: constants.py, niah.py,
variable_tracking.py, common_words_extraction.py, freq_words_extraction.py, qa.py, and
synthetic.yaml): the same templates (singular wording when one value is asked), needle
format, answer prefixes, "\n"-joined noise and needle haystacks, vt's one-shot example,
cwe's few-shot example, fwe's Zipf counts, word sources (wonderwords' full adjective and noun
lists: 912 x 6,782 keys), generation budgets, and how vt and fwe are sized (RULER's steps).
What still differs is listed once, in docs/prophetkv/usage.md ("What still differs from RULER").
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import random
import re
import string
import uuid
from pathlib import Path
from typing import Callable

from prophetkv_jax.tasks.sample import Sample

CountTokens = Callable[[str], int]

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
NIAH_TEMPLATE = (
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
    "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
)
NIAH_ANSWER = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
VT_ANSWER = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
             "are assigned the value {query}, they are: ")
CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the 10 most common words in the above list?"
)
CWE_ANSWER = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore "
    "the dots '....'. What are the three most frequently appeared words in the above coded text?"
)
FWE_ANSWER = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_TEMPLATE = (
    "Answer the question based on the given documents. Only give me the answer and do not output any "
    "other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the "
    "given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}"
)
QA_ANSWER = " Answer:"
# Bumped whenever a template or a generator changes what a seed renders (part of a run's settings digest).
# 3: RULER's full key pool (912 adjectives x 6,782 nouns; was the first 300 of each) and word lists.
# 4: vt and fwe sized by RULER's stepped rule (was: the largest size that fits); vt's one-shot example
#    sized alone, without the chat template's tokens, with vt's answer budget reserved as RULER does.
TEMPLATE_VERSION = 4
RESIZED_IN_4 = ("vt", "fwe")  # every other task renders as in template 3 (and 2, with its key pool)


def singular(template: str) -> str:
    """RULER's rewording when exactly one value is asked (num_needle_q * num_needle_v == 1)."""
    for plural, one in (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer")):
        template = template.replace(plural, one)
    return template


@dataclasses.dataclass(frozen=True)
class NiahSpec:
    haystack: str  # noise | essay | needle
    key_type: str  # words | numbers | uuids
    value_type: str  # numbers | uuids
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1


NIAH = {
    "niah_single_1": NiahSpec("noise", "words", "numbers"),
    "niah_single_2": NiahSpec("essay", "words", "numbers"),
    "niah_single_3": NiahSpec("essay", "words", "uuids"),
    "niah_multikey_1": NiahSpec("essay", "words", "numbers", num_keys=4),
    "niah_multikey_2": NiahSpec("needle", "words", "numbers"),
    "niah_multikey_3": NiahSpec("needle", "uuids", "uuids"),
    "niah_multivalue": NiahSpec("essay", "words", "numbers", num_values=4),
    "niah_multiquery": NiahSpec("essay", "words", "numbers", num_keys=4, num_queries=4),
}
GENERATION_BUDGET = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}
TASKS = (*NIAH, "vt", "cwe", "fwe", "qa_1", "qa_2")
DEPTHS = [round(100 * i / 39) for i in range(40)]  # RULER's 40 evenly spaced depth percentages
VT_EXAMPLE_TOKENS = 500  # RULER sizes vt's one-shot example, answer budget included, to this length
VT_EXAMPLE_STEP, VT_STEP = 5, 10  # noise rows per sizing step: RULER's `incremental` for the example and the task


# ----------------------------------------------------------------------------- sources


def _word_list(name: str) -> list[str]:
    """A wonderwords list as RULER reads it (``random_word._get_words_from_text_file``): every line,
    right-stripped, multi-word and hyphenated entries included."""
    text = importlib.resources.files("wonderwords.assets").joinpath(name).read_text()
    return [line.rstrip() for line in text.splitlines()]


_WORDS: list[str] | None = None


def key_words() -> list[str]:
    """RULER's needle keys: every adjective-noun pair of wonderwords' lists, deduplicated and sorted
    (6,171,620 keys; built once per process, ~8 s and ~0.5 GB, as RULER does)."""
    global _WORDS
    if _WORDS is None:
        adjectives, nouns = _word_list("adjectivelist.txt"), _word_list("nounlist.txt")
        _WORDS = sorted({f"{a}-{n}" for a in adjectives for n in nouns})
    return _WORDS


def plain_words() -> list[str]:
    """RULER's common-words vocabulary: wonderwords' nouns, adjectives and verbs, deduplicated, sorted."""
    return sorted(set(_word_list("nounlist.txt") + _word_list("adjectivelist.txt") + _word_list("verblist.txt")))


def essay_sentences(haystack_dir: str | None) -> list[str]:
    """Sentences of English prose: the user's text files, or the docs that ship with Python."""
    if haystack_dir is None:
        from pydoc_data.topics import topics

        texts = [topics[k] for k in sorted(topics)]
        texts = ["\n".join(line for line in t.splitlines() if line and not line.startswith(" ")) for t in texts]
    else:
        folder = Path(haystack_dir)
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"--haystack-dir {folder}: expected a folder of .txt files")
        texts = [f.read_text(errors="replace") for f in files]
    sentences = []
    for text in texts:
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) >= 4]
    if not sentences:  # the haystack is built by cycling through them
        raise ValueError(f"--haystack-dir {haystack_dir}: no sentence of 4 or more words in its .txt files")
    return sentences


# ----------------------------------------------------------------------------- sizing


def largest_fitting(build: Callable[[int], Sample], count_tokens: CountTokens, budget: int, start: int) -> Sample:
    """The sample with the largest haystack size n whose whole prompt fits ``budget`` tokens."""
    low, high = 0, max(1, start)
    while count_tokens(build(high).prompt) <= budget:  # grow until over budget
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if count_tokens(build(mid).prompt) <= budget:
            low = mid
        else:
            high = mid
    sample = build(low)
    if count_tokens(sample.prompt) > budget:
        raise ValueError(f"the context is too short for even an empty {sample.task} haystack "
                         f"({budget} tokens left for the prompt)")
    return sample


def stepped_fitting(build: Callable[[int], Sample], count_tokens: CountTokens, budget: int, first: int,
                    step: int) -> Sample:
    """RULER's linear sizing (vt, fwe): from ``first`` up in steps of ``step`` while the prompt stays under
    ``budget``, then one step back, and further back while it is over. RULER's prompts end up to a step short
    of the budget, so fidelity numbers on them compare with RULER's own."""
    n = first
    while count_tokens(build(n).prompt) < budget:
        n += step
    n -= step
    while n > 0 and count_tokens(build(n).prompt) > budget:
        n -= step
    sample = build(max(n, 0))
    if count_tokens(sample.prompt) > budget:
        raise ValueError(f"the context is too short for even an empty {sample.task} haystack "
                         f"({budget} tokens left for the prompt)")
    return sample


# ----------------------------------------------------------------------------- tasks


def _value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return rng.choice(key_words())


def _insert_at_random_rows(hay: list[str], items: list[str], rng: random.Random) -> list[str]:
    """RULER's noise/needle haystacks: items inserted at distinct random rows, highest row first."""
    rows = sorted(rng.sample(range(len(hay)), len(items)) if len(hay) >= len(items) else [0] * len(items), reverse=True)
    hay = list(hay)
    for row, item in zip(rows, items):
        hay.insert(row, item)
    return hay


def _insert_at_depths(sentences: list[str], needles: list[str], depths: list[int]) -> str:
    """RULER's essay haystack: needles between sentence groups cut at the sampled depths."""
    cuts = [0] + sorted(int(len(sentences) * d / 100) for d in depths) + [len(sentences)]
    parts = []
    for i in range(1, len(cuts)):
        parts.append(" ".join(sentences[cuts[i - 1] : cuts[i]]))
        if i - 1 < len(needles):
            parts.append(needles[i - 1])
    return " ".join(parts)


def _niah(task: str, index: int, rng: random.Random, count: CountTokens, budget: int, sentences: list[str]) -> Sample:
    spec = NIAH[task]
    keys: list[str] = []
    while len(keys) < spec.num_keys:
        key = _value(rng, spec.key_type)
        if key not in keys:
            keys.append(key)
    values = [[_value(rng, spec.value_type) for _ in range(spec.num_values)] for _ in keys]
    type_v = "numbers" if spec.value_type == "numbers" else "uuids"
    needles = [NEEDLE.format(type_needle_v=type_v, key=k, value=v) for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(needles)
    queried = keys[: spec.num_queries]
    query = queried[0] if len(queried) == 1 else ", ".join(queried[:-1]) + ", and " + queried[-1]
    references = tuple(v for vs in values[: spec.num_queries] for v in vs)
    depths = rng.sample(DEPTHS, len(needles))
    distractors = [NEEDLE.format(type_needle_v=type_v, key=_value(rng, spec.key_type),
                                 value=_value(rng, spec.value_type))
                   for _ in range(4096)] if spec.haystack == "needle" else []
    offset = rng.randrange(max(1, len(sentences) - 4096)) if spec.haystack == "essay" else 0
    template, answer = NIAH_TEMPLATE, NIAH_ANSWER
    if spec.num_queries * spec.num_values == 1:
        template, answer, type_v = singular(NIAH_TEMPLATE), singular(NIAH_ANSWER), type_v[:-1]
    instruction, question = template.format(type_needle_v=type_v, query=query, context="\0").split("\0")

    def build(n: int) -> Sample:
        if spec.haystack == "essay":
            context = _insert_at_depths([sentences[(offset + i) % len(sentences)] for i in range(n)], needles, depths)
        else:
            hay = [NOISE] * n if spec.haystack == "noise" else distractors[:n]
            context = "\n".join(_insert_at_random_rows(hay, needles, random.Random(f"niah-rows-{task}-{index}-{n}")))
        return Sample(task, index, instruction, context, question,
                      answer.format(type_needle_v=type_v, query=query), references,
                      "string_match_all", GENERATION_BUDGET["niah"], {"needles": needles, "depths": depths})

    return largest_fitting(build, count, budget, start=64)


def _chains(rng: random.Random, num_chains: int, num_hops: int, name_length: int):
    """Distinct variable names per chain and the chains' statements, as RULER writes them
    (the first assigns a 5-digit value, each hop ends in a space, none in a period)."""
    names: list[str] = []
    while len(names) < num_chains * (num_hops + 1):
        name = "".join(rng.choices(string.ascii_uppercase, k=name_length))
        if name not in names:
            names.append(name)
    groups = [names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)] for c in range(num_chains)]
    chains = [[f"VAR {g[0]} = {rng.randrange(10000, 99999)}"]
              + [f"VAR {g[j + 1]} = VAR {g[j]} " for j in range(num_hops)] for g in groups]
    return groups, chains


def _vt_text(chains: list[list[str]], n: int, local: random.Random) -> str:
    """n noise sentences with each chain's statements at sorted random rows, joined by newlines."""
    hay = [NOISE] * n
    for chain in chains:
        rows = sorted(local.sample(range(len(hay)), len(chain))) if len(hay) >= len(chain) else [0] * len(chain)
        for j, (row, statement) in enumerate(zip(rows, chain)):
            hay.insert(row + j, statement)
    return "\n".join(hay)


def _vt_example(index: int, rng: random.Random, count: CountTokens, num_hops: int) -> str:
    """RULER's one-shot example: a solved 3-letter-name chain in noise, sized alone (no chat template) so that
    it and vt's answer budget fill 500 tokens."""
    (names,), chains = _chains(rng, 1, num_hops, name_length=3)
    value = chains[0][0].split("= ")[-1]
    head, tail = VT_TEMPLATE.format(context="\0", query=value).split("\0")
    answer = VT_ANSWER.format(num_v=num_hops + 1, query=value) + " " + " ".join(names) + "\n"

    def build(n: int) -> Sample:
        context = _vt_text(chains, n, random.Random(f"vt-example-rows-{index}-{n}"))
        return Sample("vt", index, head, context, tail, answer, (), "string_match_all", 0)

    def alone(text: str) -> int:  # ``count`` adds the chat template's tokens, which RULER leaves out here
        return count(text) - count("")

    example = stepped_fitting(build, alone, VT_EXAMPLE_TOKENS - GENERATION_BUDGET["vt"], first=VT_EXAMPLE_STEP,
                              step=VT_EXAMPLE_STEP)
    return example.prompt + "\n"


def _vt(
    index: int, rng: random.Random, count: CountTokens, budget: int, num_chains: int = 1, num_hops: int = 4,
) -> Sample:
    example = _vt_example(index, rng, count, num_hops)
    groups, chains = _chains(rng, num_chains, num_hops, name_length=5)
    value = chains[0][0].split("= ")[-1]
    head, question = VT_TEMPLATE.format(context="\0", query=value).split("\0")

    def build(n: int) -> Sample:
        context = _vt_text(chains, n, random.Random(f"vt-rows-{index}-{n}"))
        return Sample("vt", index, example + head, context, question,
                      VT_ANSWER.format(num_v=num_hops + 1, query=value), tuple(groups[0]), "string_match_all",
                      GENERATION_BUDGET["vt"], {"chains": chains})

    return stepped_fitting(build, count, budget, first=VT_STEP, step=VT_STEP)


def _numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def _cwe_list(vocabulary: list[str], num_words: int, freq_common: int, freq_uncommon: int,
              num_common: int, order: random.Random) -> tuple[str, list[str]]:
    """RULER's get_example: the first ``num_common`` words repeated more often, shuffled, numbered."""
    common, uncommon = vocabulary[:num_common], vocabulary[num_common:num_words]
    words = common * freq_common + uncommon * freq_uncommon
    order.shuffle(words)
    return _numbered(words), common


def _cwe(index: int, rng: random.Random, count: CountTokens, budget: int, num_common: int = 10) -> Sample:
    """RULER's frequencies: below a 4096-token context common words appear 6 times and the rest
    once (one solved example of 20 words, 3/1 times); otherwise 30/3 (example of 40 words, 10/3)."""
    short = budget + GENERATION_BUDGET["cwe"] < 4096
    (shot_words, shot_common, shot_uncommon), (freq_common, freq_uncommon) = (
        ((20, 3, 1), (6, 1)) if short else ((40, 10, 3), (30, 3)))
    vocabulary = rng.sample(plain_words(), len(plain_words()))
    shot_vocabulary = rng.sample(plain_words(), shot_words)
    order_seed = rng.random()
    shot_list, shot_answer = _cwe_list(shot_vocabulary, shot_words, shot_common, shot_uncommon, num_common,
                                       random.Random(order_seed))
    example = CWE_TEMPLATE.format(context=shot_list) + CWE_ANSWER + " " + _numbered(shot_answer)
    head, question = CWE_TEMPLATE.format(context="\0").split("\0")

    def build(n: int) -> Sample:
        listing, common = _cwe_list(vocabulary, num_common + n, freq_common, freq_uncommon, num_common,
                                    random.Random(order_seed))
        return Sample("cwe", index, example + "\n" + head, listing, question, CWE_ANSWER, tuple(common),
                      "string_match_all", GENERATION_BUDGET["cwe"], {"freq_common": freq_common})

    return largest_fitting(build, count, budget, start=16)


def _fwe(index: int, rng: random.Random, count: CountTokens, budget: int, alpha: float = 2.0,
         word_length: int = 6) -> Sample:
    """RULER's coded words: a vocabulary of (budget // 50) random 6-letter words whose top-ranked
    entry is the noise word '...'; rank k appears int(n * k^-alpha / zeta(alpha)) times, shuffled;
    the answer is ranks 2-4."""
    from scipy.special import zeta

    size = budget // 50
    vocabulary: set[str] = set()
    while len(vocabulary) < size:
        vocabulary.add("".join(rng.choices(string.ascii_lowercase, k=word_length)))
    coded = sorted(vocabulary)
    rng.shuffle(coded)
    coded[0] = "..."
    order_seed = rng.random()
    head, question = FWE_TEMPLATE.format(context="\0").split("\0")

    def build(n: int) -> Sample:
        counts = [int(n * (k ** -alpha) / zeta(alpha)) for k in range(1, len(coded) + 1)]
        stream = [w for w, c in zip(coded, counts) for _ in range(c)]
        random.Random(order_seed).shuffle(stream)
        return Sample("fwe", index, head, " ".join(stream), question, FWE_ANSWER, tuple(coded[1:4]),
                      "string_match_all", GENERATION_BUDGET["fwe"], {"counts": dict(zip(coded[1:4], counts[1:4]))})

    context = budget + GENERATION_BUDGET["fwe"]  # RULER starts and steps from the whole context length
    return stepped_fitting(build, count, budget, first=context // word_length, step=max(context // 32, 1))


def _read_qa(task: str, path: str | None) -> list[tuple[str, list[str], list[str]]]:
    """(question, answers, gold paragraphs) plus the pool of all paragraphs, from SQuAD or HotpotQA."""
    flag = "--squad" if task == "qa_1" else "--hotpotqa"
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(
            f"RULER {task} needs the {'SQuAD v2' if task == 'qa_1' else 'HotpotQA'} dev json: pass {flag} PATH "
            f"({'no file given' if path is None else f'{path} does not exist'})"
        )
    data = json.loads(Path(path).read_text())
    items = []
    if task == "qa_1":
        for article in data["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    if qa.get("answers"):
                        items.append((qa["question"], [a["text"] for a in qa["answers"]], [para["context"]]))
    else:
        for record in data:
            paragraphs = [f"{title}\n{''.join(sents)}" for title, sents in record["context"]]
            items.append((record["question"], [record["answer"]], paragraphs))
    return items


def _qa(task: str, index: int, rng: random.Random, count: CountTokens, budget: int, path: str | None) -> Sample:
    items = _read_qa(task, path)
    question, answers, gold = items[rng.randrange(len(items))]
    pool = [p for _, _, ps in items for p in ps if p not in gold]
    rng.shuffle(pool)
    instruction, after = QA_TEMPLATE.format(context="\0", query=question).split("\0")

    def build(n: int) -> Sample:
        docs = gold + pool[:n]
        random.Random(f"qa-{index}-{n}").shuffle(docs)
        context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(docs))
        return Sample(task, index, instruction, context, after, QA_ANSWER, tuple(answers),
                      "string_match_part", GENERATION_BUDGET["qa"])

    return largest_fitting(build, count, budget, start=4)


def generate(task: str, num_samples: int, context_tokens: int, count_tokens: CountTokens, seed: int = 0,
             haystack_dir: str | None = None, squad_path: str | None = None,
             hotpotqa_path: str | None = None) -> list[Sample]:
    """``num_samples`` seeded samples of ``task`` whose prompts fill ``context_tokens`` minus the answer budget."""
    if task not in TASKS:
        raise ValueError(f"unknown RULER task {task!r}; choose from {', '.join(TASKS)}")
    family = "niah" if task in NIAH else ("qa" if task.startswith("qa") else task)
    budget = context_tokens - GENERATION_BUDGET[family]
    if budget <= 0:
        raise ValueError(
            f"--context {context_tokens} leaves no room for {task}'s {GENERATION_BUDGET[family]}-token answer")
    sentences = essay_sentences(haystack_dir) if task in NIAH and NIAH[task].haystack == "essay" else []
    samples = []
    for index in range(num_samples):
        rng = random.Random(f"{task}-{seed}-{index}")
        if task in NIAH:
            samples.append(_niah(task, index, rng, count_tokens, budget, sentences))
        elif task == "vt":
            samples.append(_vt(index, rng, count_tokens, budget))
        elif task == "cwe":
            samples.append(_cwe(index, rng, count_tokens, budget))
        elif task == "fwe":
            samples.append(_fwe(index, rng, count_tokens, budget))
        else:
            samples.append(_qa(task, index, rng, count_tokens, budget, squad_path if task == "qa_1" else hotpotqa_path))
    return samples
