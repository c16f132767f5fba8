"""Scoring every forecaster on the same test windows: metrics.json and forecast.png."""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from zoo import checkpoints, training
from zoo.distribute import is_chief
from zoo.errors import UserFileNotFoundError
from zoo.files import atomic_path, atomic_write_json
from zoo.forecast import baselines
from zoo.forecast.config import is_autoregressive
from zoo.forecast.data import prepare, targets_at, windows_at
from zoo.forecast.model import autoregressive_rollout
from zoo.forecast.train import model_dir


def load_trained(workdir, name):
    path = os.path.join(model_dir(workdir, name), training.CHECKPOINT_DIR, "best.keras")
    if not os.path.exists(path):
        raise UserFileNotFoundError(
            f"No trained {name!r} model in {workdir!r} (expected {path}); run `train` with this --workdir first."
        )
    return checkpoints.load_model(path)


def neural_forecast(model, name, normalized_windows, horizon, batch_size=512):
    """Forecasts in normalised units, (windows, horizon)."""
    outputs = []
    for start in range(0, len(normalized_windows), batch_size):
        batch = tf.convert_to_tensor(normalized_windows[start : start + batch_size])
        if is_autoregressive(name):
            forecast = autoregressive_rollout(lambda windows: model(windows, training=False), batch, horizon)
        else:
            forecast = model(batch, training=False)
        outputs.append(keras.ops.convert_to_numpy(forecast))
    return np.concatenate(outputs, axis=0)


def baseline_forecasts(prepared, config, origins):
    """The baselines' forecasts from `origins`, in original units, and notes."""
    target = prepared.series.target
    horizon = config.horizon
    forecasts = {
        "last_value": baselines.last_value_forecast(target, origins, horizon),
        "seasonal_naive": baselines.seasonal_naive_forecast(target, origins, horizon, prepared.season_period),
    }
    normalized_target = prepared.normalized[:, 0].astype(np.float64)
    autoregression = baselines.LinearAutoregression(config.window).fit(normalized_target[: prepared.split.train_end])
    forecasts["linear_ar"] = prepared.normalizer.denormalize_target(
        autoregression.forecast(windows_at(normalized_target, origins, config.window), horizon)
    )
    notes = {"linear_ar": f"AR({config.window}) with intercept, least squares on the training part, recursive rollout"}
    for name in config.classical_models:
        if not baselines.is_statsmodels_available():
            notes[name] = "skipped: statsmodels is not installed (`pip install statsmodels`)"
        elif name == "holt_winters":
            forecasts[name], notes[name], notes[f"{name}_parameters"] = baselines.holt_winters_forecasts(
                target, prepared.split.train_end, origins, horizon, prepared.season_period, config.classical_trend
            )
        elif name == "harmonic_arima":
            period = baselines.refine_season_period(target[: prepared.split.train_end], prepared.season_period)
            forecasts[name], notes[name], notes[f"{name}_parameters"] = baselines.harmonic_arima_forecasts(
                target, prepared.split.train_end, origins, horizon, period
            )
    return forecasts, notes


def evaluate(config, workdir, *, log=training.silent, series=None, plot=True):
    """Every model on the same test windows; writes metrics.json and forecast.png.

    Returns the metrics dict written to metrics.json.
    """
    prepared = prepare(config, series)
    origins = prepared.split.origins("test", config.window, config.horizon)
    truth = targets_at(prepared.series.target, origins, config.horizon)
    started = time.monotonic()
    forecasts, notes = baseline_forecasts(prepared, config, origins)
    normalized_windows = windows_at(prepared.normalized, origins, config.window)
    for name in config.models:
        model = load_trained(workdir, name)
        forecasts[name] = prepared.normalizer.denormalize_target(
            neural_forecast(model, name, normalized_windows, config.horizon)
        )
    split = prepared.split
    metrics = {
        "series": prepared.series.name,
        "steps": split.length,
        "split": {
            "train": split.train_end,
            "validation": split.validation_end - split.train_end,
            "test": split.length - split.validation_end,
        },
        "missing_policy": config.missing,
        "missing_filled": prepared.series.filled,
        "rows_trimmed_at_ends": prepared.series.trimmed,
        "window": config.window,
        "horizon": config.horizon,
        "test_windows": len(origins),
        "season_period": prepared.season_period,
        "season_period_inferred": prepared.season_period_inferred,
        "mase_scale": prepared.mase_scale,
        "notes": notes,
        "models": {
            name: baselines.forecast_errors(forecast, truth, prepared.mase_scale)
            for name, forecast in forecasts.items()
        },
        "evaluation_seconds": time.monotonic() - started,
    }
    if is_chief():
        if plot:
            metrics["plot"] = plot_forecasts(
                os.path.join(workdir, "forecast.png"), prepared, origins, truth, forecasts, config
            )
        atomic_write_json(os.path.join(workdir, "metrics.json"), metrics)
        log(f"wrote {os.path.join(workdir, 'metrics.json')}")
    else:
        log("metrics and plots are written by the chief worker")
    return metrics


def plot_forecasts(path, prepared, origins, truth, forecasts, config):
    """One panel per model: the test truth and forecasts from non-overlapping origins."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return "skipped: the plot needs matplotlib (`pip install matplotlib`)"
    names = list(forecasts)
    columns = 2
    rows = (len(names) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows, columns, figsize=(12, 2.6 * rows), sharex=True, sharey=True, squeeze=False)
    steps = np.arange(prepared.split.validation_end, prepared.split.length)
    chosen = np.arange(0, len(origins), config.horizon)
    for axis, name in zip(axes.ravel(), names):
        axis.plot(steps, prepared.series.target[steps], color="black", linewidth=0.8, label="truth")
        for row in chosen:
            axis.plot(
                origins[row] + np.arange(1, config.horizon + 1), forecasts[name][row], color="tab:red", linewidth=1.0
            )
        mase = float(np.mean(np.abs(forecasts[name] - truth)) / prepared.mase_scale)
        axis.set_title(f"{name}  (MASE {mase:.3f})", fontsize=9)
    for axis in axes.ravel()[len(names) :]:
        axis.set_visible(False)
    figure.suptitle(
        f"{prepared.series.name}: test forecasts ({config.horizon} steps from every {config.horizon}th origin)"
    )
    figure.supxlabel("time step")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    pyplot.close(figure)
    return path
