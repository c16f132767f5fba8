"""Measurements behind `python -m recipes.litert_report`: quality per quantization mode, and latency per format."""

import os
import statistics
import time

import numpy as np
import tensorflow as tf

from zoo import config as config_lib
from zoo import litert, litert_quantize, litert_step, onnx_export, registry
from zoo.char_lm import export as char_export
from zoo.char_lm import model as char_model
from zoo.char_lm.evaluate import load_run, run_source
from zoo.char_lm.train import load_corpus
from zoo.forecast import baselines as forecast_baselines
from zoo.forecast import export as forecast_export
from zoo.forecast.config import ForecastConfig
from zoo.forecast.data import prepare, targets_at, windows_at
from zoo.forecast.evaluate import load_trained, neural_forecasts
from zoo.sentiment import export as sentiment_export
from zoo.sentiment.data import load_class_files, stratified_split
from zoo.sentiment.evaluate import load_trained_model
from zoo.sentiment.model import build_model  # noqa: F401 (registers the sentiment layers for loading)

MODES = litert_quantize.MODES
FORMATS = ("SavedModel", ".tflite float", ".tflite int8", "ONNX Runtime")
ONNX = "ONNX Runtime"  # no `step` signature: whole sequences only


def _size(path):
    return os.path.getsize(path)


def _score_modes(row, directory, prefix, export, batches, output, score):
    """Export each quantization mode (`export(path, mode)`), run it on `batches`, add its `score` and size to `row`."""
    for mode in MODES:
        path = os.path.join(directory, f"{prefix}-{mode}.tflite")
        export(path, mode)
        outputs = litert.run_each(path, batches)
        row[mode] = score(np.concatenate([result[output] for result in outputs]))
        row[f"{mode} bytes"] = _size(path)
    return row


# ----------------------------------------------------------------------------- quality


def char_lm_quality(workdir, directory, row_length):
    """Validation nats/char of the Keras model and each `.tflite` mode, rows of `row_length` from a zero state."""
    config, vocabulary, model = load_run(workdir)
    reference = registry.build(f"char_lm/{config.cell}", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    ids = load_corpus(run_source(workdir), config, vocabulary).validation_ids
    rows = len(ids) // row_length
    sequences = np.asarray(ids[: rows * row_length], np.int32).reshape(rows, row_length)

    def nats(log_probs):
        return float(-np.mean(np.take_along_axis(log_probs[:, :-1], sequences[:, 1:, None], axis=-1)))

    keras_log_probs = np.concatenate(
        [tf.nn.log_softmax(reference(sequences[start : start + 32])).numpy() for start in range(0, rows, 32)]
    )
    row = {
        "recipe": f"char_lm ({config.cell} {config.num_layers}x{config.units})",
        "metric": f"validation nats/char ({rows * (row_length - 1)} predictions)",
        "keras": nats(keras_log_probs),
    }
    batches = [{"character_ids": sequence[None]} for sequence in sequences]
    return _score_modes(
        row,
        directory,
        "char_lm",
        lambda path, mode: char_export.export_litert(workdir, path=path, quantize=mode),
        batches,
        "log_probs",
        nats,
    )


def _sentiment_split(workdir, class_file_pairs):
    """(model, class names, training texts, test texts, test labels) of a sentiment run and its class files."""
    from zoo.files import read_json
    from zoo.sentiment import SentimentConfig

    class_names = tuple(read_json(os.path.join(workdir, "metrics.json"))["class_names"])
    config = config_lib.load(SentimentConfig, os.path.join(workdir, "config.json"))
    dataset = load_class_files(class_file_pairs, class_names=class_names)
    training, test = stratified_split(dataset.labels, config.test_fraction, config.seed)
    texts = list(dataset.texts)
    labels = np.asarray(dataset.labels)[test]
    return load_trained_model(workdir), class_names, [texts[i] for i in training], [texts[i] for i in test], labels


def sentiment_quality(workdir, class_file_pairs, directory):
    """Test accuracy of the Keras model and each `.tflite` mode on the run's test split."""
    model, class_names, training, test, labels = _sentiment_split(workdir, class_file_pairs)
    keras_probabilities = np.concatenate(
        [np.asarray(model(tf.constant(test[start : start + 256]))) for start in range(0, len(test), 256)]
    )
    ids = sentiment_export.token_ids(model, test)
    row = {
        "recipe": "sentiment (BiLSTM)",
        "metric": f"test accuracy % ({len(test)} sentences)",
        "keras": 100.0 * float(np.mean(keras_probabilities.argmax(-1) == labels)),
    }
    return _score_modes(
        row,
        directory,
        "sentiment",
        lambda path, mode: sentiment_export.export_text_classifier_litert(
            model, class_names, path, quantize=mode, calibration_texts=training
        ),
        [{"token_ids": row_ids[None]} for row_ids in ids],
        "probabilities",
        lambda probabilities: 100.0 * float(np.mean(probabilities.argmax(-1) == labels)),
    )


def forecast_quality(workdir, name, directory):
    """Test MASE of the Keras forecaster and each `.tflite` mode on the run's test windows."""
    config = config_lib.load(ForecastConfig, os.path.join(workdir, "config.json"))
    prepared = prepare(config)
    origins = prepared.split.origins("test", config.window, config.horizon)
    truth = targets_at(prepared.series.target, origins, config.horizon)
    model = load_trained(workdir, name)
    inputs = forecast_export.serving_inputs(config, prepared, origins)

    def mase(forecasts):
        return forecast_baselines.forecast_errors(forecasts, truth, prepared.mase_scale)["mase"]

    keras_forecasts, _, _ = neural_forecasts(model, name, config, prepared, origins)
    row = {
        "recipe": f"forecast ({name}, {prepared.series.name})",
        "metric": f"test MASE ({len(origins)} windows)",
        "keras": mase(keras_forecasts),
    }
    return _score_modes(
        row,
        directory,
        "forecast",
        lambda path, mode: forecast_export.export_litert(config, workdir, name, path, quantize=mode),
        [{key: value[row : row + 1] for key, value in inputs.items()} for row in range(len(origins))],
        "forecast",
        mase,
    )


def quality_table(rows):
    header = "| recipe | metric | Keras | .tflite float | dynamic | int8 | bytes float / dynamic / int8 |"
    lines = [header, "|" + "---|" * 7]
    for row in rows:
        scores = " | ".join(f"{row[key]:.4f}" for key in ("keras", *MODES))
        sizes = " / ".join(f"{row[f'{mode} bytes']:,}" for mode in MODES)
        lines.append(f"| {row['recipe']} | {row['metric']} | {scores} | {sizes} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- latency


def _median_seconds(contenders, repeats, calls):
    """{name: median over `repeats` rounds of the seconds per call}; contenders alternate within each round."""
    rounds = {name: [] for name in contenders}
    for call in contenders.values():
        call()  # warm up
    for _ in range(repeats):
        for name, call in contenders.items():
            started = time.perf_counter()
            for _ in range(calls):
                call()
            rounds[name].append((time.perf_counter() - started) / calls)
    return {name: statistics.median(values) for name, values in rounds.items()}


def _litert_calls(path, sequence_inputs, step_inputs):
    interpreter = litert.interpreter(path, num_threads=1)
    interpreter.allocate_tensors()
    serve = interpreter.get_signature_runner(litert.SIGNATURE)
    step = interpreter.get_signature_runner("step")

    def sequence():
        interpreter.reset_all_variables()
        serve(**sequence_inputs)

    return sequence, lambda: step(**step_inputs)


def _saved_model_calls(directory, sequence_name, sequence_inputs, step_inputs):
    loaded = tf.saved_model.load(directory)
    serve, step = loaded.signatures[sequence_name], loaded.signatures["step"]
    sequence_tensors = {name: tf.constant(value) for name, value in sequence_inputs.items()}
    step_tensors = {name: tf.constant(value) for name, value in step_inputs.items()}
    return (lambda: serve(**sequence_tensors)), (lambda: step(**step_tensors))


def _onnx_call(path, inputs):
    """One ONNX Runtime call of the model at `path` on `inputs`, on one thread."""
    session = onnx_export.session(path, threads=1)
    return lambda: session.run(None, inputs)


def _latency_rows(recipe, sequence_what, calls_by_format, repeats, calls):
    """`calls_by_format` maps each format to (sequence call, step call or None)."""
    sequences = _median_seconds({name: pair[0] for name, pair in calls_by_format.items()}, repeats, calls)
    steps = _median_seconds(
        {name: pair[1] for name, pair in calls_by_format.items() if pair[1] is not None}, repeats, calls
    )
    return [(recipe, sequence_what, sequences), (recipe, "one step (`step`)", steps)]


def char_lm_latency(workdir, directory, length, repeats, calls):
    config, vocabulary, model = load_run(workdir)
    saved = os.path.join(directory, "char_lm-savedmodel")
    char_export.export(workdir, path=saved)
    text = vocabulary.characters * (length // len(vocabulary.characters) + 1)
    ids = np.asarray([vocabulary.characters.index(c) + 1 for c in text[:length]], np.int32)[None]
    states = litert_step.zero_states(char_model.recurrent_layers(model), 1)
    step_inputs = {"character_id": ids[:, 0], **states}
    calls_by_format = {
        "SavedModel": _saved_model_calls(saved, "next_char_log_probs", {"prompt": text[:length]}, step_inputs)
    }
    for mode, label in (("none", ".tflite float"), ("int8", ".tflite int8")):
        path = os.path.join(directory, f"char_lm-step-{mode}.tflite")
        char_export.export_litert(workdir, path=path, quantize=mode, step=True)
        calls_by_format[label] = _litert_calls(path, {"character_ids": ids}, step_inputs)
    onnx_path = os.path.join(directory, "char_lm.onnx")
    char_export.export_onnx(workdir, path=onnx_path)
    calls_by_format[ONNX] = (_onnx_call(onnx_path, {"character_ids": ids}), None)
    recipe = f"char_lm ({config.cell} {config.num_layers}x{config.units})"
    return _latency_rows(recipe, f"{length} characters", calls_by_format, repeats, calls)


def forecast_latency(workdir, name, directory, repeats, calls):
    config = config_lib.load(ForecastConfig, os.path.join(workdir, "config.json"))
    prepared = prepare(config)
    origin = prepared.split.origins("test", config.window, config.horizon)[:1]
    window = windows_at(prepared.series.values, origin, config.window).astype(np.float32)
    saved = os.path.join(directory, "forecast-savedmodel")
    forecast_export.export(config, workdir, name, saved)
    paths = {}
    for mode in ("none", "int8"):
        paths[mode] = os.path.join(directory, f"forecast-step-{mode}.tflite")
        forecast_export.export_litert(config, workdir, name, paths[mode], quantize=mode, step=True)
    with open(paths["none"], "rb") as stream:
        states = {
            state: np.zeros(shape, np.float32) for state, shape in litert.metadata(stream.read())["states"].items()
        }
    step_inputs = {"observation": window[:, 0], "anchor": window[:, -1], **states}
    sequence_inputs = {"window": window[:, :, 0] if config.channels == 1 else window}
    calls_by_format = {"SavedModel": _saved_model_calls(saved, "serving_default", sequence_inputs, step_inputs)}
    for mode, label in (("none", ".tflite float"), ("int8", ".tflite int8")):
        calls_by_format[label] = _litert_calls(paths[mode], sequence_inputs, step_inputs)
    onnx_path = os.path.join(directory, "forecast.onnx")
    forecast_export.export_onnx(config, workdir, name, onnx_path)
    calls_by_format[ONNX] = (_onnx_call(onnx_path, sequence_inputs), None)
    recipe = f"forecast ({name} {config.units} units, {prepared.series.name})"
    return _latency_rows(recipe, f"one window ({config.window} steps)", calls_by_format, repeats, calls)


def sentiment_latency(workdir, class_file_pairs, directory, repeats, calls):
    model, class_names, training, _, _ = _sentiment_split(workdir, class_file_pairs)
    text = "a gorgeous , witty , seductive movie"
    saved = os.path.join(directory, "sentiment-savedmodel")
    sentiment_export.export_text_classifier(model, class_names, saved)
    model = load_trained_model(workdir)
    ids = sentiment_export.token_ids(model, [text])
    loaded = tf.saved_model.load(saved).signatures["serving_default"]
    texts = tf.constant([text])
    contenders = {"SavedModel": lambda: loaded(texts=texts)}
    for mode, label in (("none", ".tflite float"), ("int8", ".tflite int8")):
        path = os.path.join(directory, f"sentiment-{mode}.tflite")
        sentiment_export.export_text_classifier_litert(
            model, class_names, path, quantize=mode, calibration_texts=training
        )
        interpreter = litert.interpreter(path, num_threads=1)
        interpreter.allocate_tensors()
        runner = interpreter.get_signature_runner(litert.SIGNATURE)
        contenders[label] = lambda runner=runner, interpreter=interpreter: (
            interpreter.reset_all_variables(),
            runner(token_ids=ids),
        )
    onnx_report = sentiment_export.export_text_classifier_onnx(
        model, class_names, os.path.join(directory, "sentiment-onnx")
    )
    contenders[ONNX] = _onnx_call(onnx_report["path"], {"token_ids": ids})
    seconds = _median_seconds(contenders, repeats, calls)
    return [("sentiment (BiLSTM)", f"one sentence (padded to {ids.shape[1]} tokens)", seconds)]


def latency_table(rows):
    header = "| recipe | call | " + " | ".join(FORMATS) + " |"
    lines = [header, "|" + "---|" * (2 + len(FORMATS))]
    for recipe, what, seconds in rows:
        cells = " | ".join(f"{seconds[name] * 1e3:.3f} ms" if name in seconds else "-" for name in FORMATS)
        lines.append(f"| {recipe} | {what} | {cells} |")
    return "\n".join(lines)
