"""Training the sentiment models on a split or by cross-validation (scoring them with `evaluate`).

Everything a run writes goes under its work directory:

    <workdir>/checkpoints/, logs/        the recurrent model's training (zoo.training.fit)
    <workdir>/model.keras                the recurrent model that was evaluated (best epoch by `monitor`;
                                         for an ensemble, the average of the members)
    <workdir>/member-k/...               each ensemble member's training, when `ensemble > 1`
    <workdir>/baseline/...               the same for the bag-of-n-grams baseline
    <workdir>/folds/fold-01/...          per fold, when cross-validating, with its metrics.json

Functions report progress only through an optional `log` callable.
"""

import dataclasses
import functools
import os

import keras
import numpy as np
import tensorflow as tf

from zoo import cells as cell_names
from zoo import checkpoints, registry, training
from zoo.callbacks import chief_writes
from zoo.config import require_choice, require_int
from zoo.distribute import is_chief
from zoo.errors import UserError
from zoo.files import atomic_write_json, read_json
from zoo.sentiment.data import make_dataset, stratified_folds, stratified_split
from zoo.sentiment.evaluate import BASELINE_NAME, MODEL_FILE, report_model, summarize
from zoo.sentiment.model import build_ensemble, compile_model

MEMBER_SUMMARY_FILE = "member.json"  # written when an ensemble member has finished training


def fit_text_classifier(
    build,
    config,
    train,
    validation,
    workdir,
    *,
    epochs,
    learning_rate,
    verbose=0,
    strategy=None,
    monitor="val_loss",
    bucket_by_length=False,
    resume=False,
    log=training.silent,
):
    """Train `build()` with early stopping on `validation`; return (best model, fit result).

    The returned model is the checkpoint with the best `monitor` value
    (lowest validation loss, or highest validation accuracy), reloaded from
    disk (so it is exactly what `model.keras` will hold). `resume` and `log`
    go to `zoo.training.fit`, which logs whether and where training resumed.
    """
    training.set_seed(config.seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build()
        compile_model(model, learning_rate, config.clip_norm)
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    history_log = keras.callbacks.CSVLogger(os.path.join(workdir, "logs", "history.csv"), append=True)
    callbacks = [stopper, history_log]
    result = training.fit(
        model,
        make_dataset(train, config.batch_size, shuffle=True, seed=config.seed, bucket_by_length=bucket_by_length),
        workdir=workdir,
        epochs=epochs,
        validation_data=make_dataset(validation, config.batch_size),
        max_minutes=config.max_minutes,
        callbacks=callbacks,
        verbose=verbose,
        # Without the tensorboard package the per-epoch history still goes to logs/history.csv.
        tensorboard=training.tensorboard_available(),
        monitor=monitor,
        log=log,
        resume=resume,
        divergence_factor=config.divergence_factor,
    )
    result["monitor"] = monitor
    saved = os.path.join(workdir, MODEL_FILE)
    if result["already_finished"] and os.path.exists(saved):  # --resume on a finished run: keep what it wrote
        return checkpoints.load_model(saved), result
    if os.path.exists(result["best_checkpoint"]):
        model = checkpoints.load_model(result["best_checkpoint"])
    with chief_writes(os.path.join(workdir, MODEL_FILE)) as temporary:
        model.save(temporary)
    return model, result


def _training_summary(result):
    history = result["history"]
    monitor = result.get("monitor", "val_loss")
    values = history.get(monitor, [])
    best_index = (int(np.argmin(values)) if "loss" in monitor else int(np.argmax(values))) if values else None
    losses = history.get("val_loss", [])
    return {
        "epochs_run": len(history.get("loss", [])),
        "monitor": monitor,
        "best_epoch": None if best_index is None else best_index + 1,
        "best_val_loss": float(losses[best_index]) if losses and best_index is not None else None,
        "best_val_accuracy": float(history["val_accuracy"][best_index])
        if history.get("val_accuracy") and best_index is not None
        else None,
        "train_seconds": round(result["seconds"], 1),
        "epoch_seconds": [round(seconds, 3) for seconds in result["epoch_seconds"]],
        "time_budget_exhausted": result["time_budget_exhausted"],
    }


def member_splits(config, train, count=None):
    """The `(inner, validation)` subsets of `train` each of `count` members trains and stops early on.

    `count` defaults to `config.ensemble`. With `member_validation="shared"`
    every member gets the split the single model and the baseline use
    (`stratified_split(..., config.seed)`). With "disjoint", member k holds
    out the k-th disjoint slice of the same seeded shuffle, so member 1
    still matches the single model and every training example is trained
    on by all members but at most one.
    """
    count = config.ensemble if count is None else count
    parts = count if config.member_validation == "disjoint" else 1
    splits = []
    for part in range(parts):
        inner_indices, validation_indices = stratified_split(
            train.labels, config.validation_fraction, config.seed, part=part
        )
        splits.append((train.subset(inner_indices), train.subset(validation_indices)))
    return splits * (count if parts == 1 else 1)


def _train_members(config, build, splits, model_dir, train_options, *, name, label, log):
    """Train one seeded member per `(inner, validation)` pair of `splits` under `model_dir/member-k`; average them.

    `build(member_config, texts)` makes a member's model from its config
    and the texts its vocabulary comes from. Member k gets seed
    `config.seed + 1000 * (k - 1)`. Finished members (`member.json` beside
    `model.keras`) are reused, not trained again. Member k's resume line
    starts with "`label` member k/N: ".
    """
    members, summaries = [], []
    for index, (inner, validation) in enumerate(splits):
        member_config = dataclasses.replace(config, ensemble=1, seed=config.seed + 1000 * index)
        member_dir = os.path.join(model_dir, f"member-{index + 1}")
        model_path, summary_path = os.path.join(member_dir, MODEL_FILE), os.path.join(member_dir, MEMBER_SUMMARY_FILE)
        if os.path.exists(summary_path) and os.path.exists(model_path):
            log(f"  ensemble member {index + 1}/{len(splits)}: finished earlier, reusing {model_path}")
            members.append(checkpoints.load_model(model_path))
            summaries.append(read_json(summary_path))
            continue
        member = f"member {index + 1}/{len(splits)}"
        log(f"  ensemble {member} (seed {member_config.seed}) in {member_dir}")
        model, result = fit_text_classifier(
            functools.partial(build, member_config, inner.texts),
            member_config,
            inner,
            validation,
            member_dir,
            log=training.prefixed(log, f"{label} {member}"),
            **train_options,
        )
        members.append(model)
        summaries.append(_training_summary(result))
        if is_chief():
            atomic_write_json(summary_path, summaries[-1])
    ensemble = build_ensemble(members, name=f"sentiment_{name.replace('+', '_').replace('-', '_')}")
    with chief_writes(os.path.join(model_dir, MODEL_FILE)) as temporary:
        ensemble.save(temporary)
    summary = {
        "epochs_run": [entry["epochs_run"] for entry in summaries],
        "best_epoch": [entry["best_epoch"] for entry in summaries],
        "train_seconds": round(sum(entry["train_seconds"] for entry in summaries), 1),
        "epoch_seconds": [entry.get("epoch_seconds", []) for entry in summaries],
        "time_budget_exhausted": any(entry["time_budget_exhausted"] for entry in summaries),
        "monitor": train_options["monitor"],
    }
    return ensemble, summary, members


def _train_one_or_members(
    config, count, build, inner, validation, model_dir, train_options, *, splits, name, label, log
):
    """One model on `(inner, validation)` when `count` is 1, else `_train_members` (on `splits`, or all on that pair).

    `label` (default `name`) starts the lines that say whether and where each model's training resumed.
    """
    label = label or name
    if splits is not None and len(splits) != count:
        raise ValueError(f"Received {len(splits)} member split(s); expected one per ensemble member ({count}).")
    if count == 1:
        model, result = fit_text_classifier(
            lambda: build(config, inner.texts),
            config,
            inner,
            validation,
            model_dir,
            log=training.prefixed(log, label),
            **train_options,
        )
        return model, _training_summary(result), [model]
    return _train_members(
        config,
        build,
        splits or [(inner, validation)] * count,
        model_dir,
        train_options,
        name=name,
        label=label,
        log=log,
    )


def train_recurrent(
    config,
    num_classes,
    inner,
    validation,
    model_dir,
    *,
    verbose=0,
    strategy=None,
    log=training.silent,
    splits=None,
    resume=False,
    label=None,
):
    """Train the recurrent model of `config` (or its `ensemble` of seeded members) in `model_dir`.

    Returns `(model, summary, members)`: the model to evaluate (for an
    ensemble, one model averaging the members' probabilities, also saved as
    `model_dir/model.keras`), its training summary, and the list of member
    models (just `[model]` without an ensemble). Member k is trained in
    `model_dir/member-k` with seed `config.seed + 1000 * (k - 1)`, so member 1
    is exactly the single model the same config without `ensemble` trains.
    A finished member leaves `member.json` (its training summary) beside its
    `model.keras`; a resumed run reuses such members instead of training
    them again. `splits` (from `member_splits`) gives each member its own
    `(inner, validation)` pair; by default they all get `inner` and
    `validation`. A model (or member) stopped part-way continues from its
    backup; `log` gets "<label>: resuming from epoch E, batch B (backup of
    <time>)", or with `resume` and no backup "<label>: nothing to resume:
    starting fresh" (`label` defaults to the model's name; a member adds
    "member k/N").
    """
    train_options = dict(
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        verbose=verbose,
        strategy=strategy,
        monitor=config.monitor,
        bucket_by_length=config.bucket_by_length,
        resume=resume,
    )

    def build(member_config, texts):
        return registry.build(f"sentiment/{member_config.cell}", member_config, num_classes, texts)

    return _train_one_or_members(
        config,
        config.ensemble,
        build,
        inner,
        validation,
        model_dir,
        train_options,
        splits=splits,
        name=config.model_name,
        label=label,
        log=log,
    )


def train_baseline(
    config,
    num_classes,
    inner,
    validation,
    model_dir,
    *,
    verbose=0,
    strategy=None,
    log=training.silent,
    splits=None,
    resume=False,
    label=None,
):
    """Train the bag-of-n-grams baseline (or its `baseline_ensemble`) in `model_dir`, as `train_recurrent` does."""
    train_options = dict(
        epochs=config.baseline_epochs,
        learning_rate=config.baseline_learning_rate,
        verbose=verbose,
        strategy=strategy,
        monitor="val_loss",
        bucket_by_length=False,
        resume=resume,
    )

    def build(member_config, texts):
        return registry.build("sentiment/baseline", member_config, num_classes, texts)

    return _train_one_or_members(
        config,
        config.baseline_ensemble,
        build,
        inner,
        validation,
        model_dir,
        train_options,
        splits=splits,
        name=config.baseline_name,
        label=label,
        log=log,
    )


def train_and_evaluate(
    config,
    train,
    test,
    workdir,
    *,
    cells=None,
    implementations=None,
    order=0,
    include_baseline=True,
    verbose=0,
    strategy=None,
    log=training.silent,
    nested=False,
    resume=False,
    label=None,
):
    """Train the recurrent model(s) and the baseline on `train`; score them on `test`.

    An inner stratified split of `train` (`config.validation_fraction`)
    chooses the epoch (early stopping); `test` is only used for the final
    metrics. Returns a dict with the metrics of each model by name.

    Args:
        cells: Recurrent cells to train (default: `config.cell`).
        implementations: For each cell, the implementations of its layers
            to train, "ours" and/or "keras" (default:
            `config.implementation`); Keras's models (named `...-keras`)
            are trained for the cells that have a Keras built-in layer
            only. From the same config and seed, ours and Keras's start from
            the same weights.
        order: With several implementations, which goes first for each
            cell: as listed for an even `order`, reversed for an odd one
            (cross-validation alternates it by fold).
        nested: Put every recurrent model in `workdir/<model name>` instead
            of training the first one directly in `workdir`.
        resume: Passed to `train_recurrent` and `train_baseline`: with it, a
            model with no backup to continue logs "nothing to resume".
        label: What their resume lines start with before the model's name
            (e.g. "fold 3/10").
    """

    def model_label(name):
        return f"{label} {name}" if label else name

    train.require_classes(2)
    train.require_text()
    cells = list(cells or [config.cell])
    cell_names.require_proj_units(config.proj_units, cells, "cells")
    implementations = list(implementations or [config.implementation])
    for implementation in implementations:
        require_choice("implementation", implementation, cell_names.IMPLEMENTATIONS)
    if order % 2:
        implementations.reverse()
    trained = [
        (cell, implementation)
        for cell in cells
        for implementation in implementations
        if implementation != "keras" or cell_names.has_keras_layer(cell)
    ]
    if not trained:
        raise UserError(
            f"Received implementations {implementations} for cells {cells}: none of them has a Keras built-in "
            f"layer; expected some of {list(cell_names.PLAIN)} with implementation keras."
        )
    num_classes = len(train.class_names)
    inner_indices, validation_indices = stratified_split(train.labels, config.validation_fraction, config.seed)
    inner, validation = train.subset(inner_indices), train.subset(validation_indices)
    report = {
        "class_names": list(train.class_names),
        "examples": {"train": len(inner), "validation": len(validation), "test": len(test)},
        "models": {},
    }
    for position, (cell, implementation) in enumerate(trained):
        model_config = dataclasses.replace(config, cell=cell, implementation=implementation)
        name = model_config.model_name
        model_dir = workdir if position == 0 and not nested else os.path.join(workdir, name)
        log(f"training {name} ({len(inner)} train / {len(validation)} validation examples) in {model_dir}")
        splits = member_splits(model_config, train) if model_config.ensemble > 1 else None
        model, summary, members = train_recurrent(
            model_config,
            num_classes,
            inner,
            validation,
            model_dir,
            verbose=verbose,
            strategy=strategy,
            log=log,
            splits=splits,
            resume=resume,
            label=model_label(name),
        )
        report_model(report, name, model, summary, members, model_config.single_model_name, test, log)
    if include_baseline:
        baseline_dir = os.path.join(workdir, BASELINE_NAME)
        name = config.baseline_name
        log(f"training the bag-of-n-grams baseline ({name}) in {baseline_dir}")
        splits = member_splits(config, train, config.baseline_ensemble) if config.baseline_ensemble > 1 else None
        model, summary, members = train_baseline(
            config,
            num_classes,
            inner,
            validation,
            baseline_dir,
            verbose=verbose,
            strategy=strategy,
            log=log,
            splits=splits,
            resume=resume,
            label=model_label(name),
        )
        report_model(report, name, model, summary, members, BASELINE_NAME, test, log)
    return report


def train_test_split_run(config, dataset, workdir, **kwargs):
    """Stratified `config.test_fraction` test split, then `train_and_evaluate`."""
    dataset.require_classes(2)
    train_indices, test_indices = stratified_split(dataset.labels, config.test_fraction, config.seed)
    report = train_and_evaluate(config, dataset.subset(train_indices), dataset.subset(test_indices), workdir, **kwargs)
    report["protocol"] = (
        f"stratified {1 - config.test_fraction:.0%}/{config.test_fraction:.0%} split, seed {config.seed}"
    )
    return report


def cross_validate(config, dataset, workdir, folds=10, *, max_folds=None, resume=False, log=training.silent, **kwargs):
    """Stratified k-fold cross-validation; each fold trains every model from scratch.

    The partition is seeded by `config.seed`; fold k trains with seed
    `config.seed + k` (so initialisations differ between folds). With
    `max_folds`, only the first `max_folds` folds of the k-fold partition
    run (each still holds out 1/k of the data). A fold whose metrics.json
    exists is reused when `resume` is true; the models of a fold stopped
    part-way continue from their backups ("fold k/N <model>: resuming ...").

    Returns `{"folds": [per-fold reports], "summary": {model: {metric: {mean, std, values}}}}`.
    """
    dataset.require_classes(2)
    partition = stratified_folds(dataset.labels, folds, config.seed)
    count = folds if max_folds is None else min(folds, require_int("max_folds", max_folds))
    fold_reports = []
    for fold in range(count):
        fold_dir = os.path.join(workdir, "folds", f"fold-{fold + 1:02d}")
        metrics_path = os.path.join(fold_dir, "metrics.json")
        if resume and os.path.exists(metrics_path):
            fold_reports.append(read_json(metrics_path))
            log(f"fold {fold + 1}/{folds}: reusing {metrics_path}")
            continue
        test_indices = partition[fold]
        train_indices = np.sort(np.concatenate([partition[other] for other in range(folds) if other != fold]))
        fold_config = dataclasses.replace(config, seed=config.seed + fold)
        log(f"fold {fold + 1}/{folds}: {len(train_indices)} train+validation / {len(test_indices)} test examples")
        report = train_and_evaluate(
            fold_config,
            dataset.subset(train_indices),
            dataset.subset(test_indices),
            fold_dir,
            nested=True,
            log=log,
            resume=resume,
            label=f"fold {fold + 1}/{folds}",
            order=fold,
            **kwargs,
        )
        report["fold"] = fold + 1
        if is_chief():
            atomic_write_json(metrics_path, report)
        fold_reports.append(report)
    protocol = f"stratified {folds}-fold cross-validation, seed {config.seed}"
    if count < folds:
        protocol += f" (first {count} of {folds} folds run)"
    return {"protocol": protocol, "folds": fold_reports, "summary": summarize(fold_reports)}
