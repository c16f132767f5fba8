"""Exports of a trained forecaster (a SavedModel, a `.tflite` or an `.onnx` model): a window in original units in, the forecast out.

Besides `forecast`, an export whose run has intervals (`intervals` conformal
or quantile) returns their bounds, `lower_80`, `upper_80`, `lower_95` and
`upper_95`, in original units. A model that reads each window's position in
the series (`features=fourier`, `transform=deseasonalize|residual`) takes a
second input, `step`: float32 (batch,), the position of the window's last
observation, counting the series' first step as 0.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from zoo import cells, litert, litert_quantize, litert_step, onnx_export, serving_graph
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model
from zoo.forecast.baselines import level_name
from zoo.forecast.config import INTERVAL_QUANTILES, is_autoregressive
from zoo.forecast.data import prepare, windows_at
from zoo.forecast.evaluate import conformal_widths, load_trained, neural_forecasts, quantile_bounds
from zoo.forecast.model import AddLastStep, CenterOnLastStep, autoregressive_rollout, ensemble_members, model_inputs
from zoo.forecast.train import window_steps


class ForecastModule(tf.Module):
    """A SavedModel-ready forecaster: a window in original units in, the forecast (and intervals) in original units out."""

    def __init__(self, model, autoregressive, normalizer, config, intervals):
        super().__init__()
        self.model = model
        self.mean = tf.constant(normalizer.mean, tf.float32)
        self.std = tf.constant(normalizer.std, tf.float32)
        self.horizon = config.horizon
        self.autoregressive = autoregressive
        self.intervals = intervals
        self.serve = tf.function(self._serve, input_signature=serving_signature(config, None))
        self.step = None
        if _parts(model) is not None:
            step = step_signature(model, autoregressive, self.mean, self.std, config.channels, None)
            self.step = tf.function(step.function, input_signature=step.input_signature)

    def signatures(self):
        """The SavedModel's signatures: `serving_default`, and `step` for a plain recurrent model."""
        signatures = {"serving_default": self.serve}
        if self.step is not None:
            signatures["step"] = self.step.get_concrete_function()
        return signatures

    def _serve(self, window, step=None):
        return serve_forecast(
            lambda inputs: self.model(inputs, training=False),
            window,
            self.mean,
            self.std,
            self.autoregressive,
            self.horizon,
            step=step,
            intervals=self.intervals,
        )


def serving_signature(config, batch_size):
    """The `serving_default` inputs: `window` (batch, window[, channels]) and, if the models read it, `step` (batch,)."""
    shape = [batch_size, config.window] + ([] if config.channels == 1 else [config.channels])
    signature = [tf.TensorSpec(shape, tf.float32, name="window")]
    if config.uses_steps:
        signature.append(tf.TensorSpec([batch_size], tf.float32, name="step"))
    return signature


def interval_spec(config, model, name, prepared):
    """How an export makes the run's intervals: ("quantile", None), ("conformal", half-widths by level) or None."""
    if config.intervals == "quantile":
        return ("quantile", None)
    if config.intervals == "conformal":
        return ("conformal", conformal_widths(model, name, config, prepared))
    return None


def interval_output_names(level):
    """The export's output names of the bounds of the central `level` interval: ("lower_80", "upper_80")."""
    return f"lower_{level_name(level)}", f"upper_{level_name(level)}"


def serve_forecast(network, window, mean, std, autoregressive, horizon, *, step=None, intervals=None):
    """{"forecast": (batch, horizon), and interval bounds} in original units for `window` in original units.

    `network` maps the model's inputs (normalised windows (batch, window,
    channels), with `step` when given) to its output. `intervals` (from
    `interval_spec`) adds `lower_80`, `upper_80`, ...: the quantile heads'
    outer quantiles, or the forecast -+ the conformal half-widths.
    """
    if window.shape.rank == 2:
        window = window[:, :, None]
    normalized = (window - mean) / std
    if autoregressive:
        output = autoregressive_rollout(network, normalized, horizon, step)
    else:
        output = network(model_inputs(normalized, step))
    output = output * std[0] + mean[0]
    if intervals is None:
        return {"forecast": output}
    method, widths = intervals
    if method == "quantile":
        return named_outputs(*quantile_bounds(output))
    bounds = {}
    for level, width in widths.items():
        width = tf.constant(width, tf.float32)
        bounds[level] = (output - width, output + width)
    return named_outputs(output, bounds)


def named_outputs(point, bounds):
    """An export's outputs: {"forecast": point, "lower_80": ..., "upper_80": ..., ...} from {level: (lower, upper)}."""
    outputs = {"forecast": point}
    for level, (lower, upper) in bounds.items():
        lower_name, upper_name = interval_output_names(level)
        outputs[lower_name], outputs[upper_name] = lower, upper
    return outputs


def expected_outputs(model, name, config, prepared, origins, intervals):
    """The outputs an export must give for the windows ending at `origins`, computed in process.

    `intervals` is the export's `interval_spec`, whose conformal half-widths are reused.
    """
    widths = intervals[1] if intervals else None
    point, bounds, _ = neural_forecasts(model, name, config, prepared, origins, widths)
    return named_outputs(point, bounds)


def serving_inputs(config, prepared, origins):
    """The export's inputs for the windows ending at `origins`: {"window": ..., and "step": ...}, float32."""
    windows = windows_at(prepared.series.values, origins, config.window).astype(np.float32)
    inputs = {"window": windows[:, :, 0] if config.channels == 1 else windows}
    if config.uses_steps:
        inputs["step"] = window_steps(origins)
    return inputs


def _trained_name(config, name):
    """The run's spelling of model `name`; `name` may spell a cell differently (`rnn` for `simple_rnn`)."""
    trained = [model for model in config.models if cells.canonical_name(model) == cells.canonical_name(name)]
    if not trained:
        raise UserError(f"Received an invalid value for `model`: {name!r}; this run trained {list(config.models)}.")
    return trained[0]


def export(config, workdir, name, path=None, *, series=None):
    """Export model `name` as a SavedModel (signature `serving_default`, and `step` for a plain recurrent model).

    The export is checked before it replaces an earlier one: on the first
    test windows its forecasts (and interval bounds) must equal the
    in-process ones. Returns the export path. `name` may spell a cell
    differently from the run's `models` (`rnn` for a run that trained
    `simple_rnn`).
    """
    name = _trained_name(config, name)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    intervals = interval_spec(config, model, name, prepared)
    module = ForecastModule(model, is_autoregressive(name), prepared.normalizer, config, intervals)
    origins = prepared.split.origins("test", config.window, config.horizon)[:8]
    inputs = serving_inputs(config, prepared, origins)
    expected = expected_outputs(model, name, config, prepared, origins, intervals)

    def verify(loaded):
        got = loaded.signatures["serving_default"](**{key: tf.constant(value) for key, value in inputs.items()})
        for output, wanted in expected.items():
            value = got[output].numpy()
            tolerance = 1e-4 * max(1.0, float(np.abs(wanted).max()))
            if value.shape != wanted.shape or not np.allclose(value, wanted, atol=tolerance):
                raise RuntimeError(
                    f"The exported {name!r} model disagrees with the trained one on {output!r}; the export was not "
                    "written."
                )

    path = path or os.path.join(workdir, "export", name)
    return export_saved_model(module, path, signatures=module.signatures(), verify=verify)


STEP_CHECK_WINDOWS = 4  # validation windows the `step` signature is stepped through
CALIBRATION_WINDOWS = 256  # training windows an int8 export calibrates on (the first STEP_CHECK_WINDOWS also stepped)


def _parts(model):
    """(center, recurrent layer, head Dense, add-last layer) of a plain recurrent forecaster, else None.

    Plain: one model (not an ensemble) that reads the window alone, in the
    layers `zoo.forecast.model.build_forecaster` gives without `features`,
    `transform` or quantiles. Only such a model has a `step` signature.
    """
    inner = model.layers[1:]  # after the input layer
    kinds = (CenterOnLastStep, keras.layers.RNN, keras.layers.Dense, AddLastStep)
    if len(model.inputs) != 1 or len(inner) != len(kinds):
        return None
    if not all(isinstance(layer, kind) for layer, kind in zip(inner, kinds)):
        return None
    return tuple(inner)


def _rebuilt_network(model, rebuild):
    """The forecaster's network with each recurrent layer rebuilt by `rebuild`; other layers called as they are.

    `rebuild` is `litert.recurrent` or `onnx_export.recurrent`.
    """
    return lambda inputs: serving_graph.run_functional(model, inputs, rebuild)


def _recurrent_layers(model):
    """The recurrent layers of the forecaster `model`, an ensemble's members' included, in order."""
    return [
        layer for member in ensemble_members(model) for layer in member.layers if isinstance(layer, keras.layers.RNN)
    ]


def _metadata(config, name, prepared, batch, intervals):
    """The export's description: task, model, inputs and outputs (for a batch size `batch`), the series' columns."""
    shape = [batch, config.window] + ([] if config.channels == 1 else [config.channels])
    metadata = {
        "task": "forecast",
        "model": name,
        "inputs": {"window": f"float32{shape}: the last {config.window} observations, in original units"},
        "outputs": {"forecast": f"float32[{batch}, {config.horizon}]: the next {config.horizon} target values"},
        "columns": list(prepared.series.columns),
    }
    if config.uses_steps:
        metadata["inputs"]["step"] = (
            f"float32[{batch}]: the position of the window's last observation in the series (its first step is 0)"
        )
    for level in INTERVAL_QUANTILES if intervals else ():
        for output in interval_output_names(level):
            metadata["outputs"][output] = (
                f"float32[{batch}, {config.horizon}]: the {level_name(level)}% interval's bound"
            )
    return metadata


def step_refusal(model, name):
    """Why model `name` has no `step` signature (a sentence), or None if it has one."""
    if len(ensemble_members(model)) > 1:
        return f"model {name!r} is an ensemble (seeds > 1), whose members would each need their own states"
    if not any(isinstance(layer, keras.layers.RNN) for layer in model.layers):
        return f"model {name!r} has no recurrent layer"
    if _parts(model) is None:
        return (
            f"model {name!r} reads more than its window or has quantile heads (features, transform or "
            "intervals=quantile), which the step signature does not carry"
        )
    return None


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
    [batch_size, window, channels]) [, step: float32[batch_size]]) ->
    {forecast: float32[batch_size, horizon], and lower_80, upper_80,
    lower_95, upper_95 with intervals}`, normalisation included (`step`
    for the models that read each window's position). With `step` (plain
    recurrent models, see `step_refusal`), also `step(observation, anchor,
    h0[, c0]) -> {forecast | next_step, h0[, c0]}` (see `step_function`),
    which stores the weights a second time. `quantize` is one of
    `litert_quantize.MODES`; int8 calibrates on the first
    `CALIBRATION_WINDOWS` training windows. Before it replaces an earlier
    file, a float model must give the trained model's outputs on every
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
    if step:
        refusal = step_refusal(model, name)
        if refusal:
            raise UserError(f"Received --step, but {refusal}; expected a single plain recurrent model.")
    origins = prepared.split.origins("validation", config.window, config.horizon)
    inputs = serving_inputs(config, prepared, origins)
    intervals = interval_spec(config, model, name, prepared)
    expected = {
        key: value.astype(np.float32)
        for key, value in expected_outputs(model, name, config, prepared, origins, intervals).items()
    }
    input_batches = {key: litert.in_batches(value, batch_size)[0] for key, value in inputs.items()}
    batches = [dict(zip(input_batches, values)) for values in zip(*input_batches.values())]
    expected_batches = {key: litert.in_batches(value, batch_size)[0] for key, value in expected.items()}
    expected = [dict(zip(expected_batches, values)) for values in zip(*expected_batches.values())]
    mean = tf.constant(prepared.normalizer.mean, tf.float32)
    std = tf.constant(prepared.normalizer.std, tf.float32)
    network, autoregressive = _rebuilt_network(model, litert.recurrent), is_autoregressive(name)

    def serve(window, step=None):
        return serve_forecast(
            network, window, mean, std, autoregressive, config.horizon, step=step, intervals=intervals
        )

    signature = serving_signature(config, batch_size)
    metadata = {**_metadata(config, name, prepared, batch_size, intervals), "quantize": quantize}
    stepper = None
    if step:
        windows = windows_at(prepared.series.values, origins, config.window).astype(np.float32)
        window_batches, _ = litert.in_batches(windows, batch_size)
        stepper = step_signature(model, autoregressive, mean, std, config.channels, batch_size)
        outputs = np.asarray(model(windows_at(prepared.normalized, origins, config.window), training=False))
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
        training_inputs = serving_inputs(config, prepared, training_origins)
        training_batches = {key: litert.in_batches(value, batch_size)[0] for key, value in training_inputs.items()}
        representative = [
            (litert.SIGNATURE, dict(zip(training_batches, values))) for values in zip(*training_batches.values())
        ]
        if stepper is not None:
            windows = windows_at(prepared.series.values, training_origins, config.window).astype(np.float32)
            sequences = [
                [inputs for inputs, _ in _window_steps(batch)] for batch in litert.in_batches(windows, batch_size)[0]
            ]
            recorded = litert_step.record(stepper.function, sequences[:STEP_CHECK_WINDOWS], stepper.states)
            representative += [(litert_step.STEP, inputs) for inputs in recorded]
    return litert.export(
        path or os.path.join(workdir, "export", f"{name}.tflite"),
        serve,
        signature,
        model.weights,
        metadata=metadata,
        batches=batches,
        expected=expected,
        step=stepper,
        quantize=quantize,
        representative=representative,
    )


ONNX_CHECK_BATCH = 64  # validation windows per ONNX Runtime call when an ONNX export is checked


def export_onnx(config, workdir, name, path=None, *, series=None):
    """Write model `name` as an ONNX model: windows in original units -> their forecasts (and intervals).

    Input `window: float32[batch, window]` (or `[batch, window,
    channels]`), any batch size, and `step: float32[batch]` for the models
    that read each window's position; outputs `forecast: float32[batch,
    horizon]` in original units, normalisation included, and the interval
    bounds of a run with intervals (as `export`'s). Each recurrent layer is
    ONNX's own `LSTM` or `GRU` operator (a SimpleRNN or a variant cell a
    `Loop`; see `zoo.onnx_export`); an autoregressive model runs it once
    per forecast step. Before it replaces an earlier file, the model, run
    by ONNX Runtime, must give the trained model's outputs on every
    validation window to 1e-5 (relative beyond magnitude 1: near 400 ppm,
    one float32 step is 3e-5). Returns the report of `onnx_export.export`
    (path `WORKDIR/export/NAME.onnx` by default).
    """
    name = _trained_name(config, name)
    path = path or os.path.join(workdir, "export", f"{name}.onnx")
    onnx_export.check_file_path(path)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    origins = prepared.split.origins("validation", config.window, config.horizon)
    inputs = serving_inputs(config, prepared, origins)
    intervals = interval_spec(config, model, name, prepared)
    expected = {
        key: value.astype(np.float32)
        for key, value in expected_outputs(model, name, config, prepared, origins, intervals).items()
    }
    mean, std = prepared.normalizer.mean.astype(np.float32), prepared.normalizer.std.astype(np.float32)
    network, autoregressive = _rebuilt_network(model, onnx_export.recurrent), is_autoregressive(name)

    def serve(window, step=None):
        # Constants made while tracing: tf2onnx would make captured tensors inputs of the model.
        return serve_forecast(
            network,
            window,
            tf.constant(mean),
            tf.constant(std),
            autoregressive,
            config.horizon,
            step=step,
            intervals=intervals,
        )

    starts = range(0, len(origins), ONNX_CHECK_BATCH)
    return onnx_export.export(
        path,
        serve,
        serving_signature(config, None),
        model.weights,
        metadata=_metadata(config, name, prepared, "batch", intervals),
        batches=[{key: value[start : start + ONNX_CHECK_BATCH] for key, value in inputs.items()} for start in starts],
        expected=[
            {key: value[start : start + ONNX_CHECK_BATCH] for key, value in expected.items()} for start in starts
        ],
        expected_recurrent=onnx_export.expected_operators(
            _recurrent_layers(model), calls=config.horizon if autoregressive else 1
        ),
    )
