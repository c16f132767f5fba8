"""zoo.serving_graph: the difference measure every export check uses, and the last valid step."""

import numpy as np
import pytest

from zoo import serving_graph


def test_difference_is_relative_beyond_magnitude_one():
    # One float32 step at 400 (CO2 in ppm) is 3.05e-5: 7.6e-8 relative.
    at_400 = np.float32(400.0)
    next_up = np.nextafter(at_400, np.float32(np.inf))
    assert serving_graph.relative_difference([next_up], [at_400]) == pytest.approx(3.0517578e-5 / 400.0)
    assert serving_graph.relative_difference([0.5 + 2e-6], [0.5]) == pytest.approx(2e-6)
    assert serving_graph.relative_difference(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_a_nan_or_a_stray_infinity_is_an_infinite_difference():
    # max() over NaN comparisons is False both ways, so a NaN output once passed every check.
    assert serving_graph.relative_difference([np.nan, 1.0], [0.5, 1.0]) == np.inf
    assert serving_graph.relative_difference([0.5], [np.nan]) == np.inf
    assert serving_graph.relative_difference([np.inf], [3.0]) == np.inf
    assert serving_graph.relative_difference([-np.inf], [np.inf]) == np.inf
    assert serving_graph.relative_difference([np.nan, -np.inf], [np.nan, -np.inf]) == 0.0


def test_last_valid_step_per_row():
    sequences = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1) + 1.0
    got = serving_graph.last_valid(sequences, np.array([2, 0], np.int32)).numpy()
    np.testing.assert_array_equal(got, [[2.0], [0.0]])
    np.testing.assert_array_equal(serving_graph.last_valid(sequences, None), [[3.0], [6.0]])
