"""Which calls run the cell path instead of the fused path, and that it then equals `RNN(our cell)` exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from tests.layers.fused.support import example_inputs, make_layers, run, sequence_mask


@pytest.mark.parametrize(
    "options, reason_part",
    [
        (dict(fused=False), "fused=False"),
        (dict(activation="elu"), "activation"),
        (dict(recurrent_activation="softsign"), "recurrent_activation"),
    ],
)
@pytest.mark.parametrize("kind", ["lstm", "gru", "layer_norm_lstm", "projection_lstm"])
def test_fallback_is_taken_and_equals_keras_rnn_of_our_cell_exactly(kind, options, reason_part):
    ours, references = make_layers(kind, return_sequences=True, return_state=True, with_keras=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    for training in (True, False):
        result = run(ours, inputs, mask, initial, training=training)
        assert ours.last_path == "cell"
        assert reason_part in ours.fallback_reason
        expected = run(references[0][1], inputs, mask, initial, training=training)
        for a, b in zip(result[0] + result[1], expected[0] + expected[1]):
            np.testing.assert_array_equal(a, b)


def test_simple_rnn_with_unsupported_activation_falls_back():
    ours, references = make_layers("simple_rnn", activation="softplus", return_sequences=True, with_keras=False)
    inputs, _ = example_inputs("simple_rnn")
    result = run(ours, inputs)
    assert ours.last_path == "cell" and "softplus" in ours.fallback_reason
    np.testing.assert_array_equal(result[0][0], run(references[0][1], inputs)[0][0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_precision_falls_back_to_the_cell_path(dtype_policy, policy):
    dtype_policy(policy)
    layer = layers.LSTM(4, return_sequences=True)
    reference = keras.layers.RNN(layers.LSTMCell(4), return_sequences=True)
    inputs = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    reference(inputs)
    layer.build((None, None, 5))
    layer.set_weights(reference.get_weights())
    output = layer(inputs)
    assert layer.last_path == "cell"
    assert "float16" in layer.fallback_reason
    np.testing.assert_array_equal(np.asarray(output), np.asarray(reference(inputs)))


def test_subclassed_cell_is_not_fused():
    class ShiftedLSTMCell(layers.LSTMCell):
        def step(self, inputs, states, recurrent_mask):
            output, new_states = super().step(inputs, states, recurrent_mask)
            return output + 1.0, new_states

    class ShiftedLSTM(layers.LSTM):
        cell_class = ShiftedLSTMCell

    layer = ShiftedLSTM(3)
    output = layer(np.zeros((2, 4, 2), "float32"))
    assert layer.last_path == "cell" and "ShiftedLSTMCell" in layer.fallback_reason
    assert np.all(np.asarray(output) >= 0.0)  # the shift was applied


def test_path_is_recorded_inside_tf_function():
    layer = layers.GRU(3)
    inputs = np.zeros((2, 4, 2), "float32")
    traced = tf.function(lambda x: layer(x, training=True))
    traced(inputs)
    assert layer.last_path == "fused"
    slow = layers.GRU(3, fused=False)
    tf.function(lambda x: slow(x))(inputs)
    assert slow.last_path == "cell" and slow.fallback_reason == "fused=False"
