"""Train, evaluate and export forecasters in a work directory.

Layout of a work directory:

    config.json                    the run's ForecastConfig
    models/<name>/checkpoints/     last.keras, best.keras (lowest validation loss)
    models/<name>/logs/            TensorBoard logs
    models/<name>/training.json    history and wall time of a finished model
    metrics.json                   every model's test metrics (overall and per step)
    forecast.png                   test forecasts against the truth
    export/<name>/                 SavedModel: window in original units -> forecast in original units

`log` arguments take a callable for progress lines (e.g. `print`); the
default is silent.
"""

import dataclasses
import importlib.util
import os
import time

import keras
import numpy as np
import tensorflow as tf

from zoo import training
from zoo.distribute import get_strategy, is_chief
from zoo.export import export_saved_model
from zoo.files import atomic_path, atomic_write_json, read_json
from zoo.forecast import baselines
from zoo.forecast.data import Normalizer, chronological_split, load_series, targets_at, windows_at
from zoo.forecast.models import autoregressive_rollout, build, is_autoregressive

MODELS_DIR = "models"
BASELINE_NAMES = ("last_value", "seasonal_naive", "linear_ar", "holt_winters", "harmonic_arima")


def _silent(_message):
    pass


@dataclasses.dataclass
class PreparedSeries:
    """A loaded series with its split, training-part statistics and period."""

    series: object
    split: object
    normalizer: Normalizer
    normalized: np.ndarray  # (time, features), normalised with training-part statistics
    season_period: int
    season_period_inferred: bool
    mase_scale: float


def prepare(config, series=None):
    """Load (unless `series` is given), split, normalise and find the period.

    Every statistic (mean, std, seasonal period, MASE scale) comes from the
    training part only.
    """
    series = load_series(config) if series is None else series
    split = chronological_split(
        len(series.values), config.validation_fraction, config.test_fraction, config.window, config.horizon
    )
    training_values = series.values[: split.train_end]
    normalizer = Normalizer.fit(training_values, series.columns)
    inferred = config.season_period == 0
    period = baselines.infer_season_period(training_values[:, 0]) if inferred else config.season_period
    if period >= split.train_end // 2:
        raise ValueError(
            f"Received `season_period={period}`, but the training part has only {split.train_end} steps; "
            "it needs at least two seasons."
        )
    return PreparedSeries(
        series=series,
        split=split,
        normalizer=normalizer,
        normalized=normalizer.normalize(series.values).astype(np.float32),
        season_period=period,
        season_period_inferred=inferred,
        mase_scale=baselines.seasonal_naive_scale(training_values[:, 0], period),
    )


def supervised_arrays(prepared, config, name, part):
    """(inputs, targets) for training model `name` on `part`, in normalised units.

    Single-shot models learn all `horizon` target steps; autoregressive ones
    learn the next step of every feature.
    """
    horizon = 1 if is_autoregressive(name) else config.horizon
    origins = prepared.split.origins(part, config.window, horizon)
    inputs = windows_at(prepared.normalized, origins, config.window)
    if is_autoregressive(name):
        targets = prepared.normalized[origins + 1]
    else:
        targets = targets_at(prepared.normalized[:, 0], origins, config.horizon)
    return inputs, targets


def _dataset(inputs, targets, batch_size, shuffle_seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(inputs), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def model_dir(workdir, name):
    return os.path.join(workdir, MODELS_DIR, name)


def train(config, workdir, *, resume=False, strategy="default", verbose=0, log=_silent, series=None):
    """Train every model in `config.models`; returns {name: training summary}.

    A finished model (training.json written) is skipped on `resume`; an
    interrupted one continues from its backup.
    """
    config.validate()
    models_root = os.path.join(workdir, MODELS_DIR)
    if not resume and os.path.isdir(models_root) and os.listdir(models_root):
        raise ValueError(
            f"The work directory {workdir!r} already holds trained models. Pass --resume to continue, "
            "or choose another --workdir."
        )
    config = training.prepare_workdir(workdir, config, resume=resume)
    prepared = prepare(config, series)
    log(
        f"series: {prepared.series.name}, {prepared.split.length} steps "
        f"(train {prepared.split.train_end}, validation {prepared.split.validation_end - prepared.split.train_end}, "
        f"test {prepared.split.length - prepared.split.validation_end}); missing values filled: "
        f"{prepared.series.filled}; season period {prepared.season_period}"
        f"{' (inferred)' if prepared.season_period_inferred else ''}"
    )
    summaries = {}
    # One strategy for all models: a MultiWorkerMirroredStrategy is created once per process.
    distribution = get_strategy(strategy)
    for name in config.models:
        directory = model_dir(workdir, name)
        summary_path = os.path.join(directory, "training.json")
        if resume and os.path.exists(summary_path):
            log(f"{name}: already trained, skipped")
            summaries[name] = read_json(summary_path)
            continue
        # The same seed for every model, so one model's numbers do not depend on which others ran first.
        training.set_seed(config.seed)
        train_inputs, train_targets = supervised_arrays(prepared, config, name, "train")
        validation_inputs, validation_targets = supervised_arrays(prepared, config, name, "validation")
        with distribution.scope():
            model = build(name, config)
        log(f"{name}: {model.count_params()} parameters, {len(train_inputs)} training windows")
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)]
        if config.plateau_patience:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.plateau_patience, verbose=0)
            )
        result = training.fit(
            model,
            _dataset(train_inputs, train_targets, config.batch_size, shuffle_seed=config.seed),
            workdir=directory,
            epochs=config.epochs,
            validation_data=_dataset(validation_inputs, validation_targets, 256),
            max_minutes=config.max_minutes,
            callbacks=callbacks,
            verbose=verbose,
            # TensorBoard logs need the tensorboard package, which TensorFlow no longer always brings.
            tensorboard=importlib.util.find_spec("tensorboard") is not None,
        )
        validation_losses = result["history"].get("val_loss", [])
        summary = {
            "epochs": len(result["history"].get("loss", [])),
            "seconds": result["seconds"],
            "time_budget_exhausted": result["time_budget_exhausted"],
            "best_validation_loss": min(validation_losses) if validation_losses else None,
            "history": result["history"],
        }
        if is_chief():
            atomic_write_json(summary_path, summary)
        log(
            f"{name}: {summary['epochs']} epochs in {summary['seconds']:.0f}s, best validation loss "
            f"{summary['best_validation_loss']:.4f}{' (time budget reached)' if summary['time_budget_exhausted'] else ''}"
        )
        summaries[name] = summary
    return summaries


def load_trained(workdir, name):
    path = os.path.join(model_dir(workdir, name), training.CHECKPOINT_DIR, "best.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No trained {name!r} model in {workdir!r} (expected {path}); run `train` with this --workdir first."
        )
    return keras.saving.load_model(path, safe_mode=True)


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


def evaluate(config, workdir, *, log=_silent, series=None, plot=True):
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
        "models": {name: baselines.forecast_errors(forecast, truth, prepared.mase_scale) for name, forecast in forecasts.items()},
        "evaluation_seconds": time.monotonic() - started,
    }
    if is_chief():
        if plot:
            metrics["plot"] = plot_forecasts(os.path.join(workdir, "forecast.png"), prepared, origins, truth, forecasts, config)
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
            axis.plot(origins[row] + np.arange(1, config.horizon + 1), forecasts[name][row], color="tab:red", linewidth=1.0)
        mase = float(np.mean(np.abs(forecasts[name] - truth)) / prepared.mase_scale)
        axis.set_title(f"{name}  (MASE {mase:.3f})", fontsize=9)
    for axis in axes.ravel()[len(names) :]:
        axis.set_visible(False)
    figure.suptitle(f"{prepared.series.name}: test forecasts ({config.horizon} steps from every {config.horizon}th origin)")
    figure.supxlabel("time step")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    pyplot.close(figure)
    return path


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
    Returns the export path.
    """
    if name not in config.models:
        raise ValueError(f"Received an invalid value for `model`: {name!r}; this run trained {list(config.models)}.")
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
            raise RuntimeError(f"The exported {name!r} model disagrees with the trained one; the export was not written.")

    path = path or os.path.join(workdir, "export", name)
    return export_saved_model(module, path, signatures={"serving_default": module.serve}, verify=verify)
