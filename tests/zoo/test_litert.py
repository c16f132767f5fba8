"""zoo.litert: recurrent layers as LiteRT builtin ops (the fused LSTM kernel, builtin WHILE loops), checked writing."""

import collections
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from zoo import litert

BATCH, STEPS, FEATURES, UNITS = 3, 6, 4, 5
LENGTHS = np.array([STEPS, 2, 0], np.int32)  # a full row, a padded one, an empty one
# Ours, and Keras's built-in LSTM (a recipe's `implementation=keras`; Keras's other cells take the loops'
# path, whose steps `test_step_signatures_step_keras_cells_as_their_layers_run` checks).
CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN, "keras_lstm": keras.layers.LSTM}


def _randomize(weights, seed, scale=0.6):
    """Weights large enough that every output depends on every weight (initial ones give near-constant outputs)."""
    rng = np.random.default_rng(seed)
    for variable in weights:
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, (BATCH, STEPS, FEATURES)).astype("float32")


class Converted:
    """One cell's layers in three uses, converted once: plain, and bidirectional over right-padded rows."""

    def __init__(self, cell):
        layer_class = CELLS[cell]
        self.plain = layer_class(UNITS, return_sequences=True)
        self.sequences = keras.layers.Bidirectional(layer_class(UNITS, return_sequences=True))
        self.last = keras.layers.Bidirectional(layer_class(UNITS))
        weights = []
        for seed, layer in enumerate((self.plain, self.sequences, self.last)):
            layer.build((BATCH, STEPS, FEATURES))
            _randomize(layer.weights, seed)
            weights += layer.weights

        def serve(inputs, lengths):
            return {
                "plain": litert.recurrent(self.plain, inputs),
                "sequences": litert.recurrent(self.sequences, inputs, lengths),
                "last": litert.recurrent(self.last, inputs, lengths),
            }

        signature = [
            tf.TensorSpec([BATCH, None, FEATURES], tf.float32, name="inputs"),
            tf.TensorSpec([BATCH], tf.int32, name="lengths"),
        ]
        converted, self.fused_lstms = litert.convert(serve, signature, weights)
        self.model = litert.finish(converted, {"cell": cell})
        self.operators = litert.operators(self.model)

    def keras_outputs(self, inputs):
        mask = np.arange(inputs.shape[1])[None, :] < LENGTHS[:, None]
        return {
            "plain": np.asarray(self.plain(inputs)),
            "sequences": np.asarray(self.sequences(inputs, mask=mask)),
            "last": np.asarray(self.last(inputs, mask=mask)),
        }, mask


@pytest.fixture(scope="module", params=sorted(CELLS))
def converted(request):
    return request.param, Converted(request.param)


def test_operators_are_builtin_and_lstm_is_fused(converted):
    cell, result = converted
    assert not [name for name in result.operators if name.startswith("CUSTOM:") or "Flex" in name]
    assert not [name for name in result.operators if "Cudnn" in name or "VARIABLE" in name]
    if cell.endswith("lstm"):
        # One fused op per direction: 1 + 2 + 2, and no loop left.
        assert result.fused_lstms == 5 and result.operators[litert.FUSED_LSTM] == 5
        assert "WHILE" not in result.operators
        assert litert.cell_clips(result.model) == [0.0] * 5
    else:
        assert result.fused_lstms == 0 and litert.FUSED_LSTM not in result.operators
        assert result.operators["WHILE"] == 5


@pytest.mark.parametrize("steps", [STEPS, 3])
def test_outputs_equal_keras_at_every_valid_step(converted, steps):
    _, result = converted
    inputs = _inputs(steps)[:, :steps]
    lengths = np.minimum(LENGTHS, steps)
    wanted, mask = result.keras_outputs(inputs)
    got = litert.run(result.model, {"inputs": inputs, "lengths": lengths})
    np.testing.assert_allclose(got["plain"], wanted["plain"], atol=1e-5)
    np.testing.assert_allclose(got["sequences"][mask], wanted["sequences"][mask], atol=1e-5)
    np.testing.assert_allclose(got["last"], wanted["last"], atol=1e-5)
    assert np.abs(wanted["plain"]).max() > 0.3  # outputs far from constant: a wrong weight would show


def test_fused_lstm_keeps_its_states_between_calls_unless_reset(converted):
    cell, result = converted
    inputs = _inputs(1)
    interpreter = litert.interpreter(result.model)
    runner = interpreter.get_signature_runner(litert.SIGNATURE)
    first = runner(inputs=inputs, lengths=LENGTHS)["plain"]
    second = runner(inputs=inputs, lengths=LENGTHS)["plain"]
    if cell.endswith("lstm"):
        # The fused op's states are variable tensors: the second call starts from the first call's final states.
        assert np.abs(second - first).max() > 1e-2
    else:
        np.testing.assert_allclose(second, first, atol=1e-6)  # the WHILE loops start from zeros every call
    interpreter.reset_all_variables()
    np.testing.assert_allclose(runner(inputs=inputs, lengths=LENGTHS)["plain"], first, atol=1e-6)
    # run_each resets before every call, so repeated inputs give repeated outputs.
    repeated = [out["plain"] for out in litert.run_each(result.model, [{"inputs": inputs, "lengths": LENGTHS}] * 2)]
    np.testing.assert_allclose(repeated[1], repeated[0], atol=1e-6)


def _counting_lstm():
    """An LSTM whose cell state climbs past 10 and comes back (inputs +1 for 14 steps, then -1 for 10)."""
    layer = layers.LSTM(1, return_sequences=True)
    layer.build((1, None, 1))
    # Gates i, f, o saturated open; the candidate follows the input's sign: c counts up, then down.
    layer.set_weights([np.array([[0.0, 0.0, 20.0, 0.0]]), np.zeros((1, 4)), np.array([20.0, 20.0, 0.0, 20.0])])
    inputs = np.concatenate([np.ones(14), -np.ones(10)]).astype("float32")[None, :, None]
    return layer, inputs


def test_cell_clip_removed_so_long_counts_survive(tmp_path):
    layer, inputs = _counting_lstm()
    wanted = np.asarray(layer(inputs))
    report = litert.export(
        str(tmp_path / "count.tflite"),
        lambda inputs: {"outputs": litert.recurrent(layer, inputs)},
        [tf.TensorSpec([1, None, 1], tf.float32, name="inputs")],
        layer.weights,
        metadata={"what": "counter"},
        batches=[{"inputs": inputs}],
        expected=[{"outputs": wanted}],
    )
    assert report["max_difference"] <= 1e-5
    # Keras's cell state reaches 14 and is back at 4 at the end (h = tanh(4)); clipped at 10, it would be at 0.
    assert wanted[0, -1, 0] == pytest.approx(np.tanh(4.0), abs=1e-4)
    assert report["max_difference_with_converter_cell_clip"] > 0.9
    with open(report["path"], "rb") as stream:
        model = stream.read()
    assert litert.cell_clips(model) == [0.0]
    assert litert.metadata(model) == {"what": "counter"}


def test_failed_check_keeps_the_previous_file(tmp_path):
    layer, inputs = _counting_lstm()
    wanted = np.asarray(layer(inputs))
    path = str(tmp_path / "model.tflite")
    arguments = (
        lambda inputs: {"outputs": litert.recurrent(layer, inputs)},
        [tf.TensorSpec([1, None, 1], tf.float32, name="inputs")],
        layer.weights,
    )
    litert.export(
        path, *arguments, metadata={"version": 1}, batches=[{"inputs": inputs}], expected=[{"outputs": wanted}]
    )
    with pytest.raises(RuntimeError, match="differs from the Keras model"):
        litert.export(
            path,
            *arguments,
            metadata={"version": 2},
            batches=[{"inputs": inputs}],
            expected=[{"outputs": wanted + 0.1}],
        )
    with open(path, "rb") as stream:
        assert litert.metadata(stream.read()) == {"version": 1}
    assert os.listdir(tmp_path) == ["model.tflite"]  # no temporary left behind
    with pytest.raises(IsADirectoryError, match="directory"):
        litert.export(str(tmp_path), *arguments, metadata={}, batches=[], expected=[])


def test_check_operators_refuses_flex_custom_and_unfused():
    litert.check_operators(collections.Counter({litert.FUSED_LSTM: 2, "GATHER": 1}), 2)
    with pytest.raises(RuntimeError, match="Flex"):
        litert.check_operators(collections.Counter({"CUSTOM:FlexTensorListReserve": 1}), 0)
    with pytest.raises(RuntimeError, match="holds 1 UNIDIRECTIONAL_SEQUENCE_LSTM ops; expected 2"):
        litert.check_operators(collections.Counter({litert.FUSED_LSTM: 1, "WHILE": 1}), 2)
    with pytest.raises(RuntimeError, match="reads variables"):
        litert.check_operators(collections.Counter({"READ_VARIABLE": 1}), 0)


def test_in_batches_pads_the_last_batch():
    batches, count = litert.in_batches(np.arange(5)[:, None], 2)
    assert count == 5 and [batch[:, 0].tolist() for batch in batches] == [[0, 1], [2, 3], [4, 4]]


@pytest.mark.parametrize("layer_class", [keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU])
def test_step_signatures_step_keras_cells_as_their_layers_run(layer_class):
    from zoo import litert_step

    layer = layer_class(UNITS, return_sequences=True)
    layer.build((BATCH, STEPS, FEATURES))
    _randomize(layer.weights, 3)
    inputs = _inputs(3)
    states = list(litert_step.zero_states([layer], BATCH).values())
    outputs = []
    for step in range(STEPS):
        output, named = litert_step.run_layers([layer], inputs[:, step], states)
        states = list(named.values())
        outputs.append(np.asarray(output))
    expected_names = ["h0", "c0"] if layer_class is keras.layers.LSTM else ["h0"]
    assert list(named) == expected_names
    np.testing.assert_allclose(np.stack(outputs, axis=1), np.asarray(layer(inputs)), atol=1e-5)
