"""Our cells against the NumPy reference written from the equations.

Fixed expected numbers (np.arange inputs; constant or np.arange-based
weights) pin both our cells and the reference, so neither can drift.
"""

import keras
import numpy as np
import pytest

import layers
from tests.layers import numpy_reference as reference
from tests.support import to_numpy

pytestmark = pytest.mark.backends

UNITS = 3
SEQUENCES = np.arange(24, dtype="float32").reshape(2, 3, 4) / 24.0

CELLS = {
    "simple_rnn": (layers.SimpleRNNCell, {}, reference.simple_rnn_step, {}),
    "lstm": (layers.LSTMCell, {}, reference.lstm_step, {}),
    "gru": (layers.GRUCell, {"reset_after": True}, reference.gru_step, {"reset_after": True}),
    "gru_reset_before": (layers.GRUCell, {"reset_after": False}, reference.gru_step, {"reset_after": False}),
}


def _state_count(kind):
    return 2 if kind == "lstm" else 1


def _wave(shape, phase):
    """Deterministic weights from np.arange that differ across gate blocks."""
    count = int(np.prod(shape))
    return (0.5 * np.cos(0.7 * np.arange(count) + phase)).reshape(shape).astype("float32")


def _rnn(kind, **rnn_arguments):
    cell_class, cell_arguments, _, _ = CELLS[kind]
    cell_arguments = {**cell_arguments, **rnn_arguments.pop("cell_arguments", {})}
    return keras.layers.RNN(cell_class(UNITS, **cell_arguments), **rnn_arguments)


# Last output (rows = batch) of RNN(cell) on SEQUENCES with kernel 0.1,
# recurrent kernel -0.2 and bias 0.05 (constant initializers); the LSTM's
# forget-gate bias is 1 (unit_forget_bias). All units are equal by symmetry.
CONSTANT_EXPECTED = {
    "simple_rnn": [0.149338, 0.29229686],
    "lstm": [0.09119858, 0.21679266],
    "gru": [0.14320946, 0.26553082],
    "gru_reset_before": [0.12617202, 0.25104436],
}

# Last output with weights `_wave(shape, index)` for the index-th weight.
WAVE_EXPECTED = {
    "simple_rnn": [[0.04616184, -0.35584191, -0.54792831], [0.28900288, -0.25279146, -0.59973744]],
    "lstm": [[0.15058549, 0.12155336, 0.06596111], [0.13560588, 0.15167330, 0.10955239]],
    "gru": [[0.32467366, 0.63157694, 0.76083451], [-0.03283391, 0.59067441, 0.90925981]],
    "gru_reset_before": [[0.24226717, 0.50694439, 0.61357242], [-0.06820200, 0.48184306, 0.85251229]],
}
# The LSTM's final carry state c with the same weights.
WAVE_LSTM_CARRY = [[0.31348612, 0.29803013, 0.17414740], [0.24804593, 0.33626263, 0.28528884]]


@pytest.mark.parametrize("kind", list(CELLS))
def test_fixed_numbers_with_constant_initializers(kind):
    constant = keras.initializers.Constant
    rnn = _rnn(
        kind,
        return_sequences=True,
        return_state=True,
        cell_arguments=dict(
            kernel_initializer=constant(0.1),
            recurrent_initializer=constant(-0.2),
            bias_initializer=constant(0.05),
        ),
    )
    outputs = to_numpy(rnn(SEQUENCES))
    expected = np.repeat(np.array(CONSTANT_EXPECTED[kind])[:, None], UNITS, axis=1)
    np.testing.assert_allclose(outputs[0][:, -1], expected, atol=1e-6)
    if kind == "lstm":  # unit_forget_bias: forget-gate bias 1, the rest from the initializer
        np.testing.assert_allclose(rnn.cell.bias.numpy(), [0.05] * 3 + [1.0] * 3 + [0.05] * 6, rtol=1e-7)
    _, _, step, options = CELLS[kind]
    zeros = [np.zeros((2, UNITS))] * _state_count(kind)
    reference_output, _ = reference.run_sequence(step, SEQUENCES, zeros, rnn.get_weights(), **options)
    np.testing.assert_allclose(reference_output[:, -1], expected, atol=1e-6)


@pytest.mark.parametrize("kind", list(CELLS))
def test_fixed_numbers_with_arange_weights(kind):
    rnn = _rnn(kind, return_sequences=True, return_state=True)
    rnn.build(SEQUENCES.shape)
    weights = [_wave(w.shape, index) for index, w in enumerate(rnn.get_weights())]
    rnn.set_weights(weights)
    outputs = to_numpy(rnn(SEQUENCES))
    np.testing.assert_allclose(outputs[0][:, -1], WAVE_EXPECTED[kind], atol=1e-6)
    np.testing.assert_allclose(outputs[1], WAVE_EXPECTED[kind], atol=1e-6)
    _, _, step, options = CELLS[kind]
    zeros = [np.zeros((2, UNITS))] * _state_count(kind)
    reference_output, reference_states = reference.run_sequence(step, SEQUENCES, zeros, weights, **options)
    np.testing.assert_allclose(reference_output[:, -1], WAVE_EXPECTED[kind], atol=1e-7)
    if kind == "lstm":
        np.testing.assert_allclose(outputs[2], WAVE_LSTM_CARRY, atol=1e-6)
        np.testing.assert_allclose(reference_states[1], WAVE_LSTM_CARRY, atol=1e-7)


def _random_weights(network, rng):
    return [rng.normal(0.0, 0.6, size=w.shape).astype("float32") for w in network.get_weights()]


SETTINGS = [
    {},
    {"use_bias": False},
    {"activation": "relu", "recurrent_activation": "hard_sigmoid"},
    {"go_backwards": True},
    {"initial_state": True},
    {"mask": "left"},
    {"mask": "right", "go_backwards": True},
    {"activation": "linear", "batch": 1, "timesteps": 1},
]


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_sequences_match_numpy_reference(kind, setting):
    setting = dict(setting)
    batch, timesteps = setting.pop("batch", 3), setting.pop("timesteps", 5)
    rng = np.random.default_rng(7)
    sequences = rng.normal(size=(batch, timesteps, 4)).astype("float32")
    cell_arguments = {
        key: setting.pop(key) for key in ("use_bias", "activation", "recurrent_activation") if key in setting
    }
    if kind == "simple_rnn":
        cell_arguments.pop("recurrent_activation", None)
    go_backwards = setting.pop("go_backwards", False)
    rnn = _rnn(kind, return_sequences=True, return_state=True, go_backwards=go_backwards, cell_arguments=cell_arguments)
    rnn.build(sequences.shape)
    weights = _random_weights(rnn, rng)
    rnn.set_weights(weights)
    states = [np.zeros((batch, UNITS), "float32")] * _state_count(kind)
    arguments = {}
    if setting.pop("initial_state", False):
        states = [rng.normal(size=(batch, UNITS)).astype("float32") for _ in states]
        arguments["initial_state"] = states
    mask = reference.padding_mask(batch, timesteps, setting.pop("mask", None))
    if mask is not None:
        arguments["mask"] = mask
    assert not setting, f"unused setting keys {setting}"
    outputs = to_numpy(rnn(sequences, **arguments))
    _, _, step, options = CELLS[kind]
    step_options = {**options, **cell_arguments}
    step_options.pop("use_bias", None)
    reference_output, reference_states = reference.run_sequence(
        step, sequences, states, weights, go_backwards=go_backwards, mask=mask, **step_options
    )
    np.testing.assert_allclose(outputs[0], reference_output, atol=1e-5)
    for ours, expected in zip(outputs[1:], reference_states):
        np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("kind", list(CELLS))
def test_single_step_called_directly_matches_numpy_reference(kind):
    cell_class, cell_arguments, step, options = CELLS[kind]
    cell = cell_class(UNITS, **cell_arguments)
    cell.build((2, 4))
    rng = np.random.default_rng(3)
    weights = _random_weights(cell, rng)
    cell.set_weights(weights)
    inputs = rng.normal(size=(2, 4)).astype("float32")
    states = [rng.normal(size=(2, UNITS)).astype("float32") for _ in range(_state_count(kind))]
    output, new_states = to_numpy(cell(inputs, states))
    expected_output, expected_states = step(inputs, *states, *weights, **options)
    np.testing.assert_allclose(output, expected_output, atol=1e-6)
    assert len(new_states) == len(expected_states)
    for ours, expected in zip(new_states, expected_states):
        np.testing.assert_allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("kind", list(CELLS))
def test_unrolled_and_looped_paths_agree(kind):
    rng = np.random.default_rng(5)
    sequences = rng.normal(size=(2, 4, 4)).astype("float32")
    looped = _rnn(kind, return_sequences=True, return_state=True)
    unrolled = _rnn(kind, return_sequences=True, return_state=True, unroll=True)
    looped.build(sequences.shape)
    unrolled.build(sequences.shape)
    unrolled.set_weights(looped.get_weights())
    for a, b in zip(to_numpy(looped(sequences)), to_numpy(unrolled(sequences))):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_reference_detects_a_gate_order_mistake():
    """Swapping the LSTM's input and forget gate blocks changes the reference's answer."""
    weights = [_wave(shape, index) for index, shape in enumerate([(4, 12), (3, 12), (12,)])]
    swapped = [np.concatenate([w[..., 3:6], w[..., 0:3], w[..., 6:]], axis=-1) for w in weights]
    zeros = [np.zeros((2, 3))] * 2
    straight, _ = reference.run_sequence(reference.lstm_step, SEQUENCES, zeros, weights)
    crossed, _ = reference.run_sequence(reference.lstm_step, SEQUENCES, zeros, swapped)
    assert np.max(np.abs(straight - crossed)) > 1e-2
