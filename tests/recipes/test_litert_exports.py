"""`export --format litert` of the char_lm, forecast and sentiment recipes on tiny runs; no device-specific op in any export."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from recipes import char_lm, forecast, sentiment
from tests.recipes.test_char_lm import _sets, _words_text
from tests.recipes.test_forecast import TINY as FORECAST_TINY
from tests.recipes.test_forecast import write_series
from tests.recipes.test_sentiment import NEGATIVE, POSITIVE
from zoo import litert, registry
from zoo.char_lm import data as char_data
from zoo.char_lm.evaluate import load_run
from zoo.errors import UserError
from zoo.files import read_json
from zoo.forecast import data as forecast_data
from zoo.forecast import evaluate as forecast_evaluate
from zoo.forecast.config import ForecastConfig
from zoo.sentiment import SentimentConfig, build_model, export_text_classifier_litert
from zoo.sentiment.export import token_ids
from zoo.sentiment.model import build_ensemble


def _tflite(path):
    with open(path, "rb") as stream:
        return stream.read()


def saved_model_op_types(directory):
    """Every op type in a SavedModel's graphs and function library."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as stream:
        proto.ParseFromString(stream.read())
    types = set()
    for meta_graph in proto.meta_graphs:
        types |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            types |= {node.op for node in function.node_def}
    return types


def _device_specific(op_types):
    return sorted(name for name in op_types if name.startswith("CudnnRNN") or "Cudnn" in name)


def _assert_builtin_only(model, fused_lstms):
    counts = litert.operators(model)
    assert not [name for name in counts if name.startswith("CUSTOM:")], counts
    assert counts.get(litert.FUSED_LSTM, 0) == fused_lstms, counts
    assert not _device_specific(counts)
    return counts


@pytest.fixture(scope="module")
def char_lm_run(trained_char_lm):
    workdir = trained_char_lm
    assert char_lm.main(["export", "--workdir", workdir, "--format", "litert", "--batch-size", "2"]) == 0
    assert char_lm.main(["export", "--workdir", workdir]) == 0
    return workdir


def test_char_lm_litert_equals_keras_on_validation_text(char_lm_run, capsys):
    config, vocabulary, model = load_run(char_lm_run)
    model_bytes = _tflite(os.path.join(char_lm_run, "export.tflite"))
    _assert_builtin_only(model_bytes, fused_lstms=1)
    metadata = litert.metadata(model_bytes)
    assert metadata["characters"] == vocabulary.tokens
    reference = registry.build("char_lm/lstm", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    validation = char_data.prepare_corpus(_words_text(), config.validation_fraction, vocabulary).validation_ids
    # The whole validation text, as two rows (the export's batch size) of any length.
    steps = len(validation) // 2
    rows = np.asarray(validation[: 2 * steps], np.int32).reshape(2, steps)
    got = litert.run(model_bytes, {"character_ids": rows})["log_probs"]
    wanted = tf.nn.log_softmax(reference(rows)).numpy()
    assert got.shape == (2, steps, vocabulary.size)
    np.testing.assert_allclose(got, wanted, atol=1e-5, rtol=1e-5)


def test_export_flags_are_checked(char_lm_run, tmp_path, capsys):
    with pytest.raises(UserError, match="--batch-size"):
        char_lm.main(["export", "--workdir", char_lm_run, "--batch-size", "4"])
    with pytest.raises(UserError, match="batch_size"):
        char_lm.main(["export", "--workdir", char_lm_run, "--format", "litert", "--batch-size", "0"])
    with pytest.raises(IsADirectoryError, match="directory"):
        char_lm.main(["export", "--workdir", char_lm_run, "--format", "litert", "--path", str(tmp_path)])


@pytest.fixture(scope="module")
def forecast_run(trained_forecast):
    workdir = trained_forecast
    for name in ("lstm", "gru-autoregressive"):
        assert forecast.main(["export", "--workdir", workdir, "--model", name, "--format", "litert"]) == 0
    assert forecast.main(["export", "--workdir", workdir, "--model", "lstm"]) == 0
    return workdir


@pytest.mark.parametrize("name, fused_lstms", [("lstm", 1), ("gru-autoregressive", 0)])
def test_forecast_litert_equals_keras_on_validation_windows(forecast_run, name, fused_lstms):
    config = ForecastConfig(**{**read_json(os.path.join(forecast_run, "config.json")), "input_columns": ()})
    model_bytes = _tflite(os.path.join(forecast_run, "export", f"{name}.tflite"))
    counts = _assert_builtin_only(model_bytes, fused_lstms)
    assert ("WHILE" in counts) == (fused_lstms == 0)
    prepared = forecast_data.prepare(config)
    origins = prepared.split.origins("validation", config.window, config.horizon)
    raw = forecast_data.windows_at(prepared.series.values, origins, config.window)[:, :, 0].astype(np.float32)
    model = forecast_evaluate.load_trained(forecast_run, name)
    normalized = forecast_data.windows_at(prepared.normalized, origins, config.window)
    wanted = prepared.normalizer.denormalize_target(
        forecast_evaluate.neural_forecast(model, name, normalized, config.horizon)
    )
    got = np.concatenate([out["forecast"] for out in litert.run_each(model_bytes, [{"window": w[None]} for w in raw])])
    assert got.shape == (len(origins), config.horizon)
    np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def sentiment_run(trained_sentiment):
    workdir = trained_sentiment
    assert sentiment.main(["export", "--workdir", workdir, "--format", "litert"]) == 0
    assert sentiment.main(["export", "--workdir", workdir]) == 0
    return workdir


def _litert_probabilities(model_bytes, ids):
    batches = [{"token_ids": row[None]} for row in ids]
    return np.concatenate([out["probabilities"] for out in litert.run_each(model_bytes, batches)])


def test_sentiment_litert_equals_keras_on_the_texts(sentiment_run, tmp_path):
    model = keras.saving.load_model(os.path.join(sentiment_run, "model.keras"), safe_mode=True)
    model_bytes = _tflite(os.path.join(sentiment_run, "export.tflite"))
    _assert_builtin_only(model_bytes, fused_lstms=2)  # the BiLSTM: one fused op per direction
    metadata = litert.metadata(model_bytes)
    assert metadata["class_names"] == ["neg", "pos"] and metadata["max_length"] == SentimentConfig().max_length
    texts = [*POSITIVE, *NEGATIVE, "", "splendid " * 80]  # an empty text and one longer than max_length
    ids = token_ids(model, texts)
    assert ids.shape == (len(texts), metadata["max_length"]) and metadata["vocabulary"][ids[0, 1]] == "splendid"
    np.testing.assert_allclose(_litert_probabilities(model_bytes, ids), model(tf.constant(texts)), atol=1e-5)
    # Two epochs on tiny data leave the probabilities near 0.5; with large weights every step counts.
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.dtype == "float32" and "vectorizer" not in variable.path:
            variable.assign(rng.normal(0.0, 0.6, variable.shape).astype("float32"))
    path = str(tmp_path / "randomized.tflite")
    export_text_classifier_litert(model, ["neg", "pos"], path)
    wanted = np.asarray(model(tf.constant(texts)))
    assert np.abs(wanted[:, 1] - 0.5).max() > 0.2
    np.testing.assert_allclose(_litert_probabilities(_tflite(path), ids), wanted, atol=1e-5)


def test_sentiment_litert_refuses_what_it_cannot_express(sentiment_run, tmp_path):
    with pytest.raises(UserError, match="--baseline"):
        sentiment.main(["export", "--workdir", sentiment_run, "--format", "litert", "--baseline"])
    config = SentimentConfig(units=2, embedding_dim=2, vocabulary_size=30)
    members = [build_model(config, training_texts=POSITIVE + NEGATIVE) for _ in range(2)]
    with pytest.raises(UserError, match="ensemble"):
        export_text_classifier_litert(build_ensemble(members), ["neg", "pos"], str(tmp_path / "e.tflite"))
    assert not os.path.exists(tmp_path / "e.tflite")


def test_sentiment_variant_cell_exports_match_keras_under_the_mask(tmp_path):
    # A bidirectional layer-normalised GRU: the .tflite runs each direction as a WHILE loop over the cell's step,
    # the backward one reading each text reversed within its length.
    config = SentimentConfig(cell="layernorm_gru", units=3, embedding_dim=4, vocabulary_size=40, max_length=12)
    model = build_model(config, training_texts=POSITIVE + NEGATIVE)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.dtype == "float32" and "vectorizer" not in variable.path:
            variable.assign(rng.normal(0.0, 0.6, variable.shape).astype("float32"))
    texts = [*POSITIVE[:3], *NEGATIVE[:3], "", "splendid " * 20]
    wanted = np.asarray(model(tf.constant(texts)))
    assert np.abs(wanted[:, 1] - 0.5).max() > 0.1
    path = str(tmp_path / "gru.tflite")
    report = export_text_classifier_litert(model, ["neg", "pos"], path)
    assert report["operators"]["WHILE"] == 2 and litert.FUSED_LSTM not in report["operators"]
    np.testing.assert_allclose(_litert_probabilities(_tflite(path), token_ids(model, texts)), wanted, atol=1e-5)


def test_forecast_variant_cell_exports(tmp_path):
    csv_path = write_series(tmp_path / "demand.csv")
    workdir = str(tmp_path / "run")
    settings = [*FORECAST_TINY, "models=peephole_lstm", "classical_models="]
    arguments = ["--workdir", workdir, "--csv", csv_path, "--target", "demand", "--time-column", "day"]
    assert forecast.main(["train", *arguments, *_sets(settings), "--verbose", "0"]) == 0
    name = "peephole_lstm"
    # Both exports check themselves against the trained model (the .tflite and its step signature to 1e-5).
    assert forecast.main(["export", "--workdir", workdir, "--model", name, "--format", "litert", "--step"]) == 0
    counts = _assert_builtin_only(_tflite(os.path.join(workdir, "export", f"{name}.tflite")), fused_lstms=0)
    assert counts["WHILE"] >= 1
    assert forecast.main(["export", "--workdir", workdir, "--model", name]) == 0
    loaded = tf.saved_model.load(os.path.join(workdir, "export", name))
    assert sorted(loaded.signatures) == ["serving_default", "step"]


def test_no_export_holds_a_device_specific_op(char_lm_run, forecast_run, sentiment_run):
    saved_models = [
        os.path.join(char_lm_run, "export"),
        os.path.join(forecast_run, "export", "lstm"),
        os.path.join(sentiment_run, "export"),
    ]
    for directory in saved_models:
        op_types = saved_model_op_types(directory)
        assert "MatMul" in op_types or "BatchMatMulV2" in op_types, directory  # the listing sees the network
        assert not _device_specific(op_types), directory
    tflite_files = [
        os.path.join(char_lm_run, "export.tflite"),
        os.path.join(forecast_run, "export", "lstm.tflite"),
        os.path.join(forecast_run, "export", "gru-autoregressive.tflite"),
        os.path.join(sentiment_run, "export.tflite"),
    ]
    for path in tflite_files:
        assert not _device_specific(litert.operators(_tflite(path))), path


def test_the_device_check_finds_a_cudnn_op(tmp_path):
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([5, 2, 3], tf.float32)])
    def cudnn_lstm(inputs):
        state = tf.zeros([1, 2, 4])
        return tf.raw_ops.CudnnRNN(input=inputs, input_h=state, input_c=state, params=tf.zeros([400]))[0]

    module.serve = cudnn_lstm
    tf.saved_model.save(module, str(tmp_path / "cudnn"), signatures={"serving_default": cudnn_lstm})
    assert _device_specific(saved_model_op_types(str(tmp_path / "cudnn"))) == ["CudnnRNN"]


# ----------------------------------------------------------------------------- step signatures and quantized exports


def test_char_lm_step_signatures_reproduce_the_sequence_and_greedy_generation(char_lm_run, tmp_path):
    from zoo.char_lm.export import generate_litert

    config, vocabulary, model = load_run(char_lm_run)
    path = str(tmp_path / "step.tflite")
    assert char_lm.main(["export", "--workdir", char_lm_run, "--format", "litert", "--step", "--path", path]) == 0
    model_bytes = _tflite(path)
    states = {name: np.zeros(shape, np.float32) for name, shape in litert.metadata(model_bytes)["states"].items()}
    assert sorted(states) == ["c0", "h0"]
    validation = char_data.prepare_corpus(_words_text(), config.validation_fraction, vocabulary).validation_ids
    ids = np.asarray(validation[:40], np.int32)[None]
    whole = litert.run(model_bytes, {"character_ids": ids})["log_probs"][0]
    (stepped,) = litert.run_steps(model_bytes, [[{"character_id": ids[:, t]} for t in range(ids.shape[1])]], states)
    np.testing.assert_allclose(np.stack([out["log_probs"][0] for out in stepped]), whole, atol=1e-5, rtol=1e-5)
    loaded = tf.saved_model.load(os.path.join(char_lm_run, "export"))
    current = {name: tf.constant(value) for name, value in states.items()}
    for t in range(ids.shape[1]):
        outputs = loaded.signatures["step"](character_id=tf.constant(ids[:, t]), **current)
        current = {name: outputs[name] for name in states}
        np.testing.assert_allclose(outputs["log_probs"].numpy()[0], whole[t], atol=1e-5, rtol=1e-5)
    prompt = "".join(vocabulary.tokens[i] for i in validation[:6])
    wanted = loaded.signatures["generate"](
        prompt=tf.constant(prompt), length=tf.constant(30), temperature=tf.constant(0.0), seed=tf.constant(0)
    )["text"].numpy()
    text = generate_litert(model_bytes, prompt, 30)
    assert len(text) == 30 and text == wanted.decode("utf-8")


def test_char_lm_int8_export_quantizes_the_lstm(char_lm_run, tmp_path, capsys):
    path = str(tmp_path / "int8.tflite")
    arguments = ["export", "--workdir", char_lm_run, "--format", "litert", "--path", path]
    assert char_lm.main([*arguments, "--quantize", "int8", "--step"]) == 0
    assert "int8-quantized" in capsys.readouterr().out
    model_bytes = _tflite(path)
    _assert_builtin_only(model_bytes, fused_lstms=1)
    ((inputs, outputs),) = litert.operator_types(model_bytes, litert.FUSED_LSTM)
    assert inputs[0] == "INT8" and inputs[19] == "INT16" and outputs == ["INT8"]
    assert litert.metadata(model_bytes)["quantize"] == "int8"
    with pytest.raises(UserError, match="--quantize"):
        char_lm.main(["export", "--workdir", char_lm_run, "--quantize", "int8"])
    with pytest.raises(UserError, match="--step"):
        char_lm.main(["export", "--workdir", char_lm_run, "--step"])


@pytest.mark.parametrize("name", ["lstm", "gru-autoregressive"])
def test_forecast_step_signatures_reproduce_the_window_forecast(forecast_run, name, tmp_path):
    config = ForecastConfig(**{**read_json(os.path.join(forecast_run, "config.json")), "input_columns": ()})
    path = str(tmp_path / "step.tflite")
    assert (
        forecast.main(
            ["export", "--workdir", forecast_run, "--model", name, "--format", "litert", "--step", "--output", path]
        )
        == 0
    )
    model_bytes = _tflite(path)
    prepared = forecast_data.prepare(config)
    origins = prepared.split.origins("validation", config.window, config.horizon)[:3]
    raw = forecast_data.windows_at(prepared.series.values, origins, config.window).astype(np.float32)
    model = forecast_evaluate.load_trained(forecast_run, name)
    wanted = np.asarray(model(forecast_data.windows_at(prepared.normalized, origins, config.window)))
    wanted = wanted * prepared.normalizer.std[0] + prepared.normalizer.mean[0]
    output = "next_step" if name.endswith("autoregressive") else "forecast"
    states = {state: np.zeros(shape, np.float32) for state, shape in litert.metadata(model_bytes)["states"].items()}
    sequences = [
        [{"observation": window[None, t], "anchor": window[None, -1]} for t in range(config.window)] for window in raw
    ]
    got = [steps[-1][output][0] for steps in litert.run_steps(model_bytes, sequences, states)]
    np.testing.assert_allclose(np.stack(got), wanted, rtol=1e-5, atol=1e-5)
    if name == "lstm":  # the fixture's SavedModel
        loaded = tf.saved_model.load(os.path.join(forecast_run, "export", "lstm")).signatures["step"]
        current = {state: tf.constant(value) for state, value in states.items()}
        for t in range(config.window):
            outputs = loaded(observation=tf.constant(raw[:1, t]), anchor=tf.constant(raw[:1, -1]), **current)
            current = {state: outputs[state] for state in states}
        np.testing.assert_allclose(outputs["forecast"].numpy()[0], wanted[0], rtol=1e-5, atol=1e-5)


def test_forecast_quantized_exports(forecast_run, tmp_path):
    arguments = ["export", "--workdir", forecast_run, "--format", "litert"]
    path = str(tmp_path / "lstm-int8.tflite")
    assert forecast.main([*arguments, "--model", "lstm", "--quantize", "int8", "--output", path]) == 0
    model_bytes = _tflite(path)
    _assert_builtin_only(model_bytes, fused_lstms=1)
    assert [inputs[0] for inputs, _ in litert.operator_types(model_bytes, litert.FUSED_LSTM)] == ["INT8"]
    with pytest.raises(UserError, match="WHILE"):
        forecast.main([*arguments, "--model", "gru-autoregressive", "--quantize", "int8", "--output", path])
    assert _tflite(path) == model_bytes  # the refused export left the earlier file alone


def test_sentiment_int8_export_calibrates_on_the_class_files(sentiment_run, export_class_files, tmp_path):
    path = str(tmp_path / "int8.tflite")
    arguments = ["export", "--workdir", sentiment_run, "--format", "litert", "--output", path]
    with pytest.raises(UserError, match="--class-file"):
        sentiment.main([*arguments, "--quantize", "int8"])
    assert sentiment.main([*arguments, "--quantize", "int8", *export_class_files]) == 0
    model_bytes = _tflite(path)
    _assert_builtin_only(model_bytes, fused_lstms=2)
    assert {inputs[0] for inputs, _ in litert.operator_types(model_bytes, litert.FUSED_LSTM)} == {"INT8"}
    model = keras.saving.load_model(os.path.join(sentiment_run, "model.keras"), safe_mode=True)
    texts = [*POSITIVE, *NEGATIVE]
    # Probabilities of a tiny model near 0.5: int8's output step is 1/256, and a few steps is the bound.
    got = _litert_probabilities(model_bytes, token_ids(model, texts))
    np.testing.assert_allclose(got, model(tf.constant(texts)), atol=0.03)
