"""Cells survive get_config, `.keras` files (safe mode) and SavedModel export."""

import json

import keras
import numpy as np
import pytest

import layers
from tests.support import run_in_fresh_python, to_numpy

pytestmark = pytest.mark.backends

CELL_CONFIGS = {
    "simple_rnn": (layers.SimpleRNNCell, dict(activation="relu", use_bias=False, dropout=0.25, seed=3)),
    "lstm": (
        layers.LSTMCell,
        dict(
            activation="relu",
            recurrent_activation="hard_sigmoid",
            unit_forget_bias=False,
            kernel_regularizer="l2",
            recurrent_constraint="non_neg",
            bias_initializer="ones",
            recurrent_dropout=0.1,
            seed=4,
        ),
    ),
    "gru": (layers.GRUCell, dict(reset_after=True, kernel_initializer="he_normal", bias_regularizer="l1")),
    "gru_reset_before": (layers.GRUCell, dict(reset_after=False, recurrent_activation="hard_sigmoid")),
}


@pytest.mark.parametrize("kind", list(CELL_CONFIGS))
def test_get_config_round_trip(kind):
    cell_class, arguments = CELL_CONFIGS[kind]
    cell = cell_class(5, name="my_cell", **arguments)
    config = cell.get_config()
    for key, value in arguments.items():
        if isinstance(value, (int, float, bool)):
            assert config[key] == value, key
    assert config["units"] == 5
    clone = cell_class.from_config(config)
    assert clone.get_config() == config
    # through Keras's registry, as a saved model would do it
    serialized = keras.saving.serialize_keras_object(cell)
    assert serialized["registered_name"] == f"rnnzoo>{cell_class.__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is cell_class and restored.get_config() == config


@pytest.mark.parametrize("kind", list(CELL_CONFIGS))
def test_rebuilt_cell_computes_the_same(kind):
    cell_class, arguments = CELL_CONFIGS[kind]
    rnn = keras.layers.RNN(cell_class(4, **arguments), return_sequences=True, return_state=True)
    sequences = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    expected = to_numpy(rnn(sequences))
    clone = keras.layers.RNN.from_config(json.loads(json.dumps(rnn.get_config())))
    clone.build(sequences.shape)
    clone.set_weights(rnn.get_weights())
    assert type(clone.cell) is cell_class
    for a, b in zip(to_numpy(clone(sequences)), expected):
        np.testing.assert_array_equal(a, b)


def all_cells_model():
    """One model holding every cell, Bidirectional, stacked cells and masking."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.RNN(layers.SimpleRNNCell(4, activation="relu"), return_sequences=True)(masked)
    x = keras.layers.RNN(layers.LSTMCell(4, dropout=0.1, seed=1), return_sequences=True)(x)
    x = keras.layers.Bidirectional(keras.layers.RNN(layers.GRUCell(4, reset_after=False), return_sequences=True))(x)
    x = keras.layers.RNN([layers.GRUCell(3), layers.LSTMCell(2)], go_backwards=True)(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def sample_inputs():
    sequences = np.random.default_rng(2).normal(size=(3, 5, 3)).astype("float32")
    sequences[1, 3:] = 0.0  # right padding, masked by Masking
    return sequences


def test_keras_file_loads_in_safe_mode_with_identical_outputs(tmp_path):
    model = all_cells_model()
    sequences = sample_inputs()
    expected = to_numpy(model(sequences))
    path = tmp_path / "cells.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_numpy(loaded(sequences)), expected)
    kinds = {type(layer.cell).__name__ for layer in loaded.layers if hasattr(layer, "cell")}
    assert {"SimpleRNNCell", "LSTMCell", "StackedRNNCells"} <= kinds


@pytest.mark.tensorflow_only  # model.export writes a TensorFlow SavedModel
def test_saved_model_runs_in_a_fresh_python_without_this_project(tmp_path):
    model = all_cells_model()
    sequences = sample_inputs()
    expected = np.asarray(model(sequences))
    export_path = tmp_path / "exported"
    model.export(str(export_path), verbose=False)
    np.save(tmp_path / "inputs.npy", sequences)
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = run_in_fresh_python(
        f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(export_path)!r})
        outputs = loaded.serve(tf.constant(np.load({str(tmp_path / "inputs.npy")!r})))
        np.save({str(tmp_path / "outputs.npy")!r}, outputs.numpy())
        print(json.dumps({{"project_imported": sorted(
            name for name in ("layers", "zoo", "recipes") if name in sys.modules)}}))
        """,
        cwd=str(work),
    )
    assert result == {"project_imported": []}
    np.testing.assert_allclose(np.load(tmp_path / "outputs.npy"), expected, atol=1e-6)
