"""RULER's fwe sizing rule as the deviations page measures it: step up by context/32 words, back off once."""

from types import SimpleNamespace

from experiments.prophetkv_ruler_fidelity import deviations


def test_ruler_word_count_steps_up_then_backs_off_one_step():
    build = lambda n: SimpleNamespace(prompt="w " * n)  # noqa: E731
    count = lambda text: len(text.split())  # noqa: E731
    # budget 100, context 320: start at 100 // 6 = 16 words, step 10: 16, 26, ..., 106 reaches 100 -> 96
    assert deviations._ruler_word_count(build, count, 100, 320) == 96
    # a step larger than the room left: back to the start, 30 // 6 = 5 words, 25 below the budget
    assert deviations._ruler_word_count(build, count, 30, 3200) == 5
