"""Dropout in the cells: off outside training, one mask per sequence in training.

Many tests use an *identity cell*: a linear SimpleRNNCell whose kernel is the
identity and recurrent kernel zero, fed with ones, so that its output at each
step is exactly the input dropout mask of that step (0 or 1 / (1 - rate)).
With the kernel zero, the recurrent kernel the identity and an initial state
of ones, the state after t steps is the recurrent mask to the power t.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from tests.layers import numpy_reference as reference

RATE = 0.5
KEPT = 1.0 / (1.0 - RATE)
WIDTH = 6

CELLS = {
    "simple_rnn": (layers.SimpleRNNCell, {}, reference.simple_rnn_step, {}),
    "lstm": (layers.LSTMCell, {}, reference.lstm_step, {}),
    "gru": (layers.GRUCell, {"reset_after": True}, reference.gru_step, {"reset_after": True}),
    "gru_reset_before": (layers.GRUCell, {"reset_after": False}, reference.gru_step, {"reset_after": False}),
}


def identity_cell(dropout=0.0, recurrent_dropout=0.0, seed=1, through="input"):
    """A linear cell that passes its input (`through="input"`) or its state through."""
    cell = layers.SimpleRNNCell(
        WIDTH,
        activation="linear",
        use_bias=False,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        seed=seed,
    )
    cell.build((None, WIDTH))
    eye, zero = np.eye(WIDTH, dtype="float32"), np.zeros((WIDTH, WIDTH), "float32")
    cell.set_weights([eye, zero] if through == "input" else [zero, eye])
    return cell


def ones(batch=3, timesteps=4):
    return np.ones((batch, timesteps, WIDTH), "float32")


def assert_is_one_mask_per_sequence(outputs):
    """`outputs` (batch, time, width) of an identity cell: the same mask at every step."""
    outputs = np.asarray(outputs)
    assert set(np.unique(outputs)) <= {0.0, KEPT}, np.unique(outputs)
    assert 0 < np.mean(outputs == 0.0) < 1  # some units dropped, some kept
    for t in range(1, outputs.shape[1]):
        np.testing.assert_array_equal(outputs[:, t], outputs[:, 0])


def _maybe_graph(function, mode):
    return tf.function(function) if mode == "graph" else function


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_dropout_changes_nothing_outside_training(kind, mode):
    cell_class, cell_arguments, _, _ = CELLS[kind]
    plain = keras.layers.RNN(cell_class(4, **cell_arguments), return_sequences=True, return_state=True)
    dropped = keras.layers.RNN(
        cell_class(4, dropout=0.5, recurrent_dropout=0.5, seed=3, **cell_arguments),
        return_sequences=True,
        return_state=True,
    )
    sequences = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    plain.build(sequences.shape)
    dropped.build(sequences.shape)
    dropped.set_weights(plain.get_weights())
    expected = plain(sequences)
    for training in (False, None):
        arguments = {} if training is None else {"training": training}
        outputs = _maybe_graph(lambda x, arguments=arguments: dropped(x, **arguments), mode)(sequences)
        for a, b in zip(outputs, expected):
            np.testing.assert_array_equal(a, b)
    # and it does change something in training
    trained = _maybe_graph(lambda x: dropped(x, training=True), mode)(sequences)
    assert np.max(np.abs(np.asarray(trained[0]) - np.asarray(expected[0]))) > 1e-3


@pytest.mark.parametrize("kind", list(CELLS))
def test_training_applies_one_recorded_mask_at_every_step_as_the_reference(kind):
    """Record the masks each step used; all equal; the reference with them agrees."""
    cell_class, cell_arguments, step, options = CELLS[kind]
    recorded = []

    class RecordingCell(cell_class):
        def dropout_masks(self, inputs, h_tm1, training=False):
            masks = super().dropout_masks(inputs, h_tm1, training)
            recorded.append([np.asarray(m) for m in masks])
            return masks

    cell = RecordingCell(4, dropout=0.4, recurrent_dropout=0.3, seed=5, **cell_arguments)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    rng = np.random.default_rng(2)
    sequences = rng.normal(size=(3, 4, 5)).astype("float32")
    initial_state = [rng.normal(size=(3, 4)).astype("float32") for _ in range(2 if kind == "lstm" else 1)]
    rnn.build(sequences.shape)
    outputs = rnn(sequences, initial_state=initial_state, training=True)
    assert len(recorded) >= 4  # every step asked for the masks
    input_mask, recurrent_mask = recorded[0]
    assert input_mask.shape == (3, 5) and recurrent_mask.shape == (3, 4)
    for masks in recorded[1:]:
        np.testing.assert_array_equal(masks[0], input_mask)
        np.testing.assert_array_equal(masks[1], recurrent_mask)
    assert set(np.unique(input_mask)) == {0.0, np.float32(1 / 0.6)}
    assert set(np.unique(recurrent_mask)) == {0.0, np.float32(1 / 0.7)}
    expected_output, expected_states = reference.run_sequence(
        step,
        sequences,
        initial_state,
        rnn.get_weights(),
        input_mask=input_mask,
        recurrent_mask=recurrent_mask,
        **options,
    )
    np.testing.assert_allclose(outputs[0], expected_output, atol=1e-5)
    for ours, expected in zip(outputs[1:], expected_states):
        np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("start", ["zero_state", "initial_state", "stateful"])
def test_each_rnn_call_draws_new_input_masks(mode, start):
    """Within a call one mask; between two calls different masks, however the state starts."""
    rnn = keras.layers.RNN(identity_cell(dropout=RATE), return_sequences=True, stateful=start == "stateful")
    sequences = ones()
    rnn.build(sequences.shape)
    arguments = {"training": True}
    if start == "initial_state":
        arguments["initial_state"] = [np.zeros((3, WIDTH), "float32")]
    call = _maybe_graph(lambda x: rnn(x, **arguments), mode)
    first, second = np.asarray(call(sequences)), np.asarray(call(sequences))
    assert_is_one_mask_per_sequence(first)
    assert_is_one_mask_per_sequence(second)
    assert not np.array_equal(first[:, 0], second[:, 0])


@pytest.mark.parametrize("unroll", [False, True])
def test_two_rnn_calls_in_one_traced_function_draw_different_masks(unroll):
    """E.g. one layer applied to two inputs in one model: each call is its own sequence."""
    rnn = keras.layers.RNN(identity_cell(dropout=RATE), return_sequences=True, unroll=unroll)
    initial_state = [np.zeros((3, WIDTH), "float32")]

    @tf.function
    def twice(x):
        return rnn(x, initial_state=initial_state, training=True), rnn(x, initial_state=initial_state, training=True)

    first, second = [np.asarray(o) for o in twice(ones())]
    assert_is_one_mask_per_sequence(first)
    assert_is_one_mask_per_sequence(second)
    assert not np.array_equal(first[:, 0], second[:, 0])


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_each_rnn_call_draws_new_recurrent_masks_with_an_initial_state(mode):
    rnn = keras.layers.RNN(identity_cell(recurrent_dropout=RATE, through="state"), return_sequences=True)
    sequences = ones(timesteps=3)
    initial_state = [np.ones((3, WIDTH), "float32")]
    call = _maybe_graph(lambda x: rnn(x, initial_state=initial_state, training=True), mode)
    masks = []
    for _ in range(2):
        states = np.asarray(call(sequences))
        recurrent_mask = states[:, 0]
        assert set(np.unique(recurrent_mask)) == {0.0, KEPT}
        for t in range(3):  # h_t = mask ** (t + 1): the same mask at every step
            np.testing.assert_array_equal(states[:, t], recurrent_mask ** (t + 1))
        masks.append(recurrent_mask)
    assert not np.array_equal(masks[0], masks[1])


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_same_seed_same_masks_other_seed_other_masks(mode):
    def outputs_with_seed(seed):
        rnn = keras.layers.RNN(identity_cell(dropout=RATE, seed=seed), return_sequences=True)
        call = _maybe_graph(lambda x: rnn(x, training=True), mode)
        return [np.asarray(call(ones())) for _ in range(2)]

    first, again, other = outputs_with_seed(11), outputs_with_seed(11), outputs_with_seed(12)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_eager_and_graph_draw_the_same_masks_for_the_same_seed(kind):
    cell_class, cell_arguments, _, _ = CELLS[kind]
    sequences = np.random.default_rng(4).normal(size=(2, 3, 5)).astype("float32")

    def network():
        rnn = keras.layers.RNN(
            cell_class(4, dropout=0.3, recurrent_dropout=0.3, seed=9, **cell_arguments),
            return_sequences=True,
        )
        rnn.build(sequences.shape)
        rnn.set_weights([np.full(w.shape, 0.1 * (i + 1), "float32") for i, w in enumerate(rnn.get_weights())])
        return rnn

    eager, graph = network(), network()
    graph_call = tf.function(lambda x: graph(x, training=True))
    for _ in range(2):  # also the second call: both sides draw new, equal masks
        np.testing.assert_allclose(eager(sequences, training=True), graph_call(sequences), atol=1e-6)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_bidirectional_and_stacked_cells_draw_one_mask_per_call(mode):
    # Without a seed each direction's copy of the cell seeds itself; with a
    # fixed seed both copies share it and draw equal masks, as Keras's do.
    keras.utils.set_random_seed(2)
    bidirectional = keras.layers.Bidirectional(
        keras.layers.RNN(identity_cell(dropout=RATE, seed=None), return_sequences=True), merge_mode=None
    )
    # Bidirectional rebuilds both directions from the config: set the weights again.
    bidirectional.build((3, 4, WIDTH))
    bidirectional.set_weights(identity_cell().get_weights() * 2)
    stacked = keras.layers.RNN(
        [identity_cell(dropout=RATE, seed=3), identity_cell(dropout=RATE, seed=4)], return_sequences=True
    )
    initial_state = [np.zeros((3, WIDTH), "float32")] * 2
    calls = {
        "bidirectional": _maybe_graph(lambda x: bidirectional(x, initial_state=initial_state, training=True), mode),
        "stacked": _maybe_graph(lambda x: stacked(x, initial_state=initial_state, training=True), mode),
    }
    first = [np.asarray(o) for o in calls["bidirectional"](ones())]
    second = [np.asarray(o) for o in calls["bidirectional"](ones())]
    for forward_or_backward in (0, 1):
        assert_is_one_mask_per_sequence(first[forward_or_backward])
        assert not np.array_equal(first[forward_or_backward], second[forward_or_backward])
    assert not np.array_equal(first[0], first[1])  # the two directions have their own masks
    first, second = np.asarray(calls["stacked"](ones())), np.asarray(calls["stacked"](ones()))
    # the stack's output is the product of the two cells' masks: 0 or KEPT ** 2
    assert set(np.unique(first)) <= {0.0, KEPT**2}
    for t in range(1, 4):
        np.testing.assert_array_equal(first[:, t], first[:, 0])
    assert not np.array_equal(first, second)


def test_direct_calls_keep_the_mask_until_reset_or_initial_state():
    cell = identity_cell(dropout=RATE, seed=6)
    step_input, state = np.ones((3, WIDTH), "float32"), [np.zeros((3, WIDTH), "float32")]
    first, _ = cell(step_input, state, training=True)
    again, _ = cell(step_input, state, training=True)
    np.testing.assert_array_equal(first, again)
    cell.reset_dropout_masks()
    after_reset, _ = cell(step_input, state, training=True)
    assert not np.array_equal(first, after_reset)
    cell.get_initial_state(batch_size=3)
    after_initial_state, _ = cell(step_input, state, training=True)
    assert not np.array_equal(after_reset, after_initial_state)
    assert set(np.unique(after_initial_state)) <= {0.0, KEPT}


def test_masks_drawn_in_a_traced_function_are_not_reused_eagerly():
    """A mask from a tf.function graph must not leak into eager calls (or fail there)."""
    cell = identity_cell(dropout=RATE, seed=7)
    step_input, state = np.ones((3, WIDTH), "float32"), [np.zeros((3, WIDTH), "float32")]
    traced = tf.function(lambda x, s: cell(x, s, training=True)[0])
    traced(step_input, state)
    eager, _ = cell(step_input, state, training=True)
    assert set(np.unique(eager)) <= {0.0, KEPT}
    eager_again, _ = cell(step_input, state, training=True)
    np.testing.assert_array_equal(eager, eager_again)


def test_batch_size_change_draws_a_mask_of_the_new_size():
    cell = identity_cell(dropout=RATE, seed=8)
    small, _ = cell(np.ones((2, WIDTH), "float32"), [np.zeros((2, WIDTH), "float32")], training=True)
    large, _ = cell(np.ones((5, WIDTH), "float32"), [np.zeros((5, WIDTH), "float32")], training=True)
    assert small.shape == (2, WIDTH) and large.shape == (5, WIDTH)


def test_fit_with_dropout_in_a_compiled_model_trains():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.RNN(layers.LSTMCell(4, dropout=0.2, recurrent_dropout=0.2, seed=1)),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(rng.normal(size=(8, 5, 3)), rng.normal(size=(8, 1)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(np.max(np.abs(a - b)) > 0 for a, b in zip(before, model.get_weights()))
