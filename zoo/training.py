"""One training path for every recipe: seeds, work directory, callbacks.

`fit` wraps `keras.Model.fit` with what a run needs to be safe and
resumable:

- `config.json` in the work directory, written before training;
- `checkpoints/last.keras` (every epoch) and `checkpoints/best.keras` (lowest
  validation loss), each written to a temporary file and moved into place, so
  an interrupted save never destroys the previous checkpoint;
- a backup of weights, optimizer state and position (epoch, batch) in
  `backup/`, every epoch and optionally every N batches, so a killed run
  started again continues from the last backup, skipping the batches it had
  already done: the resumed run takes the same number of optimizer steps as
  an uninterrupted one (Keras's `BackupAndRestore` restarts the epoch
  instead, which repeats steps after a mid-epoch backup); state that lives
  outside the weights goes with it through callbacks with `carried_state`
  (see `zoo.callbacks.ResumableBackup`), such as the char LM's stream states;
- TensorBoard logs in `logs/`;
- a wall-clock budget that ends training cleanly after the current batch;
- a loss that becomes NaN or infinite, or grows past `divergence_factor`
  times its first value, stops training with `TrainingDiverged`, and the
  last good checkpoint is kept;
- `finished.json` once a run ends, so `--resume` on a finished run trains
  nothing and overwrites nothing.

The work directory itself (its lock, config and input fingerprints) is
`zoo.workdir`'s.
"""

import contextlib
import importlib.util
import os
import time

import keras

from zoo.callbacks import (
    AtomicCheckpoint,
    AveragedWeights,
    DivergenceGuard,
    EpochTimer,
    ResumableBackup,
    TimeBudget,
)
from zoo.config import DIVERGENCE_FACTOR, require_int
from zoo.distribute import is_chief
from zoo.errors import UserError
from zoo.files import atomic_write_json, read_json
from zoo.workdir import BACKUP_DIR, CHECKPOINT_DIR

LOG_DIR = "logs"
FINISHED_FILE = "finished.json"  # written when a run ends (not on a time budget); --resume then has nothing to do


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def silent(_message):
    """The default `log` of the task functions: progress lines go nowhere."""


def prefixed(log, prefix):
    """A `log` that passes each line to `log` after `prefix` and a colon ("lstm: ...")."""
    return lambda message: log(f"{prefix}: {message}")


NOTHING_TO_RESUME = "nothing to resume: starting fresh"


def tensorboard_available():
    """Whether the `tensorboard` package (needed for TensorBoard logs) is installed.

    TensorFlow no longer always brings it; without it a run skips the
    TensorBoard logs and keeps everything else.
    """
    return importlib.util.find_spec("tensorboard") is not None


def set_seed(seed):
    """Seed Python, NumPy and the backend so that a run is repeatable."""
    keras.utils.set_random_seed(require_int("seed", seed, minimum=None))


def _resuming(epoch, skip, epochs, saved_at):
    """The line `fit` logs when it continues from a backup at 0-based `epoch` after `skip` batches."""
    if epoch >= epochs:
        return f"resuming at the end of the last epoch, {epochs} (backup of {saved_at}): nothing left to train"
    return f"resuming from epoch {epoch + 1}, batch {skip} (backup of {saved_at})"


@contextlib.contextmanager
def _multi_worker_fit_workaround(model):
    """Let `fit` run under `MultiWorkerMirroredStrategy`.

    Keras 3 (seen with 3.15; tensorflow/tensorflow#72388) cannot `fit` under
    this strategy: it reduces scalar logs with `strategy.reduce(..., axis=0)`
    and builds the model by reducing a nested data batch, and both fail. Here
    the model's own strategy is cleared (Keras then takes it from the
    enclosing scope and skips the failing build) and the train and test
    functions are our own: one `strategy.run` of Keras's `train_step` /
    `test_step` per call, whose (already synchronised) logs are reduced with
    `axis=None`. Training is otherwise unchanged.
    """
    import tensorflow as tf

    strategy = getattr(model, "_distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return

    def reduced(step):
        @tf.function
        def function(iterator):
            outputs = strategy.run(step, args=(next(iterator),))
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), outputs)

        return function

    model._distribute_strategy = None
    try:
        with strategy.scope():
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.train_function = reduced(model.train_step)
            model.test_function = reduced(model.test_step)
            yield
    finally:
        model.train_function = model.test_function = None
        model._distribute_strategy = strategy


def fit(
    model,
    train_data,
    *,
    workdir,
    epochs,
    validation_data=None,
    max_minutes=None,
    callbacks=(),
    verbose="auto",
    backup_every_batches=None,
    steps_per_epoch=None,
    tensorboard=True,
    distribute_data=None,
    monitor="val_loss",
    mode="auto",
    log=silent,
    resume=False,
    divergence_factor=DIVERGENCE_FACTOR,
    averaged_weights=False,
):
    """Train `model` with checkpoints, backups, logs, a time budget and a divergence guard.

    `checkpoints/best.keras` is the epoch with the best `monitor` (a key of
    the epoch logs, by default the validation loss; `mode` "min", "max" or
    "auto" says which direction is better, as in Keras's `ModelCheckpoint`).

    `distribute_data`, if given, maps a `tf.data.Dataset` to what
    `Model.fit` should take instead (for example
    `zoo.distribute.distribute_row_streams`); it is applied to the training
    data (after skipping the batches a resumed epoch already did) and to
    the validation data.

    When a backup is restored, `log` gets one line saying where training
    continues: "resuming from epoch E, batch B (backup of <time>)", E
    counted from 1 and B the batches of epoch E already done (a backup
    taken after an epoch's last batch continues at the next epoch, batch 0).
    When there is no backup and `resume` is true, `log` gets
    "nothing to resume: starting fresh".

    A run that ends (all epochs, or stopped early by a callback; not on
    the time budget) writes `finished.json`. Called again on that work
    directory with `resume`, `fit` trains nothing: it logs "already
    finished (...): nothing to resume" and returns the recorded result
    (`already_finished` true). Without `resume` a new session trains there
    (the recipes refuse that through `zoo.workdir.prepare_workdir`).

    `averaged_weights`: validate and write the checkpoints with the
    optimizer's moving average of the weights (compile with `use_ema=True`;
    see `zoo.callbacks.AveragedWeights`); training and its backups keep the
    trained weights.

    Returns a dict: `history` (per-epoch logs), `seconds` (wall time),
    `epoch_seconds` (each epoch of this session, training and validation;
    see `zoo.callbacks.EpochTimer`), `time_budget_exhausted`, `already_finished`, and the paths of the
    checkpoints. Raises `TrainingDiverged` if the loss became NaN or
    infinite, or exceeded `divergence_factor` times the run's first loss
    (see `DivergenceGuard`); the last good checkpoint stays in place.
    """
    require_int("epochs", epochs)
    if max_minutes is not None and not max_minutes > 0:
        raise UserError(
            f"Received an invalid value for argument `max_minutes`, expected a positive number or None, got {max_minutes!r}."
        )
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    averaging = AveragedWeights() if averaged_weights else None
    checkpoint = AtomicCheckpoint(checkpoint_dir, monitor, mode, averaging and averaging.averaged)
    guard = DivergenceGuard(checkpoint, divergence_factor)
    budget = TimeBudget(max_minutes)
    carried = [callback for callback in callbacks if hasattr(callback, "carried_state")]
    backup = ResumableBackup(os.path.join(workdir, BACKUP_DIR), backup_every_batches, guard, budget, carried)
    timer = EpochTimer()
    all_callbacks = [timer, guard, budget, backup, checkpoint, *callbacks]
    if averaging is not None:
        all_callbacks.append(averaging)
    if tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, LOG_DIR)))
    finished = _finished_run(workdir, checkpoint_dir, resume)
    if finished is not None:
        log(finished.pop("message"))
        return finished
    backup.set_model(model)
    restored = backup.restore()
    position = restored or {"epoch": 0, "batch": 0}
    epoch, skip = int(position["epoch"]), int(position["batch"])
    if skip and steps_per_epoch is None:
        import tensorflow as tf

        batches = int(tf.data.experimental.cardinality(train_data))
        if batches >= 0 and skip >= batches:  # the backup was taken after the epoch's last batch
            epoch, skip = epoch + 1, 0
    elif skip and skip >= steps_per_epoch:
        epoch, skip = epoch + 1, 0
    if restored is not None:
        log(_resuming(epoch, skip, epochs, backup.saved_at()))
    elif resume:
        log(NOTHING_TO_RESUME)
    history = {}
    prepare = distribute_data or (lambda dataset: dataset)
    validation = None if validation_data is None else prepare(validation_data)

    def run(data, first_epoch, last_epoch, steps):
        with _multi_worker_fit_workaround(model):
            result = model.fit(
                prepare(data),
                validation_data=validation,
                initial_epoch=first_epoch,
                epochs=last_epoch,
                callbacks=all_callbacks,
                verbose=verbose,
                steps_per_epoch=steps,
                shuffle=False,  # the recipes' tf.data pipelines shuffle with their own seed
            )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(value) for value in values)

    started = time.monotonic()
    if skip and epoch < epochs:
        # Finish the interrupted epoch without repeating its first `skip` batches.
        backup.skipped_at_start = skip
        backup.resume_carried()
        if steps_per_epoch is None:
            run(train_data.skip(skip), epoch, epoch + 1, None)
        else:
            run(train_data, epoch, epoch + 1, steps_per_epoch - skip)
        epoch += 1
    if epoch < epochs and not (budget.exhausted or guard.message):
        run(train_data, epoch, epochs, steps_per_epoch)
    seconds = time.monotonic() - started
    if guard.message:
        kept = os.path.exists(os.path.join(checkpoint_dir, "last.keras"))
        raise TrainingDiverged(
            guard.message
            + (
                f" The last good checkpoint is kept in {checkpoint_dir!r}."
                if kept
                else " No checkpoint was saved: no epoch ended before the loss diverged."
            )
        )
    result = {
        "history": history,
        "seconds": seconds,
        "epoch_seconds": timer.seconds,
        "time_budget_exhausted": budget.exhausted,
    }
    if not budget.exhausted:
        # Recorded before the backup goes, so a run killed in between is still seen as finished.
        if is_chief():
            atomic_write_json(
                os.path.join(workdir, FINISHED_FILE),
                {**result, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), "epochs": epochs},
            )
        backup.delete()
    return {**result, **_checkpoint_paths(checkpoint_dir), "already_finished": False}


def _checkpoint_paths(checkpoint_dir):
    return {
        "last_checkpoint": os.path.join(checkpoint_dir, "last.keras"),
        "best_checkpoint": os.path.join(checkpoint_dir, "best.keras"),
    }


def _finished_run(workdir, checkpoint_dir, resume):
    """With `resume`, the result `fit` returns for a run that already finished in `workdir` (with a "message").

    Otherwise None; without `resume` the record of an earlier finished
    session is removed, since a new session trains there.
    """
    path = os.path.join(workdir, FINISHED_FILE)
    if not os.path.exists(path):
        return None
    if not resume:  # a new session: until it ends, the directory holds no finished run
        if is_chief():
            os.remove(path)
        return None
    record = read_json(path)
    epochs_done = len(record["history"].get("loss", []))
    return {
        "history": record["history"],
        "seconds": record["seconds"],
        "epoch_seconds": record.get("epoch_seconds", []),
        "time_budget_exhausted": False,
        **_checkpoint_paths(checkpoint_dir),
        "already_finished": True,
        "message": f"already finished ({epochs_done} epochs, at {record['finished_at']}): nothing to resume, "
        "the checkpoints are kept as they are",
    }
