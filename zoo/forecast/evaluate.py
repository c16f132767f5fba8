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
from zoo.forecast.config import INTERVAL_LEVELS, INTERVAL_QUANTILES, QUANTILES, is_autoregressive
from zoo.forecast.data import prepare, targets_at, windows_at
from zoo.forecast.model import autoregressive_rollout, ensemble_members, model_inputs
from zoo.forecast.train import model_dir, window_steps


def load_trained(workdir, name):
    path = os.path.join(model_dir(workdir, name), training.CHECKPOINT_DIR, "best.keras")
    if not os.path.exists(path):
        raise UserFileNotFoundError(
            f"No trained {name!r} model in {workdir!r} (expected {path}); run `train` with this --workdir first."
        )
    return checkpoints.load_model(path)


def neural_forecast(model, name, normalized_windows, horizon, steps=None, batch_size=512):
    """Forecasts in normalised units: (windows, horizon), or (windows, horizon, quantiles) from quantile heads.

    `steps` (each window's last position in the series) is needed by the
    models that read it (`ForecastConfig.uses_steps`).
    """
    outputs = []
    for start in range(0, len(normalized_windows), batch_size):
        batch = tf.convert_to_tensor(normalized_windows[start : start + batch_size])
        batch_steps = None if steps is None else tf.convert_to_tensor(steps[start : start + batch_size])
        if is_autoregressive(name):
            forecast = autoregressive_rollout(lambda inputs: model(inputs, training=False), batch, horizon, batch_steps)
        else:
            forecast = model(model_inputs(batch, batch_steps), training=False)
        outputs.append(keras.ops.convert_to_numpy(forecast))
    return np.concatenate(outputs, axis=0)


def forecast_outputs(model, name, config, prepared, origins):
    """The model's outputs for the windows ending at `origins`, in original units (see `neural_forecast`)."""
    windows = windows_at(prepared.normalized, origins, config.window)
    steps = window_steps(origins) if config.uses_steps else None
    return prepared.normalizer.denormalize_target(neural_forecast(model, name, windows, config.horizon, steps))


def point_forecast(model, name, config, prepared, origins):
    """The model's point forecasts (the median of quantile outputs) in original units."""
    outputs = forecast_outputs(model, name, config, prepared, origins)
    return quantile_bounds(outputs)[0] if config.intervals == "quantile" else outputs


def quantile_bounds(outputs):
    """(median, {level: (lower, upper)}) from quantile outputs (..., quantiles) ordered as `QUANTILES`."""
    bounds = {
        level: (outputs[..., QUANTILES.index(low)], outputs[..., QUANTILES.index(high)])
        for level, (low, high) in INTERVAL_QUANTILES.items()
    }
    return outputs[..., QUANTILES.index(0.5)], bounds


def conformal_widths(model, name, config, prepared):
    """Half-widths {level: (horizon,)} in original units from the model's errors on every validation window."""
    origins = prepared.split.origins("validation", config.window, config.horizon)
    forecasts = forecast_outputs(model, name, config, prepared, origins)
    truth = targets_at(prepared.series.target, origins, config.horizon)
    return baselines.conformal_half_widths(forecasts - truth, INTERVAL_LEVELS)


def neural_forecasts(model, name, config, prepared, origins, widths=None):
    """(point forecasts (windows, horizon), intervals {level: (lower, upper)}, note) in original units.

    The intervals follow `config.intervals`: the quantile heads' outer
    quantiles, or split conformal half-widths from the validation windows
    around the point forecast (`widths`, from `conformal_widths`, where the
    caller has them already), or none ({}).
    """
    outputs = forecast_outputs(model, name, config, prepared, origins)
    if config.intervals == "quantile":
        point, bounds = quantile_bounds(outputs)
        return point, bounds, "intervals: the quantile heads' 2.5/10/90/97.5% outputs, median as the forecast"
    if config.intervals == "conformal":
        widths = conformal_widths(model, name, config, prepared) if widths is None else widths
        validation = len(prepared.split.origins("validation", config.window, config.horizon))
        bounds = {level: (outputs - width, outputs + width) for level, width in widths.items()}
        return (
            outputs,
            bounds,
            f"intervals: split conformal, per-step |error| quantiles over {validation} validation windows",
        )
    return outputs, {}, "intervals: none"


def baseline_forecasts(prepared, config, origins):
    """The baselines' forecasts from `origins`, in original units, notes, and intervals.

    Returns (forecasts, notes, intervals); `intervals` maps a model that
    gives them (the harmonic regression) to {level: (lower, upper)}.
    """
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
    intervals = {}
    for name in config.classical_models:
        if not baselines.is_statsmodels_available():
            notes[name] = "skipped: statsmodels is not installed (`pip install statsmodels`)"
        elif name == "holt_winters":
            forecasts[name], notes[name], notes[f"{name}_parameters"] = baselines.holt_winters_forecasts(
                target, prepared.split.train_end, origins, horizon, prepared.season_period, config.classical_trend
            )
        elif name == "harmonic_arima":
            period = baselines.refine_season_period(target[: prepared.split.train_end], prepared.season_period)
            forecasts[name], notes[name], notes[f"{name}_parameters"], intervals[name] = (
                baselines.harmonic_arima_forecasts(
                    target,
                    prepared.split.train_end,
                    origins,
                    horizon,
                    period,
                    harmonics=config.harmonics,
                    levels=INTERVAL_LEVELS,
                )
            )
    return forecasts, notes, intervals


def evaluate(config, workdir, *, log=training.silent, series=None, plot=True):
    """Every model on the same test windows; writes metrics.json and forecast.png.

    Returns the metrics dict written to metrics.json.
    """
    prepared = prepare(config, series)
    origins = prepared.split.origins("test", config.window, config.horizon)
    truth = targets_at(prepared.series.target, origins, config.horizon)
    started = time.monotonic()
    forecasts, notes, intervals = baseline_forecasts(prepared, config, origins)
    member_mase = {}
    for name in config.models:
        model = load_trained(workdir, name)
        forecasts[name], intervals[name], notes[name] = neural_forecasts(model, name, config, prepared, origins)
        members = ensemble_members(model)
        if len(members) > 1:
            member_mase[name] = [
                baselines.forecast_errors(
                    point_forecast(member, name, config, prepared, origins), truth, prepared.mase_scale
                )["mase"]
                for member in members
            ]
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
        "interval_levels": list(INTERVAL_LEVELS),
        "models": {
            name: {
                **baselines.forecast_errors(forecast, truth, prepared.mase_scale),
                **baselines.interval_scores(intervals.get(name, {}), truth),
            }
            for name, forecast in forecasts.items()
        },
        # Each ensemble member's own test MASE, in member order (seeds > 1).
        "member_mase": member_mase,
        "evaluation_seconds": time.monotonic() - started,
    }
    if is_chief():
        if plot:
            metrics["plot"] = plot_forecasts(
                os.path.join(workdir, "forecast.png"), prepared, origins, truth, forecasts, config, intervals
            )
        atomic_write_json(os.path.join(workdir, "metrics.json"), metrics)
        log(f"wrote {os.path.join(workdir, 'metrics.json')}")
    else:
        log("metrics and plots are written by the chief worker")
    return metrics


def plot_forecasts(path, prepared, origins, truth, forecasts, config, intervals=None):
    """One panel per model: the test truth and forecasts from non-overlapping origins, with intervals where given.

    `intervals` maps a model to {level: (lower, upper)}; each level is drawn
    as a band around that model's forecasts (the widest lightest).
    """
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
    intervals = intervals or {}
    for axis, name in zip(axes.ravel(), names):
        bands = sorted(intervals.get(name, {}).items(), reverse=True)
        for row in chosen:
            future = origins[row] + np.arange(1, config.horizon + 1)
            for shade, (level, (lower, upper)) in enumerate(bands):
                axis.fill_between(
                    future,
                    lower[row],
                    upper[row],
                    color="tab:red",
                    alpha=0.15 + 0.15 * shade,
                    linewidth=0,
                    label=f"{baselines.level_name(level)}% interval" if row == chosen[0] else None,
                )
            axis.plot(future, forecasts[name][row], color="tab:red", linewidth=1.0)
        axis.plot(steps, prepared.series.target[steps], color="black", linewidth=0.8, label="truth")
        mase = float(np.mean(np.abs(forecasts[name] - truth)) / prepared.mase_scale)
        title = f"{name}  (MASE {mase:.3f}"
        for level, (lower, upper) in sorted(intervals.get(name, {}).items()):
            covered = float(np.mean((truth >= lower) & (truth <= upper)))
            title += f", {baselines.level_name(level)}% covers {100 * covered:.0f}%"
        axis.set_title(title + ")", fontsize=9)
        if bands:
            axis.legend(fontsize=7, loc="upper left")
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
