"""The tail intervention: which rows it forces in, at ProphetKV's budget."""

import numpy as np

from experiments.prophetkv_tail import intervene
from experiments.prophetkv_tail.run import CATEGORIES


def test_forced_rows_go_first_and_the_budget_is_kept():
    alpha = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.05, 0.6])
    assert intervene.forced_selection(alpha, np.array([]), 3).tolist() == [0, 2, 4]  # plain top-k
    assert intervene.forced_selection(alpha, np.array([5, 1]), 3).tolist() == [0, 1, 5]
    # more forced rows than the budget: the forced rows with the highest scores
    assert intervene.forced_selection(alpha, np.array([1, 3, 5, 6]), 2).tolist() == [3, 6]


def test_value_needle_and_chunk_rows():
    kinds = np.full(12, CATEGORIES.index("rest"))
    kinds[:2] = CATEGORIES.index("prefix")
    kinds[5:7] = CATEGORIES.index("answer_needle")
    kinds[7] = intervene.VALUE
    starts = (0, 2, 6, 10, 12)  # prefix, three chunks; the query starts at 12
    rows = intervene.forced_rows(kinds, starts)
    assert rows["value"].tolist() == [7]
    assert rows["needle"].tolist() == [5, 6, 7]
    assert rows["chunk"].tolist() == [6, 7, 8, 9]  # the chunk holding the value, not the one the needle starts in
