"""zoo.onnx_export: recurrent layers as ONNX's LSTM and GRU operators (a Loop for the rest), checked writing."""

import importlib.util
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from zoo import onnx_export
from zoo.errors import UserError

BATCH, STEPS, FEATURES, UNITS = 3, 6, 4, 5
LENGTHS = np.array([STEPS, 2, 0], np.int32)  # a full row, a padded one, an empty one
CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}
OPERATORS = {"lstm": "LSTM", "gru": "GRU", "rnn": None}
HAVE_ONNX = all(importlib.util.find_spec(name) is not None for name in ("tf2onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs tf2onnx and onnxruntime (pip install -e '.[onnx]')")


def _randomize(weights, seed, scale=0.6):
    """Weights large enough that every output depends on every weight (initial ones give near-constant outputs)."""
    rng = np.random.default_rng(seed)
    for variable in weights:
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))


def _inputs(seed=0, batch=BATCH, steps=STEPS):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, FEATURES)).astype("float32")


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

        def serve(plain_inputs, inputs, lengths):
            # The plain layer reads its own input: tf2onnx fails to pair directions when an operator without
            # sequence lengths shares its input with a bidirectional one that has them.
            return {
                "plain": onnx_export.recurrent(self.plain, plain_inputs),
                "sequences": onnx_export.recurrent(self.sequences, inputs, lengths),
                "last": onnx_export.recurrent(self.last, inputs, lengths),
            }

        signature = [
            tf.TensorSpec([None, None, FEATURES], tf.float32, name="plain_inputs"),
            tf.TensorSpec([None, None, FEATURES], tf.float32, name="inputs"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ]
        self.model = onnx_export.convert(serve, signature, weights)
        self.model_bytes = self.model.SerializeToString()
        self.expected = onnx_export.expected_operators([self.plain, self.sequences, self.last])

    def keras_outputs(self, inputs, lengths):
        mask = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
        return {
            "plain": np.asarray(self.plain(inputs)),
            "sequences": np.asarray(self.sequences(inputs, mask=mask)),
            "last": np.asarray(self.last(inputs, mask=mask)),
        }, mask


@pytest.fixture(scope="module", params=sorted(CELLS))
def converted(request):
    if not HAVE_ONNX:
        pytest.skip("needs tf2onnx and onnxruntime (pip install -e '.[onnx]')")
    return request.param, Converted(request.param)


def test_recurrent_layers_become_onnx_recurrent_operators(converted):
    cell, result = converted
    operator = OPERATORS[cell]
    counts = onnx_export.operators(result.model)
    if operator is None:
        assert result.expected == [] and onnx_export.recurrent_operators(result.model) == []
        assert counts["Loop"] == 5  # one per direction
        return
    # One operator per layer, each Bidirectional merged into one bidirectional operator; no loop left.
    assert result.expected == [(operator, "bidirectional"), (operator, "bidirectional"), (operator, "forward")]
    assert onnx_export.recurrent_operators(result.model) == result.expected
    assert "Loop" not in counts
    onnx_export.check_operators(result.model, result.expected)
    if operator == "GRU":  # our GRU's reset_after=True is ONNX's linear_before_reset=1
        (gru, *_) = [node for node in result.model.graph.node if node.op_type == "GRU"]
        assert {a.name: a.i for a in gru.attribute}["linear_before_reset"] == 1


@pytest.mark.parametrize("batch, steps", [(BATCH, STEPS), (1, 3)])
def test_outputs_equal_keras_at_every_valid_step_for_any_batch_and_length(converted, batch, steps):
    _, result = converted
    inputs = _inputs(steps, BATCH, steps)
    lengths = np.minimum(LENGTHS, steps)
    wanted, mask = result.keras_outputs(inputs, lengths)
    rows = slice(0, BATCH) if batch == BATCH else slice(1, 2)  # with batch 1, the padded row alone
    got = onnx_export.run(
        result.model_bytes, {"plain_inputs": inputs[rows], "inputs": inputs[rows], "lengths": lengths[rows]}
    )
    np.testing.assert_allclose(got["plain"], wanted["plain"][rows], atol=1e-5)
    np.testing.assert_allclose(got["sequences"][mask[rows]], wanted["sequences"][rows][mask[rows]], atol=1e-5)
    np.testing.assert_allclose(got["last"], wanted["last"][rows], atol=1e-5)
    assert np.abs(wanted["plain"]).max() > 0.3  # outputs far from constant: a wrong weight would show


@needs_onnx
def test_forms_without_an_onnx_operator_run_as_a_loop_and_agree():
    gru = layers.GRU(UNITS, reset_after=False, return_sequences=True)  # ONNX's linear_before_reset=0 has no rewriter
    lstm = layers.LSTM(UNITS, activation="relu", return_sequences=True)
    for seed, layer in enumerate((gru, lstm)):
        layer.build((BATCH, STEPS, FEATURES))
        _randomize(layer.weights, seed, scale=0.4)
    assert onnx_export.expected_operators([gru, lstm]) == []
    model = onnx_export.convert(
        lambda inputs: {"gru": onnx_export.recurrent(gru, inputs), "lstm": onnx_export.recurrent(lstm, inputs)},
        [tf.TensorSpec([None, None, FEATURES], tf.float32, name="inputs")],
        [*gru.weights, *lstm.weights],
    )
    assert onnx_export.recurrent_operators(model) == [] and onnx_export.operators(model)["Loop"] == 2
    inputs = _inputs(3)
    got = onnx_export.run(model.SerializeToString(), {"inputs": inputs})
    np.testing.assert_allclose(got["gru"], gru(inputs), atol=1e-5)
    np.testing.assert_allclose(got["lstm"], lstm(inputs), atol=1e-5)


@needs_onnx
def test_keras_layers_and_variant_layers_export_and_agree():
    # `implementation=keras` builds Keras's layers: the same operators as ours. A variant runs as a Loop.
    lstm = keras.layers.LSTM(UNITS, return_sequences=True)
    gru = keras.layers.GRU(UNITS)
    variant = layers.ProjectionLSTM(UNITS, proj_units=3, use_peepholes=True, return_sequences=True)
    for seed, layer in enumerate((lstm, gru, variant)):
        layer.build((BATCH, STEPS, FEATURES))
        _randomize(layer.weights, seed, scale=0.4)
    assert onnx_export.expected_operators([lstm, gru, variant]) == [("GRU", "forward"), ("LSTM", "forward")]
    model = onnx_export.convert(
        lambda a, b, c: {
            "lstm": onnx_export.recurrent(lstm, a),
            "gru": onnx_export.recurrent(gru, b),
            "variant": onnx_export.recurrent(variant, c),
        },
        [tf.TensorSpec([None, None, FEATURES], tf.float32, name=name) for name in "abc"],
        [*lstm.weights, *gru.weights, *variant.weights],
    )
    assert onnx_export.operators(model)["Loop"] == 1
    inputs = _inputs(5)
    got = onnx_export.run(model.SerializeToString(), {"a": inputs, "b": inputs, "c": inputs})
    for name, layer in (("lstm", lstm), ("gru", gru), ("variant", variant)):
        np.testing.assert_allclose(got[name], layer(inputs), atol=1e-5, err_msg=name)


def _lstm_export(path, expected=None, **overrides):
    layer = layers.LSTM(UNITS, return_sequences=True)
    layer.build((1, STEPS, FEATURES))
    _randomize(layer.weights, 7)
    inputs = _inputs(4)
    arguments = {
        "metadata": {"what": "an LSTM"},
        "batches": [{"inputs": inputs}],
        "expected": [{"outputs": np.asarray(layer(inputs)) if expected is None else expected}],
        "expected_recurrent": onnx_export.expected_operators([layer]),
        **overrides,
    }
    return onnx_export.export(
        path,
        lambda inputs: {"outputs": onnx_export.recurrent(layer, inputs)},
        [tf.TensorSpec([None, None, FEATURES], tf.float32, name="inputs")],
        layer.weights,
        **arguments,
    )


@needs_onnx
def test_export_writes_a_checked_file_and_keeps_the_previous_one_on_failure(tmp_path):
    path = str(tmp_path / "lstm.onnx")
    report = _lstm_export(path)
    assert report["path"] == path and report["recurrent_operators"] == [("LSTM", "forward")]
    assert report["max_difference"] <= 1e-5 and report["bytes"] == os.path.getsize(path)
    assert onnx_export.metadata(path) == {"what": "an LSTM"}
    with open(path, "rb") as stream:
        written = stream.read()
    # Outputs that disagree: the check fails and the earlier file stays.
    with pytest.raises(RuntimeError, match="differs from the Keras model"):
        _lstm_export(path, expected=np.zeros((BATCH, STEPS, UNITS), np.float32))
    # A NaN is a failure too (a comparison with NaN is False both ways).
    with pytest.raises(RuntimeError, match="differs from the Keras model by inf"):
        _lstm_export(path, expected=np.full((BATCH, STEPS, UNITS), np.nan, np.float32))
    # Operators other than those expected: refused before anything is written.
    with pytest.raises(RuntimeError, match="recurrent operators"):
        _lstm_export(path, expected_recurrent=[("LSTM", "bidirectional")])
    with open(path, "rb") as stream:
        assert stream.read() == written
    assert sorted(os.listdir(tmp_path)) == ["lstm.onnx"]  # no temporaries left


@needs_onnx
def test_export_refuses_a_directory_or_an_empty_path(tmp_path):
    with pytest.raises(IsADirectoryError, match="directory; expected a .onnx file"):
        _lstm_export(str(tmp_path))
    with pytest.raises(UserError, match="empty value"):
        _lstm_export("")


@needs_onnx
def test_captured_tensors_are_refused_not_made_inputs():
    outside = tf.constant([2.0])  # an eager tensor the function captures: tf2onnx would make it an input
    with pytest.raises(RuntimeError, match="takes the inputs"):
        onnx_export.convert(lambda x: {"y": x * outside}, [tf.TensorSpec([None, 1], tf.float32, name="x")], [])


def test_missing_packages_are_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # `import tf2onnx` now raises ImportError
    with pytest.raises(UserError, match=r"tf2onnx and onnxruntime.*pip install -e '\.\[onnx\]'") as raised:
        onnx_export.convert(lambda x: {"y": x}, [tf.TensorSpec([None, 1], tf.float32, name="x")], [])
    assert "\n" not in str(raised.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match="onnxruntime"):
        onnx_export.session(b"")


@needs_onnx
def test_our_layer_as_it_is_becomes_a_loop_which_is_why_recurrent_rebuilds_it():
    """tf2onnx's rewriters match Keras's own LSTM but not our fused path (nor our cell path's AddV2 bias).

    With graph loops (`jit_compile=False`) our layer becomes a `Loop`; by
    default a traced call compiles its loops with XLA, which tf2onnx cannot
    convert at all.
    """
    signature = [tf.TensorSpec([None, STEPS, FEATURES], tf.float32, name="inputs")]
    inputs = _inputs(5)
    compiled = layers.LSTM(UNITS, return_sequences=True)
    compiled.build((None, STEPS, FEATURES))
    with pytest.raises(Exception, match="PartitionedCall"):
        onnx_export.convert(lambda inputs: {"outputs": compiled(inputs)}, signature, compiled.weights)
    ours = layers.LSTM(UNITS, return_sequences=True, jit_compile=False)
    theirs = keras.layers.LSTM(UNITS, return_sequences=True)
    for layer, operators in ((ours, []), (theirs, [("LSTM", "forward")])):
        layer.build((None, STEPS, FEATURES))
        _randomize(layer.weights, 8)
        model = onnx_export.convert(lambda inputs, layer=layer: {"outputs": layer(inputs)}, signature, layer.weights)
        assert onnx_export.recurrent_operators(model) == operators
        assert ("Loop" in onnx_export.operators(model)) == (not operators)
        got = onnx_export.run(model.SerializeToString(), {"inputs": inputs})["outputs"]
        np.testing.assert_allclose(got, layer(inputs), atol=1e-5)  # a Loop is slower, not wrong


@needs_onnx
@pytest.mark.parametrize(
    "overrides, operators, loops",
    [
        ({"cell": "gru", "bidirectional": False, "num_layers": 2, "pooling": "last"}, [("GRU", "forward")] * 2, 0),
        ({"cell": "rnn", "pooling": "mean"}, [], 2),
    ],
)
def test_sentiment_variants_export_and_agree(tmp_path, overrides, operators, loops):
    from zoo.sentiment import SentimentConfig, build_model, export_text_classifier_onnx

    texts = ["a splendid film", "a dull story and a flat cast", "", "splendid " * 20, "fine moving"]
    config = SentimentConfig(units=4, embedding_dim=6, vocabulary_size=30, max_length=12, **overrides)
    model = build_model(config, training_texts=texts)
    _randomize([v for v in model.weights if v.dtype == "float32" and "vectorizer" not in v.path], 9)
    # The export checks itself on these texts (and texts of 1 to 17 vocabulary words) to 1e-5.
    report = export_text_classifier_onnx(model, ["neg", "pos"], str(tmp_path / "onnx"), check_texts=texts)
    assert report["recurrent_operators"] == operators and report["operators"].get("Loop", 0) == loops
    assert report["max_difference"] <= 1e-5
