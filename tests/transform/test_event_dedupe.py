"""An event seen twice keeps one row: the first, and only when both halves of its id agree."""

from __future__ import annotations

import numpy as np

from recurly_elt.transform.events import _first_of_each


def test_first_of_each_pair_in_row_order():
    a = np.array([7, 7, 7, 3, 7, 3], dtype=np.uint64)
    b = np.array([1, 2, 1, 5, 2, 6], dtype=np.uint64)
    # same first half, other second half: a different event, kept
    assert _first_of_each(a, b).tolist() == [True, True, False, True, False, True]


def test_no_rows_and_no_repeats():
    empty = np.array([], dtype=np.uint64)
    assert _first_of_each(empty, empty).tolist() == []
    a = np.arange(5, dtype=np.uint64)
    assert _first_of_each(a, a).all()
