"""One training path for every recipe: seeds, work directory, callbacks.

`fit` wraps `keras.Model.fit` with what a run needs to be safe and
resumable:

- `config.json` in the work directory, written before training;
- `checkpoints/last.keras` (every epoch) and `checkpoints/best.keras` (lowest
  validation loss), each written to a temporary file and moved into place, so
  an interrupted save never destroys the previous checkpoint;
- `keras.callbacks.BackupAndRestore` in `backup/`, so a killed run started
  again with `resume=True` continues where the last backup left it;
- TensorBoard logs in `logs/`;
- a wall-clock budget that ends training cleanly after the current batch;
- a loss that becomes NaN or infinite stops training with `TrainingDiverged`,
  and the last good checkpoint is kept.
"""

import math
import os
import time

import keras

from zoo import config as config_lib
from zoo.files import atomic_path

CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"
LOG_DIR = "logs"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def set_seed(seed):
    """Seed Python, NumPy and the backend so that a run is repeatable."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"Received an invalid value for argument `seed`, expected an integer, got {seed!r}.")
    keras.utils.set_random_seed(seed)


def prepare_workdir(workdir, config, resume=False):
    """Create `workdir`, refuse to silently mix runs, and write config.json.

    A work directory that already holds a run (a checkpoint or a backup) is
    only reused with `resume=True`, and then only with the same config.
    Returns the config to use (the saved one when resuming).
    """
    if not workdir:
        raise ValueError("Received an empty value for argument `workdir`; expected a directory path.")
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "config.json")
    has_run = any(
        os.path.exists(os.path.join(workdir, name)) for name in (CHECKPOINT_DIR, BACKUP_DIR)
    )
    if resume:
        if not os.path.exists(config_path):
            raise ValueError(
                f"Cannot resume: the work directory {workdir!r} has no config.json from an earlier run."
            )
        saved = config_lib.load(type(config), config_path)
        if saved != config:
            differences = sorted(
                name
                for name, value in config_lib.to_dict(config).items()
                if config_lib.to_dict(saved).get(name) != value
            )
            raise ValueError(
                f"Cannot resume in {workdir!r} with a different config (fields {differences} differ). "
                "Resume with the same --set overrides, or start a new --workdir."
            )
        return saved
    if has_run:
        raise ValueError(
            f"The work directory {workdir!r} already holds a run. Pass --resume to continue it, "
            "or choose another --workdir."
        )
    config_lib.save(config, config_path)
    return config


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save `last.keras` every epoch and `best.keras` on a new best `monitor`."""

    def __init__(self, directory, monitor="val_loss"):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.best = math.inf
        self.diverged = False

    def _save(self, name):
        with atomic_path(os.path.join(self.directory, name)) as temporary:
            self.model.save(temporary)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.diverged or not all(
            math.isfinite(float(value)) for value in logs.values() if isinstance(value, (int, float))
        ):
            return
        self._save("last.keras")
        current = logs.get(self.monitor)
        if current is not None and float(current) < self.best:
            self.best = float(current)
            self._save("best.keras")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop after a batch whose loss is NaN or infinite, and say where."""

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.message = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.message = (
                f"The training loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}; "
                "training stopped. Lower the learning rate or clip gradients harder."
            )
            if self.checkpoint is not None:
                self.checkpoint.diverged = True
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """End training after the current batch once `max_minutes` have passed."""

    def __init__(self, max_minutes):
        super().__init__()
        self.max_seconds = None if max_minutes is None else float(max_minutes) * 60.0
        self.started = None
        self.exhausted = False

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds:
            self.exhausted = True
            self.model.stop_training = True


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
):
    """Train `model` with checkpoints, backups, logs, a time budget and NaN guard.

    Returns a dict: `history` (per-epoch logs), `seconds` (wall time),
    `time_budget_exhausted`, and the paths of the checkpoints. Raises
    `TrainingDiverged` if the loss became NaN or infinite (the last good
    checkpoint stays in place).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"Received an invalid value for argument `epochs`, expected a positive integer, got {epochs!r}.")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"Received an invalid value for argument `max_minutes`, expected a positive number or None, got {max_minutes!r}.")
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    checkpoint = AtomicCheckpoint(checkpoint_dir)
    nan_guard = StopOnNonFiniteLoss(checkpoint)
    budget = TimeBudget(max_minutes)
    backup = keras.callbacks.BackupAndRestore(
        os.path.join(workdir, BACKUP_DIR),
        save_freq=backup_every_batches or "epoch",
        delete_checkpoint=True,
    )
    all_callbacks = [nan_guard, budget, backup, checkpoint, *callbacks]
    if tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, LOG_DIR)))
    started = time.monotonic()
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=all_callbacks,
        verbose=verbose,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the recipes' tf.data pipelines shuffle with their own seed
    )
    seconds = time.monotonic() - started
    if nan_guard.message:
        raise TrainingDiverged(nan_guard.message)
    return {
        "history": {key: [float(value) for value in values] for key, values in history.history.items()},
        "seconds": seconds,
        "time_budget_exhausted": budget.exhausted,
        "last_checkpoint": os.path.join(checkpoint_dir, "last.keras"),
        "best_checkpoint": os.path.join(checkpoint_dir, "best.keras"),
    }
