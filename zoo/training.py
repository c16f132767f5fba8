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
  instead, which repeats steps after a mid-epoch backup);
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
import math
import os
import shutil
import tempfile
import time

import keras

from zoo.config import DIVERGENCE_FACTOR, require_divergence_factor, require_int
from zoo.distribute import is_chief
from zoo.errors import UserError
from zoo.files import atomic_path, atomic_write_json, read_json, recover
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


@contextlib.contextmanager
def chief_writes(path):
    """Yield where to write `path`: atomically on the chief, else a scratch path.

    Under `MultiWorkerMirroredStrategy` every worker must take part in a
    save, but only the chief's copy is kept: the others write to a scratch
    directory that is deleted afterwards.
    """
    if is_chief():
        with atomic_path(path) as temporary:
            yield temporary
        return
    scratch = tempfile.mkdtemp(prefix=".worker-")
    try:
        yield os.path.join(scratch, os.path.basename(path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class BestSoFar:
    """The best value of `monitor` so far, recorded beside its checkpoint.

    The record (`best.json` beside `best.keras`: monitor, value, epoch) is
    written by the chief after the checkpoint, so a run that is stopped and
    resumed compares new epochs with the best of the earlier session too,
    and never replaces a better checkpoint with a worse one.
    """

    def __init__(self, checkpoint_path, monitor, lower_is_better=True):
        self.record_path = os.path.splitext(checkpoint_path)[0] + ".json"
        self.monitor = monitor
        self.sign = 1.0 if lower_is_better else -1.0
        self.value = math.inf  # sign * best value; lower is better
        if os.path.exists(self.record_path) and os.path.exists(checkpoint_path):
            record = read_json(self.record_path)
            if record.get("monitor") == monitor:
                self.value = self.sign * float(record["value"])

    def improves(self, value):
        return self.sign * float(value) < self.value

    def record(self, value, epoch):
        self.value = self.sign * float(value)
        if is_chief():
            atomic_write_json(self.record_path, {"monitor": self.monitor, "value": float(value), "epoch": epoch + 1})


MONITOR_MODES = ("auto", "min", "max")


def lower_is_better(monitor, mode="auto"):
    """Whether smaller values of `monitor` are better: `mode` "min" or "max", or "auto".

    "auto" follows Keras's `ModelCheckpoint`: accuracies and AUCs are
    maximised, everything else (losses, errors) minimised.
    """
    if mode not in MONITOR_MODES:
        raise ValueError(
            f"Received an invalid value for argument `mode`, expected one of {MONITOR_MODES}, got {mode!r}."
        )
    if mode != "auto":
        return mode == "min"
    name = monitor.lower()
    return not ("acc" in name or "auc" in name or name.startswith("fmeasure"))


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save `last.keras` every epoch and `best.keras` on a new best `monitor`.

    `mode` says which direction is better ("min", "max" or "auto", see
    `lower_is_better`).
    """

    def __init__(self, directory, monitor="val_loss", mode="auto"):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.best = BestSoFar(os.path.join(directory, "best.keras"), monitor, lower_is_better(monitor, mode))
        self.diverged = False

    def _save(self, name):
        with chief_writes(os.path.join(self.directory, name)) as temporary:
            self.model.save(temporary)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.diverged or not all(
            math.isfinite(float(value)) for value in logs.values() if isinstance(value, (int, float))
        ):
            return
        self._save("last.keras")
        current = logs.get(self.monitor)
        if current is not None and self.best.improves(current):
            self._save("best.keras")
            self.best.record(current, epoch)


class DivergenceGuard(keras.callbacks.Callback):
    """Stop after a batch whose loss is non-finite or above `factor` times the run's first loss.

    The first loss is the first batch's of the run (kept in the backup, so a
    resumed run compares with the same value); the loss compared is Keras's
    running mean over the epoch so far, so one noisy batch does not stop a
    run. `factor` 0 checks only for NaN and infinity. `message` says where
    and why training stopped.
    """

    def __init__(self, checkpoint=None, factor=DIVERGENCE_FACTOR):
        super().__init__()
        self.checkpoint = checkpoint
        self.factor = require_divergence_factor(factor)
        self.reference = None
        self.message = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _stop(self, message):
        self.message = message
        if self.checkpoint is not None:
            self.checkpoint.diverged = True
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        where = f"at epoch {self._epoch + 1}, batch {batch + 1}"
        advice = "training stopped. Lower the learning rate or clip gradients harder."
        if not math.isfinite(loss):
            self._stop(f"The training loss became {loss} {where}; {advice}")
        elif self.reference is None:
            self.reference = loss
        elif self.factor and self.reference > 0 and loss > self.factor * self.reference:
            self._stop(
                f"The training loss diverged {where}: {loss:.6g}, more than divergence_factor={self.factor:g} "
                f"times its first value {self.reference:.6g}; {advice} (Or raise divergence_factor; 0 turns "
                "this check off.)"
            )


class TimeBudget(keras.callbacks.Callback):
    """End training after the current batch once `max_minutes` have passed."""

    def __init__(self, max_minutes):
        super().__init__()
        self.max_seconds = None if max_minutes is None else float(max_minutes) * 60.0
        self.started = None
        self.exhausted = False

    def on_train_begin(self, logs=None):
        if self.started is None:  # one budget across the fits of a resumed run
            self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds:
            self.exhausted = True
            self.model.stop_training = True


class ResumableBackup(keras.callbacks.Callback):
    """Back up weights, optimizer state and the position in training.

    The backup is one directory (`latest/` holding `weights.weights.h5` and
    `position.json`) replaced atomically, so weights and position always
    belong together. Nothing is saved after a non-finite loss.
    """

    def __init__(self, directory, every_batches=None, guard=None, budget=None):
        super().__init__()
        if every_batches is not None:
            require_int("backup_every_batches", every_batches, expected="a positive integer or None")
        self.directory = directory
        self.every_batches = every_batches
        self.guard = guard
        self.budget = budget
        self.epoch = 0
        self.batches_done = 0
        self.skipped_at_start = 0

    @property
    def latest(self):
        return os.path.join(self.directory, "latest")

    def position(self):
        """The saved `{"epoch", "batch"}` or None when there is no backup."""
        recover(self.latest)
        path = os.path.join(self.latest, "position.json")
        return read_json(path) if os.path.exists(path) else None

    def saved_at(self):
        """When the backup was written (local time, "%Y-%m-%d %H:%M:%S"), or None without one."""
        path = os.path.join(self.latest, "position.json")
        if not os.path.exists(path):
            return None
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))

    def restore(self):
        position = self.position()
        if position is None:
            return None
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        weights = os.path.join(self.latest, "weights.weights.h5")
        try:
            self.model.load_weights(weights)
        except Exception as error:  # h5py's OSError for a cut file, ValueError for other weights
            raise UserError(
                f"Cannot resume from the backup {weights!r}: it does not load into this model "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                f"Delete {self.directory!r} to restart training from scratch (the checkpoints stay), "
                "or choose another --workdir."
            ) from error
        guard_path = os.path.join(self.latest, "guard.json")
        if self.guard is not None and os.path.exists(guard_path):
            self.guard.reference = read_json(guard_path)["first_loss"]
        return position

    def _save(self):
        if self.guard is not None and self.guard.message:
            return
        with chief_writes(self.latest) as temporary:
            os.makedirs(temporary)
            self.model.save_weights(os.path.join(temporary, "weights.weights.h5"))
            if self.guard is not None:
                atomic_write_json(os.path.join(temporary, "guard.json"), {"first_loss": self.guard.reference})
            atomic_write_json(
                os.path.join(temporary, "position.json"),
                {"epoch": self.epoch, "batch": self.batches_done},
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.batches_done = self.skipped_at_start
        self.skipped_at_start = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        if self.every_batches and self.batches_done % self.every_batches == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        # Keras ends the epoch early when the time budget stops training: then
        # the position is mid-epoch, and a resumed run finishes this epoch.
        if not (self.budget is not None and self.budget.exhausted):
            self.epoch, self.batches_done = epoch + 1, 0
        self._save()

    def delete(self):
        shutil.rmtree(self.directory, ignore_errors=True)


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

    Returns a dict: `history` (per-epoch logs), `seconds` (wall time),
    `time_budget_exhausted`, `already_finished`, and the paths of the
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
    checkpoint = AtomicCheckpoint(checkpoint_dir, monitor, mode)
    guard = DivergenceGuard(checkpoint, divergence_factor)
    budget = TimeBudget(max_minutes)
    backup = ResumableBackup(os.path.join(workdir, BACKUP_DIR), backup_every_batches, guard, budget)
    all_callbacks = [guard, budget, backup, checkpoint, *callbacks]
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
    result = {"history": history, "seconds": seconds, "time_budget_exhausted": budget.exhausted}
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
        "time_budget_exhausted": False,
        **_checkpoint_paths(checkpoint_dir),
        "already_finished": True,
        "message": f"already finished ({epochs_done} epochs, at {record['finished_at']}): nothing to resume, "
        "the checkpoints are kept as they are",
    }
