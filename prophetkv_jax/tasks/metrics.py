"""Scores as RULER's and LongBench's evaluation scripts define them, per sample, in [0, 100]."""

from __future__ import annotations

import collections
import re
import string
from typing import Callable, Iterable

from prophetkv_jax.tasks.sample import Sample

# ----------------------------------------------------------------------------- RULER


def string_match_all(prediction: str, references: Iterable[str]) -> float:
    """Fraction of references found (case-insensitive substring) in the output, x100."""
    refs = list(references)
    return 100.0 * sum(r.lower() in prediction.lower() for r in refs) / len(refs)


def string_match_part(prediction: str, references: Iterable[str]) -> float:
    """100 if any reference is found in the output."""
    return 100.0 * max(r.lower() in prediction.lower() for r in references)


# ----------------------------------------------------------------------------- LongBench


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_zh_answer(text: str) -> str:
    """Lower case, no spaces, no ASCII or CJK punctuation."""
    cjk = ("！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、"
           "〃《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.")
    banned = set(string.punctuation + cjk)
    return "".join(ch for ch in text.lower() if ch not in banned and not ch.isspace())


def token_f1(prediction: list[str], reference: list[str]) -> float:
    common = collections.Counter(prediction) & collections.Counter(reference)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, reference: str, **_) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(reference).split())


def _zh_tokens(text: str) -> list[str]:
    import jieba

    tokens = (normalize_zh_answer(t) for t in jieba.cut(text, cut_all=False))
    return [t for t in tokens if t]


def qa_f1_zh_score(prediction: str, reference: str, **_) -> float:
    return token_f1(_zh_tokens(prediction), _zh_tokens(reference))


class _WhitespaceTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return text.split()


def rouge_score(prediction: str, reference: str, **_) -> float:
    """Rouge-L F1 (rouge-score's default English tokenisation)."""
    from rouge_score import rouge_scorer

    if not prediction.strip() or not reference.strip():
        return 0.0
    return rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure


def rouge_zh_score(prediction: str, reference: str, **_) -> float:
    """Rouge-L F1 over jieba words (rouge-score's default tokenizer would drop CJK characters)."""
    import jieba
    from rouge_score import rouge_scorer

    pred, ref = " ".join(jieba.cut(prediction, cut_all=False)), " ".join(jieba.cut(reference, cut_all=False))
    if not pred.strip() or not ref.strip():
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WhitespaceTokenizer())
    return scorer.score(ref, pred)["rougeL"].fmeasure


def classification_score(prediction: str, reference: str, all_classes: list[str] | None = None, **_) -> float:
    """1/|matched classes| if the right class is among the class names found in the output."""
    matched = [c for c in all_classes or [] if c in prediction]
    matched = [c for c in matched if not (c in reference and c != reference)]
    return 1.0 / len(matched) if reference in matched else 0.0


def _share_of_numbers(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(n == target for n in numbers) / len(numbers) if numbers else 0.0


def retrieval_score(prediction: str, reference: str, **_) -> float:
    return _share_of_numbers(prediction, re.findall(r"Paragraph (\d+)", reference)[0])


def retrieval_zh_score(prediction: str, reference: str, **_) -> float:
    return _share_of_numbers(prediction, re.findall(r"段落(\d+)", reference)[0])


def count_score(prediction: str, reference: str, **_) -> float:
    return _share_of_numbers(prediction, str(reference))


def code_sim_score(prediction: str, reference: str, **_) -> float:
    """Edit similarity of the first code line (comments and fences skipped) to the reference."""
    from rapidfuzz import fuzz

    lines = prediction.lstrip("\n").split("\n")
    first = next((line for line in lines if "`" not in line and "#" not in line and "//" not in line), "")
    return fuzz.ratio(first, reference) / 100.0


LONGBENCH_METRICS: dict[str, Callable[..., float]] = {
    "qa_f1": qa_f1_score, "qa_f1_zh": qa_f1_zh_score, "rouge": rouge_score, "rouge_zh": rouge_zh_score,
    "classification": classification_score, "retrieval": retrieval_score, "retrieval_zh": retrieval_zh_score,
    "count": count_score, "code_sim": code_sim_score,
}
FIRST_LINE_ONLY = ("trec", "triviaqa", "samsum", "lsht")


def longbench_score(dataset: str, metric: str, prediction: str, references: Iterable[str],
                    all_classes: list[str] | None = None) -> float:
    """LongBench's scorer for one sample: best reference, first line only for the few-shot sets, x100."""
    if dataset in FIRST_LINE_ONLY:
        prediction = prediction.lstrip("\n").split("\n")[0]
    fn = LONGBENCH_METRICS[metric]
    return 100.0 * max(fn(prediction, ref, all_classes=all_classes) for ref in references)


def score_sample(sample: Sample, prediction: str) -> float:
    """Score one output with the metric the sample names."""
    if sample.metric == "string_match_all":
        return string_match_all(prediction, sample.references)
    if sample.metric == "string_match_part":
        return string_match_part(prediction, sample.references)
    if sample.metric in LONGBENCH_METRICS:
        return longbench_score(sample.extra.get("dataset", sample.task), sample.metric, prediction,
                               sample.references, sample.extra.get("all_classes"))
    raise ValueError(f"{sample.task}: unknown metric {sample.metric!r}")
