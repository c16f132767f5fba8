"""The sequence layers inside models: fit, dynamic shapes, Bidirectional,
stateful use, saving and export, each checked against Keras's own layers."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from tests.layers.fused.support import KINDS, make_layers

FEATURES = 4


def functional_pair(kind, units=5, **options):
    """Two models Input(None, None, FEATURES) -> layer -> Dense(2): ours and Keras's, same weights."""
    ours_layer, references = make_layers(kind, units=units, **options)
    keras_layer = dict(references)["keras_builtin"]
    models = []
    for layer in (ours_layer, keras_layer):
        inputs = keras.Input((None, FEATURES))
        outputs = keras.layers.Dense(2, kernel_initializer="ones")(layer(inputs))
        models.append(keras.Model(inputs, outputs))
    return models[0], models[1], ours_layer


@pytest.mark.parametrize("kind", list(KINDS))
def test_dynamic_batch_and_length_in_one_traced_function(kind):
    ours, reference, layer = functional_pair(kind, return_sequences=True)
    signature = [tf.TensorSpec((None, None, FEATURES), tf.float32)]
    functions = [
        tf.function(lambda x, model=model, training=training: model(x, training=training), input_signature=signature)
        for model in (ours, reference)
        for training in (False, True)
    ]
    rng = np.random.default_rng(0)
    for batch, length in ((2, 3), (5, 7), (1, 1)):
        inputs = rng.normal(size=(batch, length, FEATURES)).astype("float32")
        mine_inference, mine_training, theirs_inference, theirs_training = (np.asarray(f(inputs)) for f in functions)
        assert mine_inference.shape == (batch, length, 2)
        np.testing.assert_allclose(mine_inference, theirs_inference, atol=1e-5)
        np.testing.assert_allclose(mine_training, theirs_training, atol=1e-5)
    assert layer.last_path == "fused"
    # One trace per function served every shape.
    assert all(len(f._list_all_concrete_functions()) == 1 for f in functions)


@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before"])
def test_fit_takes_the_same_steps_as_keras(kind):
    ours, reference, layer = functional_pair(kind, return_sequences=False)
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(16, 6, FEATURES)).astype("float32")
    targets = rng.normal(size=(16, 2)).astype("float32")
    histories = []
    for model in (ours, reference):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        histories.append(model.fit(inputs, targets, batch_size=8, epochs=2, shuffle=False, verbose=0))
    assert layer.last_path == "fused"
    np.testing.assert_allclose(histories[0].history["loss"], histories[1].history["loss"], rtol=1e-5)
    assert histories[0].history["loss"][-1] < histories[0].history["loss"][0]
    for mine, theirs in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_with_a_mask_equals_keras(kind):
    ours_class, keras_class, _, fixed = KINDS[kind]
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, 9, size=(3, 6))
    tokens[1, 4:] = 0  # right padding
    tokens[2, :] = 0  # nothing at all
    built = []
    for layer_class in (ours_class, keras_class):
        inputs = keras.Input((None,), dtype="int32")
        embedded = keras.layers.Embedding(9, FEATURES, mask_zero=True)(inputs)
        outputs = keras.layers.Bidirectional(layer_class(5, return_sequences=True, **fixed))(embedded)
        built.append(keras.Model(inputs, outputs))
    built[1].set_weights(built[0].get_weights())
    results = []
    for model in built:
        with tf.GradientTape() as tape:
            output = model(tokens, training=True)
            loss = tf.reduce_sum(output * np.linspace(-1, 1, output.shape[-1], dtype="float32"))
        results.append((np.asarray(output), tape.gradient(loss, model.trainable_weights)))
    bidirectional = built[0].layers[-1]
    assert bidirectional.forward_layer.last_path == "fused"
    assert bidirectional.backward_layer.last_path == "fused"
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    assert np.all(results[0][0][2] == 0.0)  # zero output for masked steps
    for mine, theirs in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(
            tf.convert_to_tensor(mine).numpy(), tf.convert_to_tensor(theirs).numpy(), atol=1e-5, rtol=1e-4
        )


@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before"])
def test_stateful_layer_carries_state_between_batches_like_keras(kind):
    ours, references = make_layers(kind, return_sequences=True, stateful=True, batch=3)
    keras_layer = dict(references)["keras_builtin"]
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(3, 4, FEATURES)).astype("float32") for _ in range(3)]
    for layer in (ours, keras_layer):
        layer.reset_state()
    outputs = []
    for index, batch in enumerate(batches):
        if index == 2:
            ours.reset_state()
            keras_layer.reset_state()
        mine, theirs = ours(batch, training=True), keras_layer(batch, training=True)
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=1e-5)
        outputs.append(np.asarray(mine))
        assert ours.last_path == "fused"
    # The second batch started from the first batch's final state, the third from zeros.
    fresh, _ = make_layers(kind, return_sequences=True, with_keras=False)
    np.testing.assert_allclose(outputs[2], np.asarray(fresh(batches[2])), atol=1e-6)
    assert np.max(np.abs(outputs[1] - np.asarray(fresh(batches[1])))) > 1e-3


def _model_with_every_option():
    inputs = keras.Input((None, FEATURES))
    x = layers.LSTM(6, return_sequences=True, bptt_steps=3, dropout=0.1, seed=4)(inputs)
    x = layers.GRU(5, return_sequences=True, reset_after=False, go_backwards=True)(x)
    x = keras.layers.Bidirectional(layers.GRU(3, recurrent_activation="hard_sigmoid"))(x)
    x = layers.SimpleRNN(4, activation="relu")(keras.layers.RepeatVector(2)(x))
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    model = _model_with_every_option()
    inputs = np.random.default_rng(4).normal(size=(3, 5, FEATURES)).astype("float32")
    expected = model.predict(inputs, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), expected)
    first = loaded.layers[1]
    assert isinstance(first, layers.LSTM)
    assert (first.bptt_steps, first.dropout, first.fused) == (3, 0.1, True)
    assert loaded.layers[2].go_backwards and not loaded.layers[2].reset_after


@pytest.mark.parametrize(
    "jit_compile, columns",
    [
        ("auto", False),
        pytest.param(True, False, marks=pytest.mark.slow),
        pytest.param(True, True, marks=pytest.mark.slow),
    ],
)
def test_export_serves_in_a_fresh_process_without_this_project(tmp_path, jit_compile, columns, monkeypatch):
    # The export signature has unknown batch and time dimensions, so "auto"
    # saves graph loops and True saves loops compiled by XLA when served;
    # `columns` lowers the width from which compiled inference keeps its
    # states as columns, so that these tiny layers save that form.
    if columns:
        from layers.fused import policy

        monkeypatch.setattr(policy, "COLUMN_MIN_WIDTH", 1)
    inputs = keras.Input((None, FEATURES))
    hidden = layers.LSTM(6, return_sequences=True, bptt_steps=2, jit_compile=jit_compile)(inputs)
    hidden = layers.SimpleRNN(3, return_sequences=True, go_backwards=True, jit_compile=jit_compile)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(layers.GRU(5, jit_compile=jit_compile)(hidden)))
    inputs = np.random.default_rng(5).normal(size=(3, 5, FEATURES)).astype("float32")
    expected = model.predict(inputs, verbose=0)
    assert model.layers[1].last_path == "fused"
    export_dir = tmp_path / "export"
    model.export(str(export_dir), verbose=False)
    assert (b"_XlaMustCompile" in (export_dir / "saved_model.pb").read_bytes()) == (jit_compile is True)
    loaded = tf.saved_model.load(str(export_dir))
    served_here = loaded.serve(tf.constant(inputs)).numpy()
    np.save(tmp_path / "inputs.npy", inputs)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        served = tf.saved_model.load({str(export_dir)!r})
        output = served.serve(tf.constant(np.load({str(tmp_path / "inputs.npy")!r})))
        assert not any(name == "layers" or name.startswith("layers.") for name in sys.modules)
        np.save({str(tmp_path / "served.npy")!r}, output.numpy())
        """
    )
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    # The fresh process computes exactly what the saved graph computes here,
    # and that equals `predict` up to float rounding (graph optimisations
    # may reorder a sum).
    np.testing.assert_array_equal(np.load(tmp_path / "served.npy"), served_here)
    np.testing.assert_allclose(served_here, expected, rtol=0, atol=1e-6)


def test_fit_under_xla_matches_fit_without_it():
    results = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(6)
        inputs = keras.Input((None, FEATURES))
        outputs = keras.layers.Dense(1)(layers.GRU(5)(layers.LSTM(4, return_sequences=True)(inputs)))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
        rng = np.random.default_rng(6)
        data = rng.normal(size=(8, 5, FEATURES)).astype("float32")
        history = model.fit(data, rng.normal(size=(8, 1)), epochs=2, verbose=0, shuffle=False)
        results.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
