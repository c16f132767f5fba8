"""Training the neural forecasters in a work directory (`evaluate` and `export` read it).

Layout of a work directory:

    config.json                    the run's ForecastConfig
    models/<name>/checkpoints/     last.keras, best.keras (lowest validation loss)
    models/<name>/logs/            TensorBoard logs
    models/<name>/training.json    history, wall time and seconds per epoch of a finished model
    models/<name>/member-<k>/      with `seeds` > 1: member k's checkpoints, logs and training.json
                                   (seed `seed + 1000 * (k - 1)`); models/<name>/checkpoints/best.keras
                                   is then the ensemble, which averages the members' outputs
    metrics.json                   every model's test metrics (overall and per step)
    forecast.png                   test forecasts against the truth
    export/<name>/                 SavedModel: window in original units -> forecast in original units

`log` arguments take a callable for progress lines (e.g. `print`); the
default is silent.
"""

import contextlib
import dataclasses
import os

import keras
import numpy as np

from zoo import checkpoints, training
from zoo import workdir as workdir_lib
from zoo.callbacks import chief_writes
from zoo.distribute import get_strategy, is_chief
from zoo.files import atomic_write_json, read_json
from zoo.forecast.config import ENSEMBLE_SEED_STRIDE, is_autoregressive
from zoo.forecast.data import prepare, targets_at, windows_at, windows_dataset
from zoo.forecast.model import build_ensemble, build_model

MODELS_DIR = "models"


def supervised_arrays(prepared, config, name, part):
    """(inputs, targets) for training model `name` on `part`, in normalised units.

    Single-shot models learn all `horizon` target steps; autoregressive ones
    learn the next step of every channel. `inputs` is the windows, or
    (windows, steps) when the config's models read each window's position
    (`config.uses_steps`).
    """
    horizon = 1 if is_autoregressive(name) else config.horizon
    origins = prepared.split.origins(part, config.window, horizon)
    windows = windows_at(prepared.normalized, origins, config.window)
    if is_autoregressive(name):
        targets = prepared.normalized[origins + 1]
    else:
        targets = targets_at(prepared.normalized[:, 0], origins, config.horizon)
    return (windows, window_steps(origins)) if config.uses_steps else windows, targets


def window_steps(origins):
    """The `step` input of the windows ending at `origins`: their positions in the series, float32."""
    return np.asarray(origins, dtype=np.float32)


def model_dir(workdir, name):
    return os.path.join(workdir, MODELS_DIR, name)


def member_dir(workdir, name, member):
    """Where ensemble member `member` (1-based) of model `name` trains."""
    return os.path.join(model_dir(workdir, name), f"member-{member}")


def train(config, workdir, *, resume=False, strategy="default", verbose=0, log=training.silent, series=None):
    """Train every model in `config.models`; returns {name: training summary}.

    A finished model (training.json written) is skipped on `resume`; an
    interrupted one continues from its backup, and `log` gets
    "<name>: resuming from epoch E, batch B (backup of <time>)" (or, on
    `resume` without a backup, "<name>: nothing to resume: starting fresh").
    """
    (summaries,) = train_interleaved(
        [(config, workdir, log)], resume=resume, strategy=strategy, verbose=verbose, series=series
    )
    return summaries


def train_interleaved(runs, *, resume=False, strategy="default", verbose=0, series=None):
    """Train several runs' models one model at a time: model 1 of every run, then model 2, ...

    `runs` is a list of `(config, workdir, log)`. Each run is trained as
    `train` trains it (its own work directory, config and log); a model
    name is trained in every run whose `models` hold it, in turn, the
    order of the runs reversed at every other name. Runs that differ only
    in `implementation` are then timed under the same load (a shared
    machine's load changes over minutes). Returns a list of
    {name: training summary}, one per run.
    """
    for config, _, _ in runs:
        config.validate()
    with contextlib.ExitStack() as stack:
        for _, workdir, _ in runs:
            stack.enter_context(workdir_lib.locked(workdir, hold=is_chief()))
        opened = [_open_run(config, workdir, resume, log, series) for config, workdir, log in runs]
        # One strategy for all models: a MultiWorkerMirroredStrategy is created once per process.
        distribution = get_strategy(strategy)
        names = []
        for config, _, _ in opened:
            names += [name for name in config.models if name not in names]
        summaries = [{} for _ in runs]
        for position, name in enumerate(names):
            order = list(range(len(runs)))[:: -1 if position % 2 else 1]
            for index in order:
                config, workdir, prepared = opened[index]
                if name in config.models:
                    summaries[index][name] = _train_model(
                        config, workdir, prepared, name, distribution, resume, verbose, runs[index][2]
                    )
    # In each run's own order of `models`.
    return [{name: summary[name] for name in config.models} for summary, (config, _, _) in zip(summaries, opened)]


def _input_fingerprints(config, given, loaded):
    """The CSV file's fingerprint when the series came from `config.csv_path`, else the loaded values'."""
    if config.csv_path and given is None:
        return {f"the CSV file {config.csv_path!r}": workdir_lib.fingerprint_file(config.csv_path)}
    return {f"the series {loaded.name!r}": workdir_lib.fingerprint_bytes(loaded.values.tobytes())}


def _open_run(config, workdir, resume, log, series):
    """Check and prepare `workdir` for `config`, load the series; (the saved config, workdir, prepared data)."""
    workdir_lib.refuse_existing_run(workdir, (MODELS_DIR,), resume=resume, holds="a run with trained models")
    prepared = prepare(config, series)
    inputs = _input_fingerprints(config, series, prepared.series)
    config = workdir_lib.prepare_workdir(workdir, config, resume=resume, inputs=inputs)
    log(
        f"series: {prepared.series.name}, {prepared.split.length} steps "
        f"(train {prepared.split.train_end}, validation {prepared.split.validation_end - prepared.split.train_end}, "
        f"test {prepared.split.length - prepared.split.validation_end}); missing values filled: "
        f"{prepared.series.filled}; season period {prepared.season_period}"
        f"{' (inferred)' if prepared.season_period_inferred else ''}"
    )
    return config, workdir, prepared


def _train_model(config, workdir, prepared, name, distribution, resume, verbose, log):
    """Train model `name` of the run in `workdir` (or reuse it, finished, on `resume`); its training summary.

    With `config.seeds` > 1 the model is an ensemble (`_train_ensemble`).
    """
    directory = model_dir(workdir, name)
    summary_path = os.path.join(directory, "training.json")
    if resume and os.path.exists(summary_path):
        log(f"{name}: already trained, skipped")
        return read_json(summary_path)
    if config.seeds == 1:
        summary = _fit_model(config, prepared, name, directory, distribution, verbose, log, resume)
    else:
        summary = _train_ensemble(config, prepared, workdir, name, distribution, verbose, log, resume)
    if is_chief():
        atomic_write_json(summary_path, summary)
    return summary


def _train_ensemble(config, prepared, workdir, name, distribution, verbose, log, resume):
    """Train `config.seeds` members of `name`, each in its `member_dir`, and save their average as the model.

    Member k trains with seed `config.seed + 1000 * (k - 1)`; a finished
    member (its training.json written) is reused on `resume`. The ensemble
    is written to `models/<name>/checkpoints/best.keras`, where evaluation
    and export look for a model.
    """
    members = []
    for member in range(1, config.seeds + 1):
        directory = member_dir(workdir, name, member)
        label = f"{name} member {member}/{config.seeds}"
        summary_path = os.path.join(directory, "training.json")
        if resume and os.path.exists(summary_path):
            log(f"{label}: finished earlier, reusing {directory}")
            members.append(read_json(summary_path))
            continue
        member_config = dataclasses.replace(config, seed=config.seed + ENSEMBLE_SEED_STRIDE * (member - 1), seeds=1)
        members.append(_fit_model(member_config, prepared, name, directory, distribution, verbose, log, resume, label))
        if is_chief():
            atomic_write_json(summary_path, members[-1])
    models = [
        checkpoints.load_model(os.path.join(member_dir(workdir, name, member), training.CHECKPOINT_DIR, "best.keras"))
        for member in range(1, config.seeds + 1)
    ]
    ensemble = build_ensemble(models, name=f"forecast_{name.replace('-', '_')}_ensemble")
    with chief_writes(os.path.join(model_dir(workdir, name), training.CHECKPOINT_DIR, "best.keras")) as temporary:
        ensemble.save(temporary)
    log(f"{name}: ensemble of {config.seeds} members saved")
    return {
        "epochs": [entry["epochs"] for entry in members],
        "seconds": sum(entry["seconds"] for entry in members),
        "time_budget_exhausted": any(entry["time_budget_exhausted"] for entry in members),
        "best_validation_loss": [entry["best_validation_loss"] for entry in members],
        "members": members,
    }


def _fit_model(config, prepared, name, directory, distribution, verbose, log, resume, label=None):
    """Train one model `name` with `config.seed` in `directory`; returns its training summary."""
    label = label or name
    # The same seed for every model, so one model's numbers do not depend on which others ran first.
    training.set_seed(config.seed)
    train_inputs, train_targets = supervised_arrays(prepared, config, name, "train")
    validation_inputs, validation_targets = supervised_arrays(prepared, config, name, "validation")
    with distribution.scope():
        model = build_model(config, name, prepared.seasonality)
    log(f"{label}: {model.count_params()} parameters, {len(train_targets)} training windows")
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)]
    if config.plateau_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=config.plateau_patience, verbose=0
            )
        )
    result = training.fit(
        model,
        windows_dataset(train_inputs, train_targets, config.batch_size, shuffle_seed=config.seed),
        workdir=directory,
        epochs=config.epochs,
        validation_data=windows_dataset(validation_inputs, validation_targets, 256),
        max_minutes=config.max_minutes,
        callbacks=callbacks,
        verbose=verbose,
        tensorboard=training.tensorboard_available(),
        log=training.prefixed(log, label),
        resume=resume,
        divergence_factor=config.divergence_factor,
    )
    validation_losses = result["history"].get("val_loss", [])
    summary = {
        "epochs": len(result["history"].get("loss", [])),
        "seconds": result["seconds"],
        "epoch_seconds": result["epoch_seconds"],
        "time_budget_exhausted": result["time_budget_exhausted"],
        "best_validation_loss": min(validation_losses) if validation_losses else None,
        "history": result["history"],
    }
    log(
        f"{label}: {summary['epochs']} epochs in {summary['seconds']:.0f}s, best validation loss "
        f"{summary['best_validation_loss']:.4f}{' (time budget reached)' if summary['time_budget_exhausted'] else ''}"
    )
    return summary
