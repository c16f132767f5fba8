"""Exports of a trained forecaster (a SavedModel, a `.tflite` or an `.onnx` model): a window in original units in, the forecast out."""

import os

import keras
import numpy as np
import tensorflow as tf

from zoo import cells, litert, litert_quantize, litert_step, onnx_export
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model
from zoo.forecast.config import is_autoregressive
from zoo.forecast.data import prepare, windows_at
from zoo.forecast.evaluate import load_trained, neural_forecast
from zoo.forecast.model import autoregressive_rollout


class ForecastModule(tf.Module):
    """A SavedModel-ready forecaster: a window in original units in, the forecast in original units out."""

    def __init__(self, model, autoregressive, normalizer, window, horizon, features):
        super().__init__()
        self.model = model
        self.mean = tf.constant(normalizer.mean, tf.float32)
        self.std = tf.constant(normalizer.std, tf.float32)
        self.horizon = horizon
        self.features = features
        self.autoregressive = autoregressive
        shape = [None, window] if features == 1 else [None, window, features]
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="window")])
        self.step = None
        if _parts(model) is not None:
            step = step_signature(model, autoregressive, self.mean, self.std, features, None)
            self.step = tf.function(step.function, input_signature=step.input_signature)

    def signatures(self):
        """The SavedModel's signatures: `serving_default`, and `step` for a recurrent model."""
        signatures = {"serving_default": self.serve}
        if self.step is not None:
            signatures["step"] = self.step.get_concrete_function()
        return signatures

    def _serve(self, window):
        return serve_forecast(
            lambda w: self.model(w, training=False), window, self.mean, self.std, self.autoregressive, self.horizon
        )


def serve_forecast(network, window, mean, std, autoregressive, horizon):
    """{"forecast": (batch, horizon) in original units} for `window` (batch, window[, features]) in original units.

    `network` maps normalised windows (batch, window, features) to the
    model's output.
    """
    if window.shape.rank == 2:
        window = window[:, :, None]
    normalized = (window - mean) / std
    forecast = autoregressive_rollout(network, normalized, horizon) if autoregressive else network(normalized)
    return {"forecast": forecast * std[0] + mean[0]}


def _trained_name(config, name):
    """The run's spelling of model `name`; `name` may spell a cell differently (`rnn` for `simple_rnn`)."""
    trained = [model for model in config.models if cells.canonical_name(model) == cells.canonical_name(name)]
    if not trained:
        raise UserError(f"Received an invalid value for `model`: {name!r}; this run trained {list(config.models)}.")
    return trained[0]


def export(config, workdir, name, path=None, *, series=None):
    """Export model `name` as a SavedModel (signature `serving_default`, and `step` for a recurrent model).

    The export is checked before it replaces an earlier one: on the first
    test windows its forecasts must equal the in-process forecasts.
    Returns the export path. `name` may spell a cell differently from the
    run's `models` (`rnn` for a run that trained `simple_rnn`).
    """
    name = _trained_name(config, name)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    module = ForecastModule(
        model, is_autoregressive(name), prepared.normalizer, config.window, config.horizon, config.features
    )
    origins = prepared.split.origins("test", config.window, config.horizon)[:8]
    raw_windows = windows_at(prepared.series.values, origins, config.window).astype(np.float32)
    expected = prepared.normalizer.denormalize_target(
        neural_forecast(model, name, windows_at(prepared.normalized, origins, config.window), config.horizon)
    )
    if config.features == 1:
        raw_windows = raw_windows[:, :, 0]

    def verify(loaded):
        got = loaded.signatures["serving_default"](window=tf.constant(raw_windows))["forecast"].numpy()
        tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
        if got.shape != expected.shape or not np.allclose(got, expected, atol=tolerance):
            raise RuntimeError(
                f"The exported {name!r} model disagrees with the trained one; the export was not written."
            )

    path = path or os.path.join(workdir, "export", name)
    return export_saved_model(module, path, signatures=module.signatures(), verify=verify)


STEP_CHECK_WINDOWS = 4  # validation windows the `step` signature is stepped through
CALIBRATION_WINDOWS = 256  # training windows an int8 export calibrates on (the first STEP_CHECK_WINDOWS also stepped)


def _parts(model):
    """(center, recurrent layer, head Dense, add-last layer) of a recurrent forecaster; None for the convolution."""
    recurrent_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    if not recurrent_layers:
        return None
    (recurrent,) = recurrent_layers
    # center, recurrent, the Dense head, AddLastStep (see zoo.forecast.model)
    return model.get_layer("center"), recurrent, model.get_layer(index=len(model.layers) - 2), model.layers[-1]


def _rebuilt_network(model, rebuild):
    """The forecaster's network with its recurrent layer rebuilt by `rebuild`; other layers called as they are.

    `rebuild` is `litert.recurrent` or `onnx_export.recurrent`.
    """
    parts = _parts(model)
    if parts is None:
        return lambda windows: model(windows, training=False)
    center, recurrent, changes, add_last = parts

    def network(windows):
        return add_last(changes(rebuild(recurrent, center(windows))), windows)

    return network


def _validation_windows(config, prepared, model, name):
    """(normalised windows, raw windows in original units, the trained model's forecasts) of every validation window.

    The raw windows are float32 `(count, window, features)`; the forecasts
    float32 `(count, horizon)` in original units.
    """
    origins = prepared.split.origins("validation", config.window, config.horizon)
    normalized = windows_at(prepared.normalized, origins, config.window)
    raw_windows = windows_at(prepared.series.values, origins, config.window).astype(np.float32)
    expected = prepared.normalizer.denormalize_target(neural_forecast(model, name, normalized, config.horizon))
    return normalized, raw_windows, expected.astype(np.float32)


def step_output_name(autoregressive):
    return "next_step" if autoregressive else "forecast"


def step_function(model, autoregressive, mean, std):
    """The `step` signature's function: (observation, anchor, *states) -> the model's output and the new states.

    `observation` and `anchor` are float32 `(batch, features)` in original
    units: one time step of the window, and the window's last observation,
    on which the model centres every step (`CenterOnLastStep`). Stepping
    through a window with its last observation as the anchor gives, after
    the last step, what the model gives for the window: `forecast`
    `(batch, horizon)` of the target (single-shot models) or `next_step`
    `(batch, features)` (autoregressive models), in original units. The
    anchor being the window's end, a new observation means a new anchor and
    a fresh pass over the window (see recipes/forecast.md#export).
    """
    _, recurrent, head, add_last = _parts(model)
    channels = add_last.channels

    def step(observation, anchor, *states):
        normalized_anchor = (anchor - mean) / std
        hidden, new_states = litert_step.run_layers([recurrent], (observation - mean) / std - normalized_anchor, states)
        output = head(hidden) + normalized_anchor[:, :channels]
        return {step_output_name(autoregressive): output * std[:channels] + mean[:channels], **new_states}

    return step


def step_signature(model, autoregressive, mean, std, features, batch_size):
    """The `step` signature's `litert_step.StepSignature` (no check data); `batch_size` None for any."""
    recurrent = [_parts(model)[1]]
    return litert_step.StepSignature(
        step_function(model, autoregressive, mean, std),
        [
            tf.TensorSpec([batch_size, features], tf.float32, name="observation"),
            tf.TensorSpec([batch_size, features], tf.float32, name="anchor"),
            *litert_step.state_specs(recurrent, batch_size),
        ],
        litert_step.zero_states(recurrent, batch_size or 1),
    )


def _window_steps(windows, expected=None):
    """One sequence of step inputs per window `(batch, window, features)`; `expected` checked at its last step."""
    steps = [({"observation": windows[:, t], "anchor": windows[:, -1]}, {}) for t in range(windows.shape[1])]
    if expected is not None:
        steps[-1] = (steps[-1][0], expected)
    return steps


def export_litert(
    config, workdir, name, path=None, *, series=None, batch_size=1, quantize=litert_quantize.NONE, step=False
):
    """Write model `name` as a `.tflite` model: `batch_size` windows in original units -> their forecasts.

    Signature `serving_default(window: float32[batch_size, window] (or
    [batch_size, window, features]) -> {forecast: float32[batch_size,
    horizon]}`, normalisation included. With `step` (recurrent models), also
    `step(observation, anchor, h0[, c0]) -> {forecast | next_step, h0[,
    c0]}` (see `step_function`), which stores the weights a second time.
    `quantize` is one of `litert_quantize.MODES`; int8 calibrates on the first
    `CALIBRATION_WINDOWS` training windows. Before it replaces an earlier
    file, a float model must give the trained model's forecasts on every
    validation window, to 1e-5 (relative beyond magnitude 1, see
    `litert.compare`), and its `step` signature the same outputs after
    stepping through the first `STEP_CHECK_WINDOWS` batches of them. Returns
    the report of `litert.export` (path `WORKDIR/export/NAME.tflite` by
    default).
    """
    require_int("batch_size", batch_size, minimum=1)
    litert_quantize.require_mode(quantize)
    name = _trained_name(config, name)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    if step and _parts(model) is None:
        raise UserError(f"Received --step for model {name!r}, which has no recurrent layer; expected a recurrent one.")
    normalized, raw_windows, expected = _validation_windows(config, prepared, model, name)
    window_batches, _ = litert.in_batches(raw_windows, batch_size)
    forecast_batches, _ = litert.in_batches(expected, batch_size)
    mean = tf.constant(prepared.normalizer.mean, tf.float32)
    std = tf.constant(prepared.normalizer.std, tf.float32)
    network, autoregressive = _rebuilt_network(model, litert.recurrent), is_autoregressive(name)
    squeeze = (lambda windows: windows[:, :, 0]) if config.features == 1 else (lambda windows: windows)

    def serve(window):
        return serve_forecast(network, window, mean, std, autoregressive, config.horizon)

    shape = [batch_size, config.window] + ([] if config.features == 1 else [config.features])
    metadata = {
        "task": "forecast",
        "model": name,
        "quantize": quantize,
        "inputs": {"window": f"float32{shape}: the last {config.window} observations, in original units"},
        "outputs": {"forecast": f"float32[{batch_size}, {config.horizon}]: the next {config.horizon} target values"},
        "columns": list(prepared.series.columns),
    }
    stepper = None
    if step:
        stepper = step_signature(model, autoregressive, mean, std, config.features, batch_size)
        outputs = np.asarray(model(normalized, training=False))
        channels = outputs.shape[1] if autoregressive else 1
        outputs = outputs * prepared.normalizer.std[:channels] + prepared.normalizer.mean[:channels]
        output_batches, _ = litert.in_batches(outputs.astype(np.float32), batch_size)
        stepper.check = [
            _window_steps(windows, {step_output_name(autoregressive): wanted})
            for windows, wanted in list(zip(window_batches, output_batches))[:STEP_CHECK_WINDOWS]
        ]
        metadata["states"] = {state: list(value.shape) for state, value in stepper.states.items()}
    representative = None
    if quantize == litert_quantize.INT8:
        training_origins = prepared.split.origins("train", config.window, config.horizon)[:CALIBRATION_WINDOWS]
        training = windows_at(prepared.series.values, training_origins, config.window).astype(np.float32)
        training_batches, _ = litert.in_batches(training, batch_size)
        representative = [(litert.SIGNATURE, {"window": squeeze(batch)}) for batch in training_batches]
        if stepper is not None:
            sequences = [[inputs for inputs, _ in _window_steps(batch)] for batch in training_batches]
            recorded = litert_step.record(stepper.function, sequences[:STEP_CHECK_WINDOWS], stepper.states)
            representative += [(litert_step.STEP, inputs) for inputs in recorded]
    return litert.export(
        path or os.path.join(workdir, "export", f"{name}.tflite"),
        serve,
        [tf.TensorSpec(shape, tf.float32, name="window")],
        model.weights,
        metadata=metadata,
        batches=[{"window": squeeze(batch)} for batch in window_batches],
        expected=[{"forecast": batch} for batch in forecast_batches],
        step=stepper,
        quantize=quantize,
        representative=representative,
    )


ONNX_CHECK_BATCH = 64  # validation windows per ONNX Runtime call when an ONNX export is checked


def export_onnx(config, workdir, name, path=None, *, series=None):
    """Write model `name` as an ONNX model: windows in original units -> their forecasts.

    Input `window: float32[batch, window]` (or `[batch, window,
    features]`), any batch size; output `forecast: float32[batch,
    horizon]` in original units, normalisation included. The recurrent
    layer is ONNX's own `LSTM` or `GRU` operator (a SimpleRNN a `Loop`; see
    `zoo.onnx_export`); an autoregressive model runs it once per forecast
    step. Before it replaces an earlier file, the model, run by ONNX
    Runtime, must give the trained model's forecasts on every validation
    window to 1e-5 (relative beyond magnitude 1: near 400 ppm, one float32
    step is 3e-5). Returns the report of `onnx_export.export` (path
    `WORKDIR/export/NAME.onnx` by default).
    """
    name = _trained_name(config, name)
    path = path or os.path.join(workdir, "export", f"{name}.onnx")
    onnx_export.check_file_path(path)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    _, raw_windows, expected = _validation_windows(config, prepared, model, name)
    if config.features == 1:
        raw_windows = raw_windows[:, :, 0]
    mean, std = prepared.normalizer.mean.astype(np.float32), prepared.normalizer.std.astype(np.float32)
    network, autoregressive = _rebuilt_network(model, onnx_export.recurrent), is_autoregressive(name)

    def serve(window):
        # Constants made while tracing: tf2onnx would make captured tensors inputs of the model.
        return serve_forecast(network, window, tf.constant(mean), tf.constant(std), autoregressive, config.horizon)

    shape = [None, config.window] + ([] if config.features == 1 else [config.features])
    parts = _parts(model)
    recurrent_layers = [] if parts is None else [parts[1]]
    starts = range(0, len(raw_windows), ONNX_CHECK_BATCH)
    return onnx_export.export(
        path,
        serve,
        [tf.TensorSpec(shape, tf.float32, name="window")],
        model.weights,
        metadata={
            "task": "forecast",
            "model": name,
            "inputs": {"window": f"float32{shape}: the last {config.window} observations, in original units"},
            "outputs": {"forecast": f"float32[batch, {config.horizon}]: the next {config.horizon} target values"},
            "columns": list(prepared.series.columns),
        },
        batches=[{"window": raw_windows[start : start + ONNX_CHECK_BATCH]} for start in starts],
        expected=[{"forecast": expected[start : start + ONNX_CHECK_BATCH]} for start in starts],
        expected_recurrent=onnx_export.expected_operators(
            recurrent_layers, calls=config.horizon if autoregressive else 1
        ),
    )
