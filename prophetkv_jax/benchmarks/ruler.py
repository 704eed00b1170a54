"""RULER's synthetic tasks, generated locally and sized in the model's own tokens.

Task definitions follow NVIDIA/RULER (scripts/data/synthetic: niah.py, variable_tracking.py,
common_words_extraction.py, freq_words_extraction.py, qa.py, and synthetic.yaml): the same
templates, needle format, answer prefixes, haystacks, word sources and generation budgets.
Each sample is built by a search over the haystack size: the largest haystack whose full
prompt still fits ``context_tokens`` minus the task's generation budget.
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

from prophetkv_jax.benchmarks.sample import Sample

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


# ----------------------------------------------------------------------------- sources


def _word_list(name: str) -> list[str]:
    text = importlib.resources.files("wonderwords.assets").joinpath(name).read_text()
    return [w.strip() for w in text.splitlines() if w.strip().isalpha()]


_WORDS: list[str] | None = None


def key_words() -> list[str]:
    """RULER's needle keys: adjective-noun pairs from wonderwords' lists, sorted, deduplicated."""
    global _WORDS
    if _WORDS is None:
        adjectives, nouns = _word_list("adjectivelist.txt"), _word_list("nounlist.txt")
        _WORDS = sorted({f"{a}-{n}" for a in adjectives[:300] for n in nouns[:300]})
    return _WORDS


def plain_words() -> list[str]:
    """Single words (nouns, adjectives, verbs) for the common-words task."""
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


# ----------------------------------------------------------------------------- tasks


def _value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return rng.choice(key_words())


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
    depths = sorted(rng.choice(DEPTHS) for _ in needles)
    distractors = [NEEDLE.format(type_needle_v=type_v, key=_value(rng, spec.key_type), value=_value(rng, spec.value_type))
                   for _ in range(4096)] if spec.haystack == "needle" else []
    offset = rng.randrange(max(1, len(sentences) - 4096)) if spec.haystack == "essay" else 0
    instruction, question = NIAH_TEMPLATE.format(type_needle_v=type_v, query=query, context="\0").split("\0")

    def build(n: int) -> Sample:
        if spec.haystack == "noise":
            hay = [NOISE] * n
        elif spec.haystack == "needle":
            hay = distractors[:n]
        else:
            hay = [sentences[(offset + i) % len(sentences)] for i in range(n)]
        for depth, needle in zip(reversed(depths), reversed(needles)):
            hay.insert(round(len(hay) * depth / 100), needle)
        return Sample(task, index, instruction, " ".join(hay), question,
                      NIAH_ANSWER.format(type_needle_v=type_v, query=query), references,
                      "string_match_all", GENERATION_BUDGET["niah"], {"needles": needles, "depths": depths})

    return largest_fitting(build, count, budget, start=64)


def _variable_name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(5))


def _vt(index: int, rng: random.Random, count: CountTokens, budget: int, num_chains: int = 1, num_hops: int = 4) -> Sample:
    names: list[str] = []
    while len(names) < num_chains * (num_hops + 1):
        name = _variable_name(rng)
        if name not in names:
            names.append(name)
    values = [str(rng.randint(10000, 99999)) for _ in range(num_chains)]
    statements = []
    for c in range(num_chains):
        chain = names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)]
        statements.append([f"VAR {chain[0]} = {values[c]}"] + [f"VAR {chain[j + 1]} = VAR {chain[j]}" for j in range(num_hops)])
    answer = tuple(names[: num_hops + 1])
    instruction, question = VT_TEMPLATE.format(context="\0", query=values[0]).split("\0")

    def build(n: int) -> Sample:
        hay = [NOISE] * n
        local = random.Random(f"vt-positions-{index}-{n}")
        for chain in statements:  # each chain in order, at increasing random positions
            spots = sorted(local.randint(0, len(hay)) for _ in chain)
            for spot, stmt in reversed(list(zip(spots, chain))):  # last first: earlier spots stay valid
                hay.insert(spot, stmt + ".")
        return Sample("vt", index, instruction, " ".join(hay), question,
                      VT_ANSWER.format(num_v=num_hops + 1, query=values[0]), answer, "string_match_all",
                      GENERATION_BUDGET["vt"], {"chains": statements})

    return largest_fitting(build, count, budget, start=64)


def _cwe(index: int, rng: random.Random, count: CountTokens, budget: int,
         freq_uncommon: int = 3, num_common: int = 10) -> Sample:
    """RULER's 30 repeats of each common word; fewer (20, 10, 6) when even that list overflows
    a short context (DECISION: at 2K tokens 300 list items do not fit)."""
    vocabulary = rng.sample(plain_words(), 2000)
    common, uncommon = vocabulary[:num_common], vocabulary[num_common:]
    order_seed = rng.random()
    instruction, question = CWE_TEMPLATE.format(context="\0").split("\0")

    def builder(freq_common: int) -> Callable[[int], Sample]:
        def build(n: int) -> Sample:
            words = common * freq_common + uncommon[:n] * freq_uncommon
            random.Random(order_seed).shuffle(words)
            listing = "\n".join(f"{i + 1}. {w}" for i, w in enumerate(words))
            return Sample("cwe", index, instruction, listing, question, CWE_ANSWER, tuple(common),
                          "string_match_all", GENERATION_BUDGET["cwe"], {"freq_common": freq_common})
        return build

    for freq_common in (30, 20, 10, 6):
        if count(builder(freq_common)(num_common).prompt) <= budget:
            return largest_fitting(builder(freq_common), count, budget, start=16)
    raise ValueError(f"the context is too short for RULER cwe ({budget} tokens left for the prompt)")


def _fwe(index: int, rng: random.Random, count: CountTokens, budget: int, alpha: float = 2.0, vocab: int = 500) -> Sample:
    coded = []
    while len(coded) < vocab:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 7)))
        if word not in coded:
            coded.append(word)
    weights = [1.0 / (rank + 1) ** alpha for rank in range(vocab)]  # Zipf's law, as RULER's numpy zipf
    draw_seed = rng.random()
    instruction, question = FWE_TEMPLATE.format(context="\0").split("\0")

    def build(n: int) -> Sample:
        stream = random.Random(draw_seed).choices(coded, weights=weights, k=n)
        counts = {w: stream.count(w) for w in set(stream)}
        top = sorted(counts, key=lambda w: (-counts[w], coded.index(w)))[:3]
        return Sample("fwe", index, instruction, " ... ".join(stream), question, FWE_ANSWER, tuple(top),
                      "string_match_all", GENERATION_BUDGET["fwe"], {"counts": {w: counts[w] for w in top}})

    return largest_fitting(build, count, budget, start=64)


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
        raise ValueError(f"--context {context_tokens} leaves no room for {task}'s {GENERATION_BUDGET[family]}-token answer")
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
