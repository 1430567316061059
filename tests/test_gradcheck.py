"""nb.gradcheck: passes correct gradients, and names the worst element of a wrong one."""
import numpy as np
import pytest

import numbanet as nb


def test_gradcheck_passes_a_correct_gradient(rng):
    x = rng.standard_normal((3, 4))
    assert nb.gradcheck(lambda x: float((x ** 3).sum()), [x], [3 * x ** 2]) < 1e-6


def test_gradcheck_reports_the_worst_index_not_the_first(rng):
    x = rng.standard_normal(5)
    wrong = 2 * x
    wrong[1] += 1e-3   # outside the tolerance, but the smaller error
    wrong[3] += 1.0    # the worst
    with pytest.raises(AssertionError, match=r"input 0 at index \(3,\) \(the worst of 2 elements"):
        nb.gradcheck(lambda x: float((x ** 2).sum()), [x], [wrong])
