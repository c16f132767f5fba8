"""The sequence layers reject invalid `bptt_steps`, `fused` and `jit_compile` arguments."""

import pytest

import layers


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)]
)
def test_invalid_bptt_steps_is_rejected(value, error):
    with pytest.raises(error, match="`bptt_steps`.*positive integer"):
        layers.LSTM(3, bptt_steps=value)


def test_invalid_fused_is_rejected():
    with pytest.raises(TypeError, match="`fused`.*bool"):
        layers.GRU(3, fused="yes")


def test_invalid_jit_compile_is_rejected():
    for value in ("yes", 1, None):
        with pytest.raises(TypeError, match="`jit_compile`.*True, False or 'auto'"):
            layers.LSTM(3, jit_compile=value)
