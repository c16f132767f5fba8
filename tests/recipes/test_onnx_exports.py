"""`export --format onnx` of the forecast, sentiment and char_lm recipes on tiny runs, run by ONNX Runtime."""

import importlib.util
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes import _cli, char_lm, forecast, sentiment
from tests.recipes.test_char_lm import _words_text
from tests.recipes.test_sentiment import NEGATIVE, POSITIVE
from zoo import onnx_export, registry
from zoo.char_lm import data as char_data
from zoo.char_lm.evaluate import load_run
from zoo.errors import UserError
from zoo.files import read_json
from zoo.forecast import data as forecast_data
from zoo.forecast import evaluate as forecast_evaluate
from zoo.forecast.config import ForecastConfig
from zoo.sentiment import SentimentConfig, export_text_classifier_onnx
from zoo.sentiment.export import python_token_ids, token_ids

HAVE_ONNX = all(importlib.util.find_spec(name) is not None for name in ("tf2onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs tf2onnx and onnxruntime (pip install -e '.[onnx]')")


def _run_cli(main, argv, capsys):
    """Run a recipe like the command line does: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# ----------------------------------------------------------------------------- forecast


@pytest.fixture(scope="module")
def forecast_onnx(trained_forecast):
    if not HAVE_ONNX:
        pytest.skip("needs tf2onnx and onnxruntime (pip install -e '.[onnx]')")
    for name in ("lstm", "gru-autoregressive"):
        assert forecast.main(["export", "--workdir", trained_forecast, "--model", name, "--format", "onnx"]) == 0
    return trained_forecast


@pytest.mark.parametrize("name, operator", [("lstm", "LSTM"), ("gru-autoregressive", "GRU")])
def test_forecast_onnx_equals_keras_on_validation_windows(forecast_onnx, name, operator):
    config = ForecastConfig(**{**read_json(os.path.join(forecast_onnx, "config.json")), "input_columns": ()})
    path = os.path.join(forecast_onnx, "export", f"{name}.onnx")
    # The autoregressive model runs its GRU once per forecast step.
    calls = config.horizon if name.endswith("autoregressive") else 1
    assert onnx_export.recurrent_operators(path) == [(operator, "forward")] * calls
    assert "Loop" not in onnx_export.operators(path)
    assert onnx_export.metadata(path)["columns"] == ["demand"]
    prepared = forecast_data.prepare(config)
    origins = prepared.split.origins("validation", config.window, config.horizon)
    raw = forecast_data.windows_at(prepared.series.values, origins, config.window)[:, :, 0].astype(np.float32)
    model = forecast_evaluate.load_trained(forecast_onnx, name)
    normalized = forecast_data.windows_at(prepared.normalized, origins, config.window)
    wanted = prepared.normalizer.denormalize_target(
        forecast_evaluate.neural_forecast(model, name, normalized, config.horizon)
    )
    # Any batch size: every validation window in one call, and one window alone.
    got = onnx_export.run(path, {"window": raw})["forecast"]
    assert got.shape == (len(origins), config.horizon)
    np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(onnx_export.run(path, {"window": raw[-1:]})["forecast"], wanted[-1:], rtol=1e-5)


@needs_onnx
def test_forecast_onnx_flags_and_paths_are_checked(forecast_onnx, tmp_path, capsys):
    arguments = ["export", "--workdir", forecast_onnx, "--format", "onnx"]
    with pytest.raises(UserError, match="--batch-size with --format onnx"):
        forecast.main([*arguments, "--batch-size", "2"])
    with pytest.raises(UserError, match="--quantize with --format onnx"):
        forecast.main([*arguments, "--quantize", "int8"])
    with pytest.raises(IsADirectoryError, match="a path for the .onnx file"):
        forecast.main([*arguments, "--output", str(tmp_path)])
    path = str(tmp_path / "lstm.onnx")
    assert forecast.main([*arguments, "--model", "lstm", "--output", path]) == 0
    printed = capsys.readouterr().out
    assert f"exported ONNX model to {path}" in printed and "recurrent operators: LSTM (forward) x1; Loop x0" in printed


def test_missing_onnx_packages_exit_2_with_one_line(trained_forecast, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # `import tf2onnx` now raises ImportError
    code, out, err = _run_cli(forecast.main, ["export", "--workdir", trained_forecast, "--format", "onnx"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ONNX export needs the tf2onnx and onnxruntime packages") and err.count("\n") == 1
    assert "pip install -e '.[onnx]'" in err


# ----------------------------------------------------------------------------- sentiment


@pytest.fixture(scope="module")
def sentiment_onnx(trained_sentiment, export_class_files):
    if not HAVE_ONNX:
        pytest.skip("needs tf2onnx and onnxruntime (pip install -e '.[onnx]')")
    # With the class files, the export is also checked on the run's held-out texts.
    assert sentiment.main(["export", "--workdir", trained_sentiment, "--format", "onnx", *export_class_files]) == 0
    return trained_sentiment


def _onnx_probabilities(path, ids):
    return onnx_export.run(path, {"token_ids": ids})["probabilities"]


def test_sentiment_onnx_takes_token_ids_of_its_vocabulary_file(sentiment_onnx, tmp_path):
    model = keras.saving.load_model(os.path.join(sentiment_onnx, "model.keras"), safe_mode=True)
    directory = os.path.join(sentiment_onnx, "onnx")
    assert sorted(os.listdir(directory)) == ["model.onnx", "vocabulary.txt"]
    path = os.path.join(directory, "model.onnx")
    assert onnx_export.recurrent_operators(path) == [("LSTM", "bidirectional")]  # the BiLSTM: one operator
    metadata = onnx_export.metadata(path)
    assert metadata["class_names"] == ["neg", "pos"] and metadata["max_length"] == SentimentConfig().max_length
    with open(os.path.join(directory, "vocabulary.txt"), encoding="utf-8") as stream:
        vocabulary = stream.read().split("\n")[:-1]
    assert vocabulary == model.get_layer("vectorizer").get_vocabulary() and vocabulary[:2] == ["", "[UNK]"]
    texts = [*POSITIVE, *NEGATIVE, "", "Splendid  film!", "splendid " * 80, "an unseen word"]
    ids = python_token_ids(texts, vocabulary, metadata["standardize"], metadata["max_length"])
    np.testing.assert_array_equal(ids, token_ids(model, texts))
    np.testing.assert_allclose(_onnx_probabilities(path, ids), model(tf.constant(texts)), atol=1e-5)
    # Two epochs on tiny data leave the probabilities near 0.5; with large weights every step counts.
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.dtype == "float32" and "vectorizer" not in variable.path:
            variable.assign(rng.normal(0.0, 0.6, variable.shape).astype("float32"))
    report = export_text_classifier_onnx(model, ["neg", "pos"], str(tmp_path / "randomized"))
    wanted = np.asarray(model(tf.constant(texts)))
    assert np.abs(wanted[:, 1] - 0.5).max() > 0.2
    np.testing.assert_allclose(_onnx_probabilities(report["path"], ids), wanted, atol=1e-5)
    # One text alone, padded to max_length: the batch size is free.
    np.testing.assert_allclose(_onnx_probabilities(report["path"], ids[1:2]), wanted[1:2], atol=1e-5)


@needs_onnx
def test_sentiment_onnx_refuses_what_it_cannot_express(sentiment_onnx, export_class_files, tmp_path):
    arguments = ["export", "--workdir", sentiment_onnx]
    with pytest.raises(UserError, match="--baseline with --format onnx"):
        sentiment.main([*arguments, "--format", "onnx", "--baseline"])
    with pytest.raises(UserError, match="--class-file with export"):
        sentiment.main([*arguments, *export_class_files])
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    with pytest.raises(UserError, match="a directory for the ONNX model"):
        sentiment.main([*arguments, "--format", "onnx", "--output", str(afile)])


# ----------------------------------------------------------------------------- char_lm


@needs_onnx
def test_char_lm_onnx_equals_keras_at_any_length(trained_char_lm, capsys):
    assert char_lm.main(["export", "--workdir", trained_char_lm, "--format", "onnx"]) == 0
    assert "recurrent operators: LSTM (forward) x1" in capsys.readouterr().out
    path = os.path.join(trained_char_lm, "export.onnx")
    config, vocabulary, model = load_run(trained_char_lm)
    assert onnx_export.metadata(path)["characters"] == vocabulary.tokens
    reference = registry.build("char_lm/lstm", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    validation = char_data.prepare_corpus(_words_text(), config.validation_fraction, vocabulary).validation_ids
    for rows in (2, 3):  # the whole validation text as rows of any length
        steps = len(validation) // rows
        ids = np.asarray(validation[: rows * steps], np.int32).reshape(rows, steps)
        got = onnx_export.run(path, {"character_ids": ids})["log_probs"]
        assert got.shape == (rows, steps, vocabulary.size)
        np.testing.assert_allclose(got, tf.nn.log_softmax(reference(ids)).numpy(), atol=1e-5, rtol=1e-5)
