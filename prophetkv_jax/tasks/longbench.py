"""LongBench (THUDM/LongBench v1) from its official jsonl files, with its prompts, lengths and metrics.

Each record (``input, context, answers, all_classes, length, dataset, _id``) becomes a
Sample whose template is split at ``{context}``: the text before joins the cached prefix,
the context is chunked and cached, and everything after it (with the question filled in)
is the query segment. Prompts longer than the model's budget are cut in the middle of the
context, as LongBench's pred.py does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prophetkv_jax.tasks.sample import Sample

TEMPLATE_VERSION = 1  # bumped when a prompt changes what a record holds (part of a run's settings digest)

_MULTI_DOC = ("Answer the question based on the given passages. Only give me the answer and do not output any "
              "other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the "
              "given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\n"
              "Answer:")
_CONCISE = "as concisely as you can, using a single phrase or sentence if possible."

# "asconcisely" (no space) is in LongBench's own narrativeqa prompt; kept so the prompts match upstream.
PROMPTS = {
    "narrativeqa": ("You are given a story, which can be either a novel or a movie script, and a question. Answer "
                    "the question asconcisely as you can, using a single phrase if possible. Do not provide any "
                    "explanation.\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely "
                    "as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: "
                    "{input}\n\nAnswer:"),
    "qasper": ("You are given a scientific article and a question. Answer the question " + _CONCISE + " If the "
               "question cannot be answered based on the information in the article, write \"unanswerable\". If "
               "the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide "
               "any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article "
               + _CONCISE + " If the question cannot be answered based on the information in the article, write "
               "\"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or "
               "\"unanswerable\". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"),
    "multifieldqa_en": ("Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following "
                        "question based on the above text, only give me the answer and do not output any other "
                        "words.\n\nQuestion: {input}\nAnswer:"),
    "multifieldqa_zh": ("阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，"
                        "只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答："),
    "hotpotqa": _MULTI_DOC,
    "2wikimqa": _MULTI_DOC,
    "musique": _MULTI_DOC,
    "dureader": ("请基于给定的文章回答下述问题。\n\n文章：{context}\n\n"
                 "请基于上述文章回答下面的问题。\n\n问题：{input}\n回答："),
    "gov_report": ("You are given a report by a government agency. Write a one-page summary of the report.\n\n"
                   "Report:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:"),
    "qmsum": ("You are given a meeting transcript and a query containing a question or instruction. Answer the "
              "query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the "
              "above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:"),
    "multi_news": ("You are given several news passages. Write a one-page summary of all news. \n\nNews:\n"
                   "{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:"),
    "vcsum": "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：",
    "trec": ("Please determine the type of the question below. Here are some examples of questions.\n\n"
             "{context}\n{input}"),
    "triviaqa": ("Answer the question based on the given passage. Only give me the answer and do not output any "
                 "other words. The following are some examples.\n\n{context}\n\n{input}"),
    "samsum": ("Summarize the dialogue into a few short sentences. The following are some examples.\n\n"
               "{context}\n\n{input}"),
    "lsht": "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}",
    "passage_count": ("There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. "
                      "Please carefully read these paragraphs and determine how many unique paragraphs there are "
                      "after removing duplicates. In other words, how many non-repeating paragraphs are there in "
                      "total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing "
                      "duplicates. The output format should only contain the number, such as 1, 2, 3, and so on."
                      "\n\nThe final answer is: "),
    "passage_retrieval_en": ("Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine "
                             "which paragraph the abstract is from.\n\n{context}\n\nThe following is an "
                             "abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract "
                             "is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\n"
                             "The answer is: "),
    "passage_retrieval_zh": ("以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n"
                             "{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。"
                             "答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是："),
    "lcc": "Please complete the code given below. \n{context}Next line of code:\n",
    "repobench-p": "Please complete the code given below. \n{context}{input}Next line of code:\n",
}
MAX_NEW_TOKENS = {
    "narrativeqa": 128, "qasper": 128, "multifieldqa_en": 64, "multifieldqa_zh": 64, "hotpotqa": 32,
    "2wikimqa": 32, "musique": 32, "dureader": 128, "gov_report": 512, "qmsum": 512, "multi_news": 512,
    "vcsum": 512, "trec": 64, "triviaqa": 32, "samsum": 128, "lsht": 64, "passage_count": 32,
    "passage_retrieval_en": 32, "passage_retrieval_zh": 32, "lcc": 64, "repobench-p": 64,
}
METRIC = {
    **dict.fromkeys(["narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique", "triviaqa"],
                    "qa_f1"),
    "multifieldqa_zh": "qa_f1_zh", "dureader": "rouge_zh", "vcsum": "rouge_zh",
    **dict.fromkeys(["gov_report", "qmsum", "multi_news", "samsum"], "rouge"),
    "trec": "classification", "lsht": "classification", "passage_retrieval_en": "retrieval",
    "passage_retrieval_zh": "retrieval_zh", "passage_count": "count", "lcc": "code_sim", "repobench-p": "code_sim",
}
DATASETS = tuple(PROMPTS)
# LongBench's pred.py sends these few-shot / code prompts as raw text, never in a chat template.
NO_CHAT = ("trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p")
_FIELDS = ("input", "context", "answers")
_SURROGATE = re.compile("[\ud800-\udfff]")


def to_sample(dataset: str, index: int, record: dict) -> Sample:
    instruction, after = PROMPTS[dataset].split("{context}")
    return Sample(
        task=dataset, index=index, instruction=instruction, context=record["context"],
        question=after.replace("{input}", record["input"]), answer_prefix="",
        references=tuple(record["answers"]), metric=METRIC[dataset], max_new_tokens=MAX_NEW_TOKENS[dataset],
        extra={"dataset": dataset, "chat": dataset not in NO_CHAT,
               "all_classes": record.get("all_classes"), "_id": record.get("_id"),
               "length": record.get("length")},
    )


def load(data_dir: str | Path, dataset: str, limit: int | None = None) -> list[Sample]:
    """The first ``limit`` records of ``{data_dir}/{dataset}.jsonl`` as samples."""
    if dataset not in PROMPTS:
        raise ValueError(f"unknown LongBench dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    path = Path(data_dir) / f"{dataset}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing. Put LongBench's data/{dataset}.jsonl there (from THUDM/LongBench's data.zip) "
            f"or pass --data-dir"
        )
    samples = []
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, 1):
            if limit is not None and len(samples) >= limit:
                break
            if not raw.strip():
                continue
            try:
                record = _record(raw)
            except ValueError as err:
                raise ValueError(f"{path}, line {line_number}: not a LongBench record ({err})") from err
            samples.append(to_sample(dataset, len(samples), record))
    return samples


def _record(raw: bytes) -> dict:
    """One line as a record whose fields have the types the prompts and metrics need; a wrong type
    here would otherwise fail as a traceback after the sample was computed."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8: byte {raw[err.start]:#04x} at column {err.start + 1}") from err
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in _FIELDS if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for name in ("input", "context"):
        if not isinstance(record[name], str):
            raise ValueError(f"{name!r} must be a string, got {record[name]!r:.60}")
    answers, classes = record["answers"], record.get("all_classes")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"'answers' must be a non-empty list of strings, got {answers!r:.60}")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"'all_classes' must be null or a list of strings, got {classes!r:.60}")
    for name, text in [("input", record["input"]), ("context", record["context"]),
                       *(("answers", a) for a in answers), *(("all_classes", c) for c in classes or ())]:
        surrogate = _SURROGATE.search(text)
        if surrogate:  # JSON may escape one; no tokenizer can encode it
            raise ValueError(f"{name!r} holds a lone surrogate (\\u{ord(surrogate.group()):04x})")
    return record
