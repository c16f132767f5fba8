"""Exports of a trained forecaster (a SavedModel or a `.tflite` model): a window in original units in, the forecast out."""

import os

import keras
import numpy as np
import tensorflow as tf

from zoo import cells, litert
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
    """Export model `name` as a SavedModel (signature `serving_default`).

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
    return export_saved_model(module, path, signatures={"serving_default": module.serve}, verify=verify)


def _litert_network(model):
    """The forecaster's network with its recurrent layer rebuilt by `litert.recurrent` (others called as they are)."""
    recurrent_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    if not recurrent_layers:
        return lambda windows: model(windows, training=False)
    (recurrent,) = recurrent_layers
    center, add_last = model.get_layer("center"), model.layers[-1]  # AddLastStep
    changes = model.get_layer(index=len(model.layers) - 2)  # the Dense layer before it

    def network(windows):
        return add_last(changes(litert.recurrent(recurrent, center(windows))), windows)

    return network


def export_litert(config, workdir, name, path=None, *, series=None, batch_size=1):
    """Write model `name` as a `.tflite` model: `batch_size` windows in original units -> their forecasts.

    Signature `serving_default(window: float32[batch_size, window] (or
    [batch_size, window, features]) -> {forecast: float32[batch_size,
    horizon]}`, normalisation included. Before it replaces an earlier file,
    the written model must give the trained model's forecasts on every
    validation window, to 1e-5 (relative beyond magnitude 1, see `litert.compare`).
    Returns the report of `litert.export` (path `WORKDIR/export/NAME.tflite`
    by default).
    """
    require_int("batch_size", batch_size, minimum=1)
    name = _trained_name(config, name)
    prepared = prepare(config, series)
    model = load_trained(workdir, name)
    origins = prepared.split.origins("validation", config.window, config.horizon)
    raw_windows = windows_at(prepared.series.values, origins, config.window).astype(np.float32)
    expected = prepared.normalizer.denormalize_target(
        neural_forecast(model, name, windows_at(prepared.normalized, origins, config.window), config.horizon)
    ).astype(np.float32)
    if config.features == 1:
        raw_windows = raw_windows[:, :, 0]
    window_batches, _ = litert.in_batches(raw_windows, batch_size)
    forecast_batches, _ = litert.in_batches(expected, batch_size)
    mean = tf.constant(prepared.normalizer.mean, tf.float32)
    std = tf.constant(prepared.normalizer.std, tf.float32)
    network, autoregressive = _litert_network(model), is_autoregressive(name)

    def serve(window):
        return serve_forecast(network, window, mean, std, autoregressive, config.horizon)

    shape = [batch_size, config.window] + ([] if config.features == 1 else [config.features])
    metadata = {
        "task": "forecast",
        "model": name,
        "inputs": {"window": f"float32{shape}: the last {config.window} observations, in original units"},
        "outputs": {"forecast": f"float32[{batch_size}, {config.horizon}]: the next {config.horizon} target values"},
        "columns": list(prepared.series.columns),
    }
    return litert.export(
        path or os.path.join(workdir, "export", f"{name}.tflite"),
        serve,
        [tf.TensorSpec(shape, tf.float32, name="window")],
        model.weights,
        metadata=metadata,
        batches=[{"window": batch} for batch in window_batches],
        expected=[{"forecast": batch} for batch in forecast_batches],
    )
