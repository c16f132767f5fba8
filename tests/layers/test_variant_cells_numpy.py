"""The variant cells against their NumPy references, and against `LSTMCell` where one reduces to it.

Reductions that are exact: `PeepholeLSTMCell` with zero peephole weights is
`LSTMCell`; `ProjectionLSTMCell` without options is `LSTMCell`, and with an
identity projection and peepholes it is `PeepholeLSTMCell`; its coupled
input-forget gate (`i = 1 - f`) is an LSTM whose input-gate weights are minus
its forget-gate weights (`sigmoid(-a) = 1 - sigmoid(a)`). The layer-normalised
cells reduce to no Keras cell (a normalisation with gain 1 and shift 0 still
normalises), so NumPy is their reference.
"""

import keras
import numpy as np
import pytest

import layers
from tests.layers import numpy_reference
from tests.layers.autodiff import outputs_and_gradients, relative_difference
from tests.layers.variant_kinds import FEATURES, KINDS, make_cell, random_weights, reference_step, state_widths
from tests.support import to_numpy

pytestmark = pytest.mark.backends

SETTINGS = {
    "plain": {},
    "no_bias_relu": {"use_bias": False, "activation": "relu"},
    "masked_initial_state": {"mask": "left", "initial_state": True},
    "backwards_masked_initial_state": {"go_backwards": True, "mask": "right", "initial_state": True},
}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_sequences_match_numpy_reference(kind, setting):
    setting = dict(SETTINGS[setting])
    batch, timesteps = 3, 5
    rng = np.random.default_rng(7)
    sequences = rng.normal(size=(batch, timesteps, FEATURES)).astype("float32")
    cell_arguments = {key: setting.pop(key) for key in ("use_bias", "activation") if key in setting}
    go_backwards = setting.pop("go_backwards", False)
    cell = make_cell(kind, **cell_arguments)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    rnn.build(sequences.shape)
    weights = random_weights(rnn, rng)
    rnn.set_weights(weights)
    states = [np.zeros((batch, width), "float32") for width in state_widths(cell)]
    arguments = {}
    if setting.pop("initial_state", False):
        states = [rng.normal(size=s.shape).astype("float32") for s in states]
        arguments["initial_state"] = states
    mask = numpy_reference.padding_mask(batch, timesteps, setting.pop("mask", None))
    if mask is not None:
        arguments["mask"] = keras.ops.convert_to_tensor(mask)
    assert not setting, f"unused setting keys {setting}"
    outputs = to_numpy(rnn(sequences, **arguments))
    step, options = reference_step(kind, **cell_arguments)
    expected, expected_states = numpy_reference.run_sequence(
        step, sequences, states, weights, go_backwards=go_backwards, mask=mask, **options
    )
    counted = np.ones((batch, timesteps), bool)
    if mask is not None and "initial_state" in arguments:
        # Before a row's first unmasked step Keras's RNN outputs zeros on some
        # backends and the initial state on others; the states are the same.
        order = mask[:, ::-1] if go_backwards else mask
        counted = np.logical_or.accumulate(order, axis=1)
    np.testing.assert_allclose(outputs[0][counted], expected[counted], atol=1e-5)
    assert len(outputs) - 1 == len(expected_states)
    for ours, theirs in zip(outputs[1:], expected_states):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_single_step_called_directly_matches_numpy_reference(kind):
    cell = make_cell(kind)
    cell.build((2, FEATURES))
    rng = np.random.default_rng(3)
    weights = random_weights(cell, rng)
    cell.set_weights(weights)
    inputs = rng.normal(size=(2, FEATURES)).astype("float32")
    states = [rng.normal(size=(2, width)).astype("float32") for width in state_widths(cell)]
    output, new_states = to_numpy(cell(inputs, states))
    step, options = reference_step(kind)
    expected_output, expected_states = step(inputs, *states, *weights, **options)
    np.testing.assert_allclose(output, expected_output, atol=1e-6)
    for ours, theirs in zip(new_states, expected_states):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_paper_variant_carries_the_raw_cell_state():
    rng = np.random.default_rng(0)
    sequences = rng.normal(size=(2, 4, FEATURES)).astype("float32")
    networks = [
        keras.layers.RNN(make_cell("layer_norm_lstm", carry_normalized_state=carried), return_state=True)
        for carried in (True, False)
    ]
    for network in networks:
        network.build(sequences.shape)
    weights = random_weights(networks[0], rng)
    for network in networks:
        network.set_weights(weights)
    (_, _, addons_c), (_, _, paper_c) = (to_numpy(n(sequences)) for n in networks)
    # Addons carries LN(c) = n * gamma + beta with each row of n of mean 0.
    gamma, beta = weights[-2:]
    np.testing.assert_allclose(((addons_c - beta) / gamma).mean(axis=-1), 0.0, atol=1e-5)
    assert np.max(np.abs(((paper_c - beta) / gamma).mean(axis=-1))) > 1e-2
    # The first step's output is the same (both normalise on the way out).
    first = [to_numpy(keras.layers.RNN(n.cell)(sequences[:, :1])) for n in networks]
    np.testing.assert_allclose(first[0], first[1], atol=1e-6)


def _equal_networks(ours, theirs, inputs, shared_weights):
    """Outputs, input gradients and the first `shared_weights` weight gradients of ours equal theirs."""
    our_outputs, our_gradients = outputs_and_gradients(ours, lambda x: ours(x), [inputs])
    their_outputs, their_gradients = outputs_and_gradients(theirs, lambda x: theirs(x), [inputs])
    for a, b in zip(our_outputs, their_outputs):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for index in range(1 + shared_weights):
        assert relative_difference(our_gradients[index], their_gradients[index]) <= 1e-5, index
    assert np.max(np.abs(their_gradients[1])) > 1e-3  # not all zero


def _rnns(*cells, inputs):
    networks = [keras.layers.RNN(cell, return_sequences=True, return_state=True) for cell in cells]
    for network in networks:
        network.build(inputs.shape)
    return networks


SEQUENCES = np.random.default_rng(1).normal(size=(2, 5, FEATURES)).astype("float32")


def test_peephole_cell_with_zero_peepholes_is_lstm_cell():
    peephole, lstm = _rnns(layers.PeepholeLSTMCell(3), layers.LSTMCell(3), inputs=SEQUENCES)
    weights = random_weights(lstm, np.random.default_rng(2))
    peephole.set_weights(weights + [np.zeros(3, "float32")] * 3)
    lstm.set_weights(weights)
    _equal_networks(peephole, lstm, SEQUENCES, shared_weights=3)
    # and nonzero peepholes change the outputs
    peephole.set_weights(weights + [np.full(3, 0.5, "float32")] * 3)
    assert np.max(np.abs(to_numpy(peephole(SEQUENCES)[0]) - to_numpy(lstm(SEQUENCES)[0]))) > 1e-2


def test_projection_cell_without_options_is_lstm_cell():
    projection, lstm = _rnns(layers.ProjectionLSTMCell(3), layers.LSTMCell(3), inputs=SEQUENCES)
    assert [tuple(w.shape) for w in projection.weights] == [tuple(w.shape) for w in lstm.weights]
    weights = random_weights(lstm, np.random.default_rng(2))
    projection.set_weights(weights)
    lstm.set_weights(weights)
    _equal_networks(projection, lstm, SEQUENCES, shared_weights=3)


def test_identity_projection_with_peepholes_is_peephole_cell():
    projection, peephole = _rnns(
        layers.ProjectionLSTMCell(3, proj_units=3, use_peepholes=True), layers.PeepholeLSTMCell(3), inputs=SEQUENCES
    )
    weights = random_weights(peephole, np.random.default_rng(2))
    projection.set_weights(weights + [np.eye(3, dtype="float32")])
    peephole.set_weights(weights)
    _equal_networks(projection, peephole, SEQUENCES, shared_weights=6)


@pytest.mark.parametrize("use_peepholes", [False, True])
def test_coupled_gate_is_an_lstm_whose_input_gate_is_minus_its_forget_gate(use_peepholes):
    units = 3
    coupled, full = _rnns(
        layers.ProjectionLSTMCell(units, coupled_input_forget_gate=True, use_peepholes=use_peepholes),
        layers.ProjectionLSTMCell(units, use_peepholes=use_peepholes),
        inputs=SEQUENCES,
    )
    weights = random_weights(coupled, np.random.default_rng(2))  # gate blocks f, c, o
    full_weights = [np.concatenate([-w[..., :units], w], axis=-1) for w in weights[:3]]  # i = -f, f, c, o
    if use_peepholes:
        forget, output = weights[3:]
        full_weights += [-forget, forget, output]
    coupled.set_weights(weights)
    full.set_weights(full_weights)
    for a, b in zip(to_numpy(coupled(SEQUENCES)), to_numpy(full(SEQUENCES))):
        np.testing.assert_allclose(a, b, atol=1e-6)
