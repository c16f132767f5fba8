"""The callbacks behind `zoo.training.fit`: checkpoints, the divergence guard, the time budget, backups, epoch times.

Each writes through `zoo.files.atomic_path` (on the chief only, under a
multi-worker strategy), so a process killed mid-write leaves the previous
file in place.
"""

import contextlib
import math
import os
import shutil
import tempfile
import time
import zipfile

import keras
import numpy as np

from zoo.config import DIVERGENCE_FACTOR, require_divergence_factor, require_int
from zoo.distribute import is_chief
from zoo.errors import UserError
from zoo.files import atomic_path, atomic_write_json, read_json, recover

CARRIED_FILE = "carried.npz"  # in a backup: the arrays of `ResumableBackup`'s `carried` callbacks


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


class EpochTimer(keras.callbacks.Callback):
    """The wall-clock seconds of every epoch: its training batches and its validation.

    Placed first among `fit`'s callbacks, its `on_epoch_end` runs before the
    others' (checkpoint writing is not counted). The first epoch of a
    session includes tracing the model's functions; an epoch stopped by the
    time budget is counted up to where it stopped.
    """

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


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

    def __init__(self, directory, monitor="val_loss", mode="auto", saving_weights=None):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        # A context manager factory whose context holds the weights to save
        # (`AveragedWeights.averaged`); `None` saves the weights as they are.
        self.saving_weights = saving_weights
        self.best = BestSoFar(os.path.join(directory, "best.keras"), monitor, lower_is_better(monitor, mode))
        self.diverged = False

    def _save(self, name):
        holding = self.saving_weights() if self.saving_weights is not None else contextlib.nullcontext()
        with holding, chief_writes(os.path.join(self.directory, name)) as temporary:
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


class AveragedWeights(keras.callbacks.Callback):
    """Validate (and, through `averaged`, checkpoint) with the optimizer's moving average of the weights.

    The model's optimizer must keep the average: `use_ema=True`, with
    `ema_momentum` its decay (Polyak averaging). Keras updates it after every
    step, in the training step itself, and keeps it in optimizer variables,
    so a backup of the optimizer resumes it. While the validation runs, and
    while `averaged()` is open, the model's weights hold the average; then
    the trained weights are put back from copies, bit for bit (Keras's
    `SwapEMAWeights` swaps in place by additions, which round them).

    Keras's `fit` ends by overwriting the weights with the average
    (`finalize_variable_values`); this callback puts back the weights of
    the last epoch's end there too, so after `fit` the model holds the
    weights training continues from, and only the checkpoints hold the
    average.
    """

    def __init__(self):
        super().__init__()
        self._restore_after_test = None
        self._restore_after_fit = None

    def _pairs(self):
        """`(weight, average)` variable pairs of the model's optimizer; empty before its first step."""
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # (a LossScaleOptimizer's)
        if not getattr(optimizer, "use_ema", False):
            raise ValueError(
                "`AveragedWeights` needs a model compiled with an optimizer that keeps the average "
                f"(`use_ema=True`); received {type(optimizer).__name__} with use_ema="
                f"{getattr(optimizer, 'use_ema', None)!r}."
            )
        if not optimizer.built:
            return []
        return [
            (weight, average)
            for weight, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)
            if average is not None
        ]

    def _snapshot(self):
        """Copy the weights now; return the function that puts these values back."""
        pairs = self._pairs()
        values = [keras.ops.convert_to_numpy(weight) for weight, _ in pairs]

        def restore():
            for (weight, _), value in zip(pairs, values):
                weight.assign(value)

        return restore

    def _hold_average(self):
        """Put the averages into the weights; return the function that puts the trained weights back."""
        restore = self._snapshot()
        for weight, average in self._pairs():
            weight.assign(average)
        return restore

    @contextlib.contextmanager
    def averaged(self):
        """Within this context the model's weights are the averages (as validated); after it, the trained ones."""
        restore = self._hold_average()
        try:
            yield
        finally:
            restore()

    def on_test_begin(self, logs=None):
        self._restore_after_test = self._hold_average()

    def on_test_end(self, logs=None):
        restore, self._restore_after_test = self._restore_after_test, None
        if restore is not None:
            restore()

    def on_epoch_end(self, epoch, logs=None):
        self._restore_after_fit = self._snapshot()

    def on_train_end(self, logs=None):
        restore, self._restore_after_fit = self._restore_after_fit, None
        if restore is not None:
            restore()


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

    `carried` are callbacks that keep training state outside the weights
    (the char LM's stream states): each has `carried_state()`, a dict of
    arrays saved with the backup (`carried.npz`), and
    `resume_carried_state(arrays)`, which `resume_carried` calls with them
    when a session continues an epoch mid-way.
    """

    def __init__(self, directory, every_batches=None, guard=None, budget=None, carried=()):
        super().__init__()
        if every_batches is not None:
            require_int("backup_every_batches", every_batches, expected="a positive integer or None")
        self.directory = directory
        self.every_batches = every_batches
        self.guard = guard
        self.budget = budget
        self.carried = tuple(carried)
        self.carried_arrays = {}  # what `restore` read from the backup's carried.npz
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
            raise self._unusable(weights, error) from error
        guard_path = os.path.join(self.latest, "guard.json")
        if self.guard is not None and os.path.exists(guard_path):
            self.guard.reference = read_json(guard_path)["first_loss"]
        carried_path = os.path.join(self.latest, CARRIED_FILE)
        if os.path.exists(carried_path):
            try:
                with np.load(carried_path) as arrays:
                    self.carried_arrays = {key: arrays[key] for key in arrays.files}
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:  # a cut or foreign file
                raise self._unusable(carried_path, error) from error
        return position

    def _unusable(self, path, error):
        """The `UserError` for a backup file at `path` that cannot be used: what failed, and what to do."""
        first_line = str(error).splitlines()[0] if str(error) else ""
        return UserError(
            f"Cannot resume from the backup {path!r}: it does not load into this model "
            f"({type(error).__name__}: {first_line}). "
            f"Delete {self.directory!r} to restart training from scratch (the checkpoints stay), "
            "or choose another --workdir."
        )

    def resume_carried(self):
        """Give each `carried` callback its arrays from the restored backup (none from an older backup).

        A callback raises `ValueError` for arrays that do not fit its model
        (a backup from another run); that becomes a `UserError` naming the file.
        """
        for index, callback in enumerate(self.carried):
            prefix = f"{index}."
            callback.set_model(self.model)  # `fit` has not given it the model yet
            try:
                callback.resume_carried_state(
                    {key[len(prefix) :]: value for key, value in self.carried_arrays.items() if key.startswith(prefix)}
                )
            except ValueError as error:
                raise self._unusable(os.path.join(self.latest, CARRIED_FILE), error) from error

    def _save(self):
        if self.guard is not None and self.guard.message:
            return
        with chief_writes(self.latest) as temporary:
            os.makedirs(temporary)
            self.model.save_weights(os.path.join(temporary, "weights.weights.h5"))
            if self.guard is not None:
                atomic_write_json(os.path.join(temporary, "guard.json"), {"first_loss": self.guard.reference})
            carried = {
                f"{index}.{name}": value
                for index, callback in enumerate(self.carried)
                for name, value in callback.carried_state().items()
            }
            if carried:
                np.savez(os.path.join(temporary, CARRIED_FILE), **carried)
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
