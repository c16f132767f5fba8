"""Our classes take every argument Keras's do, legacy ones included, with Keras's meaning."""

import keras
import numpy as np
import pytest

import layers

pytestmark = pytest.mark.backends

# Non-default values of every argument the cell and the layer share with Keras's.
NON_DEFAULT = dict(
    activation="relu",
    use_bias=True,
    kernel_initializer="he_normal",
    recurrent_initializer="glorot_normal",
    bias_initializer="ones",
    kernel_regularizer="l2",
    recurrent_regularizer="l1",
    bias_regularizer="l1",
    kernel_constraint="non_neg",
    recurrent_constraint="unit_norm",
    bias_constraint="max_norm",
    dropout=0.1,
    recurrent_dropout=0.2,
    seed=3,
)
GATED = dict(recurrent_activation="hard_sigmoid")
EXTRA = {
    "SimpleRNN": {},
    "LSTM": dict(GATED, unit_forget_bias=False),
    "GRU": dict(GATED, reset_after=False),
}
LAYER_ONLY = dict(return_sequences=True, return_state=True, go_backwards=True, unroll=True, activity_regularizer="l2")


def keras_and_ours(name, suffix):
    arguments = dict(NON_DEFAULT, **EXTRA[name], **(LAYER_ONLY if not suffix else {}))
    theirs = getattr(keras.layers, name + suffix)(4, name="from_keras", **arguments)
    ours = getattr(layers, name + suffix).from_config(theirs.get_config())
    return theirs, ours


def _comparable(config):
    return {key: value for key, value in config.items() if key not in ("dtype",)}


@pytest.mark.parametrize("suffix", ["Cell", ""])
@pytest.mark.parametrize("name", list(EXTRA))
def test_keras_config_builds_an_equivalent_layer(name, suffix):
    theirs, ours = keras_and_ours(name, suffix)
    their_config, our_config = _comparable(theirs.get_config()), _comparable(ours.get_config())
    for key, value in their_config.items():
        if key == "zero_output_for_mask":  # set by Bidirectional, not an argument of ours
            continue
        assert our_config.get(key) == value, key  # a base layer leaves out a `None` activity_regularizer
    assert type(ours) is getattr(layers, name + suffix)
    # The same numbers, with the weights copied (inference: dropout off).
    sequences = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    their_network = keras.layers.RNN(theirs, return_sequences=True) if suffix else theirs
    our_network = keras.layers.RNN(ours, return_sequences=True) if suffix else ours
    for network in (their_network, our_network):
        network.build(sequences.shape)
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.0, 0.5, size=tuple(w.shape)).astype("float32") for w in their_network.trainable_weights]
    for network in (their_network, our_network):
        for variable, value in zip(network.trainable_weights, weights):
            variable.assign(value)
    their_outputs = keras.tree.flatten(their_network(sequences))
    our_outputs = keras.tree.flatten(our_network(sequences))
    assert len(our_outputs) == len(their_outputs)
    for a, b in zip(our_outputs, their_outputs):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5, rtol=0)
    assert float(np.max(np.abs(keras.ops.convert_to_numpy(their_outputs[0])))) > 1e-2


@pytest.mark.parametrize(
    "layer_class, arguments",
    [
        (layers.LSTM, dict(implementation=2)),
        (layers.LSTM, dict(implementation=1)),
        (layers.GRU, dict(implementation=0)),
        (layers.LSTMCell, dict(implementation=1)),
        (layers.GRUCell, dict(implementation=2)),
    ],
)
def test_implementation_is_accepted_and_changes_nothing(layer_class, arguments):
    # Keras's LSTM and GRU accept `implementation` (configs saved by older
    # Keras carry it); here every mode computes the same numbers.
    sequences = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")

    def network(**extra):
        layer = layer_class(4, **extra)
        return keras.layers.RNN(layer) if layer_class in (layers.LSTMCell, layers.GRUCell) else layer

    with_mode, without = network(**arguments), network()
    for n in (with_mode, without):
        n.build(sequences.shape)
    for a, b in zip(with_mode.trainable_weights, without.trainable_weights):
        a.assign(b)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(with_mode(sequences)), keras.ops.convert_to_numpy(without(sequences))
    )
    assert "implementation" not in with_mode.get_config()  # as Keras's configs


@pytest.mark.parametrize("layer_class", [layers.LSTM, layers.GRU])
def test_use_cudnn_is_kept_and_copied_by_bidirectional_as_for_keras(layer_class):
    layer = layer_class(4, use_cudnn=False)
    assert layer.use_cudnn is False
    assert layer_class(4).use_cudnn == "auto"
    assert "use_cudnn" not in layer.get_config()  # as Keras's: not serialized
    both_ways = keras.layers.Bidirectional(layer)
    assert both_ways.forward_layer.use_cudnn is False and both_ways.backward_layer.use_cudnn is False
    sequences = np.zeros((2, 3, 5), "float32")
    assert tuple(both_ways(sequences).shape) == (2, 8)


def test_use_cudnn_must_be_auto_true_or_false():
    with pytest.raises(ValueError, match="use_cudnn.*'maybe'"):
        layers.LSTM(4, use_cudnn="maybe")


@pytest.mark.parametrize("layer_class", [layers.LSTM, layers.GRU])
def test_use_cudnn_true_fails_at_call_as_keras_without_cudnn(layer_class):
    # Keras raises when cuDNN cannot run the layer; ours never has a cuDNN path.
    layer = layer_class(4, use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn=True"):
        layer(np.zeros((2, 3, 5), "float32"))
