"""SavedModel export of a trained forecaster: a window in original units in, the forecast out."""

import os

import numpy as np
import tensorflow as tf

from zoo import cells
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
        if self.features == 1:
            window = window[:, :, None]
        normalized = (window - self.mean) / self.std
        if self.autoregressive:
            forecast = autoregressive_rollout(lambda w: self.model(w, training=False), normalized, self.horizon)
        else:
            forecast = self.model(normalized, training=False)
        return {"forecast": forecast * self.std[0] + self.mean[0]}


def export(config, workdir, name, path=None, *, series=None):
    """Export model `name` as a SavedModel (signature `serving_default`).

    The export is checked before it replaces an earlier one: on the first
    test windows its forecasts must equal the in-process forecasts.
    Returns the export path. `name` may spell a cell differently from the
    run's `models` (`rnn` for a run that trained `simple_rnn`).
    """
    trained = [model for model in config.models if cells.canonical_name(model) == cells.canonical_name(name)]
    if not trained:
        raise UserError(f"Received an invalid value for `model`: {name!r}; this run trained {list(config.models)}.")
    name = trained[0]
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
