"""Ours against Keras's: the character language model trained with each implementation, side by side.

The same config, corpus and seed build one model per implementation
(`config.implementation` is overridden): our recurrent layers, and Keras's
`SimpleRNN`/`LSTM`/`GRU`. Both start from the same initial weights (our
layers make their weights as Keras's do) and meet the same dropout draws.
They train in one process, one epoch at a time, alternating which goes first,
so that both see the same load on a shared machine. Each epoch is timed
(training and validation, `zoo.callbacks.EpochTimer`) and scored on the
validation streams (nats/char), as `train` does, without its checkpoints.
"""

import dataclasses
import math
import os
import statistics
import time

import numpy as np

from zoo import cells, registry, training
from zoo import workdir as workdir_lib
from zoo.callbacks import AveragedWeights, EpochTimer
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm import train as train_lib
from zoo.errors import UserError
from zoo.files import atomic_write_json

BENCHMARK_FILE = "benchmark.json"


def require_implementations(implementations, cell, field="implementations"):
    """`implementations` as a tuple: distinct, each "ours" or "keras" and valid for `cell`; else `UserError`."""
    implementations = tuple(implementations)
    if not implementations or len(set(implementations)) != len(implementations):
        raise UserError(
            f"Received an invalid value for `{field}`: {','.join(implementations) or 'nothing'}; expected "
            f"distinct names from {', '.join(cells.IMPLEMENTATIONS)}."
        )
    for implementation in implementations:
        cells.require_implementation(implementation, [cell])
    return implementations


def benchmark(config, workdir, *, source=None, implementations=cells.IMPLEMENTATIONS, verbose=0, log=training.silent):
    """Train one model per implementation on `source`, epochs alternated; write and return the results.

    Runs `config.epochs` epochs of each; with `config.max_minutes`, no new
    epoch starts once that much time has passed (both implementations always
    complete the same epochs). `log` gets a line per epoch and implementation.
    Returns (and writes to `workdir/benchmark.json`) a dict with, per
    implementation, `epoch_seconds`, `train_nats_per_char` and
    `val_nats_per_char` by epoch, and `summary` (see `summarize`).
    """
    config.validate()
    implementations = require_implementations(implementations, config.cell)
    source = source or data_lib.TextSource()
    with workdir_lib.locked(workdir):
        return _benchmark(config, workdir, source, implementations, verbose, log)


def _benchmark(config, workdir, source, implementations, verbose, log):
    corpus = train_lib.load_corpus(source, config)
    training_data, validation_data = train_lib.stream_data(corpus, config)
    models = {}
    for implementation in implementations:
        training.set_seed(config.seed)
        model = registry.build(
            f"char_lm/{config.cell}",
            dataclasses.replace(config, implementation=implementation),
            vocabulary_size=corpus.vocabulary.size,
        )
        models[implementation] = model_lib.compile_model(model, config, steps_per_epoch=len(training_data))
    first = models[implementations[0]].get_weights()
    same_initial_weights = all(
        all(np.array_equal(a, b) for a, b in zip(first, model.get_weights())) and len(first) == len(model.weights)
        for model in models.values()
    )
    runs = {name: {"epoch_seconds": [], "train_nats_per_char": [], "val_nats_per_char": []} for name in implementations}
    started = time.monotonic()
    for epoch in range(config.epochs):
        if epoch and config.max_minutes is not None and time.monotonic() - started >= 60.0 * config.max_minutes:
            log(f"time budget of {config.max_minutes:g} minutes reached after {epoch} epochs")
            break
        order = implementations if epoch % 2 == 0 else implementations[::-1]
        for implementation in order:
            timer = EpochTimer()
            # With `ema_decay`, validate the average and keep training the
            # weights (Keras's `fit` would leave the average in them).
            averaging = [AveragedWeights()] if config.ema_decay > 0 else []
            history = models[implementation].fit(
                training_data,
                validation_data=validation_data,
                initial_epoch=epoch,
                epochs=epoch + 1,
                callbacks=[timer, model_lib.ResetStatesEachEpoch(), *averaging],
                verbose=verbose,
                shuffle=False,
            )
            run = runs[implementation]
            run["epoch_seconds"].append(timer.seconds[-1])
            run["train_nats_per_char"].append(float(history.history["loss"][-1]))
            run["val_nats_per_char"].append(float(history.history["val_loss"][-1]))
            log(
                f"epoch {epoch + 1} {implementation}: {timer.seconds[-1]:.1f} s, validation "
                f"{run['val_nats_per_char'][-1]:.4f} nats/char"
            )
    result = {
        "corpus": source.description,
        "characters": corpus.total_characters,
        "vocabulary_size": corpus.vocabulary.size,
        "parameters": int(models[implementations[0]].count_params()),
        "same_initial_weights": bool(same_initial_weights),
        "implementations": runs,
        "config": dataclasses.asdict(config),
    }
    result["summary"] = summarize(runs)
    atomic_write_json(os.path.join(workdir, BENCHMARK_FILE), result)
    return result


def _median_after_first(seconds):
    """The median of `seconds` without the first (tracing) epoch; None with a single epoch."""
    return statistics.median(seconds[1:]) if len(seconds) > 1 else None


def summarize(runs):
    """Per implementation: first-epoch and median seconds, final and best validation nats/char; and the comparison.

    The comparison (with both "ours" and "keras") holds the paired per-epoch
    time ratios keras / ours (epochs after the first, or the first alone
    for a one-epoch run), their median and range, and the final validation
    difference keras - ours.
    """
    summary = {}
    for name, run in runs.items():
        losses = run["val_nats_per_char"]
        summary[name] = {
            "epochs": len(run["epoch_seconds"]),
            "first_epoch_seconds": run["epoch_seconds"][0] if run["epoch_seconds"] else None,
            "median_epoch_seconds": _median_after_first(run["epoch_seconds"]),
            "final_val_nats_per_char": losses[-1] if losses else None,
            "best_val_nats_per_char": min(losses, key=lambda value: value if math.isfinite(value) else math.inf)
            if losses
            else None,
        }
    if "ours" in runs and "keras" in runs and runs["ours"]["epoch_seconds"]:
        ours, keras_run = runs["ours"]["epoch_seconds"], runs["keras"]["epoch_seconds"]
        skip = 1 if len(ours) > 1 else 0
        ratios = [theirs / mine for mine, theirs in zip(ours[skip:], keras_run[skip:])]
        summary["keras_over_ours"] = {
            "epochs_compared": f"{skip + 1}-{len(ours)}" if len(ours) > skip + 1 else str(len(ours)),
            "epoch_time_ratios": ratios,
            "median_epoch_time_ratio": statistics.median(ratios),
            "min_epoch_time_ratio": min(ratios),
            "max_epoch_time_ratio": max(ratios),
            "final_val_difference": runs["keras"]["val_nats_per_char"][-1] - runs["ours"]["val_nats_per_char"][-1],
        }
    return summary


def _number(value, digits):
    return f"{value:.{digits}f}" if value is not None else "-"


def format_benchmark(result):
    """The benchmark as plain text: a row per implementation, a row per epoch, the ratio."""
    summary, runs = result["summary"], result["implementations"]
    names = list(runs)
    lines = [
        f"{'implementation':<15}{'epochs':>7}{'first epoch s':>15}{'median s/epoch':>16}"
        f"{'final val nats/char':>21}{'best':>9}",
    ]
    for name in names:
        entry = summary[name]
        lines.append(
            f"{name:<15}{entry['epochs']:>7}{_number(entry['first_epoch_seconds'], 2):>15}"
            f"{_number(entry['median_epoch_seconds'], 2):>16}{_number(entry['final_val_nats_per_char'], 4):>21}"
            f"{_number(entry['best_val_nats_per_char'], 4):>9}"
        )
    lines.append("")
    header = f"{'epoch':>5}" + "".join(f"{name + ' s':>12}{name + ' val':>12}" for name in names)
    comparison = summary.get("keras_over_ours")
    if comparison:
        header += f"{'keras/ours':>12}"
    lines.append(header)
    for epoch in range(max(len(run["epoch_seconds"]) for run in runs.values())):
        row = f"{epoch + 1:>5}"
        for name in names:
            row += f"{runs[name]['epoch_seconds'][epoch]:>12.2f}{runs[name]['val_nats_per_char'][epoch]:>12.4f}"
        if comparison:
            row += f"{runs['keras']['epoch_seconds'][epoch] / runs['ours']['epoch_seconds'][epoch]:>11.2f}x"
        lines.append(row)
    if comparison:
        lines += [
            "",
            f"time per epoch, keras / ours: {comparison['median_epoch_time_ratio']:.2f}x ("
            + (
                f"median of epochs {comparison['epochs_compared']}; range {comparison['min_epoch_time_ratio']:.2f}-"
                f"{comparison['max_epoch_time_ratio']:.2f}"
                if "-" in comparison["epochs_compared"]
                else f"epoch {comparison['epochs_compared']}"
            )
            + f"); final validation, keras - ours: {comparison['final_val_difference']:+.4f} nats/char",
        ]
    lines.append(
        "same initial weights: "
        + ("yes" if result["same_initial_weights"] else "NO (the implementations' weights differ at the start)")
    )
    return "\n".join(lines)
