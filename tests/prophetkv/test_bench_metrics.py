"""RULER and LongBench metrics on hand-made cases."""

import pytest

from prophetkv_jax.tasks import metrics
from prophetkv_jax.tasks.sample import Sample


def test_ruler_string_matches():
    assert metrics.string_match_all("The numbers are 123 and 456.", ["123", "456", "789"]) == pytest.approx(200 / 3)
    assert metrics.string_match_all("ABC-def", ["abc-DEF"]) == 100.0
    assert metrics.string_match_part("nothing here", ["x", "y"]) == 0.0
    assert metrics.string_match_part("it is y", ["x", "y"]) == 100.0


def test_qa_f1_normalisation():
    assert metrics.normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert metrics.qa_f1_score("the Paris", "Paris") == 1.0
    # prediction {w, x, y, z} vs reference {y, z, q}: P = 2/4, R = 2/3 -> F1 = 4/7 ("a" would be dropped as an article)
    assert metrics.qa_f1_score("w x y z", "y z q") == pytest.approx(4 / 7)
    assert metrics.qa_f1_score("a b c d", "c d e") == pytest.approx(2 / 3)
    assert metrics.qa_f1_score("", "x") == 0.0


def test_rouge_l_known_value():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 of 6 tokens each -> F = 5/6
    assert metrics.rouge_score("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    assert metrics.rouge_score("", "x") == 0.0


def test_classification_retrieval_count_code():
    classes = ["Location", "Human being", "Entity", "Abbreviation"]
    assert metrics.classification_score("Human being", "Human being", all_classes=classes) == 1.0
    assert metrics.classification_score("Entity or Location", "Location", all_classes=classes) == 0.5
    assert metrics.retrieval_score("Paragraph 3 and 5", "Paragraph 3") == 0.5
    assert metrics.retrieval_zh_score("段落7", "段落7") == 1.0
    assert metrics.count_score("There are 4 unique paragraphs, not 5", 4) == 0.5
    assert metrics.code_sim_score("```python\n# comment\nreturn x + 1\n", "return x + 1") == 1.0


def test_chinese_f1_uses_word_segmentation():
    assert metrics.qa_f1_zh_score("北京是首都。", "北京是首都") == 1.0
    assert 0.0 < metrics.rouge_zh_score("我爱北京天安门", "我爱北京") < 1.0


def test_longbench_scorer_takes_best_reference_and_first_line_for_few_shot():
    assert metrics.longbench_score("hotpotqa", "qa_f1", "Paris", ["London", "Paris"]) == 100.0
    assert metrics.longbench_score("triviaqa", "qa_f1", "\nParis\nLondon", ["London"]) == 0.0
    assert metrics.longbench_score("hotpotqa", "qa_f1", "\nParis\nLondon", ["London"]) > 0.0


def test_score_sample_dispatch_and_unknown_metric():
    sample = Sample("t", 0, "", "", "", "", ("42",), "string_match_all", 4)
    assert metrics.score_sample(sample, "it is 42") == 100.0
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.score_sample(Sample("t", 0, "", "", "", "", ("x",), "bleu", 4), "x")
