"""The memory tasks' data: adding-problem and copy-task batches, seeded streams into tf.data."""

import numpy as np
import tensorflow as tf

from zoo.config import require_choice, require_int
from zoo.errors import UserError

TASKS = ("adding", "copy")
ADDING_FEATURES = 2  # (value, marker)


def adding_batch(rng, batch_size, length, mark_distance=None):
    """One batch of the adding problem.

    Args:
        rng: A `numpy.random.Generator`; the only source of randomness.
        batch_size: Number of sequences.
        length: Steps per sequence (at least 2).
        mark_distance: `None` for one mark in each half of the sequence, or
            an integer `d` in [1, length - 1]: first mark `d` steps before the
            last step, second mark on the last step.

    Returns:
        `(inputs, targets)`: float32 arrays of shapes `(batch_size, length, 2)`
        (value, marker) and `(batch_size, 1)`.
    """
    batch_size = require_int("batch_size", batch_size)
    length = require_int("length", length)
    if length < 2:
        raise UserError(f"Received an invalid value for argument `length`, expected at least 2, got {length}.")
    values = rng.uniform(0.0, 1.0, size=(batch_size, length))
    rows = np.arange(batch_size)
    if mark_distance is None:
        half = length // 2
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, length, size=batch_size)
    else:
        mark_distance = require_int("mark_distance", mark_distance)
        if mark_distance > length - 1:
            raise UserError(
                f"Received an invalid value for argument `mark_distance`, expected at most length - 1 = "
                f"{length - 1}, got {mark_distance}."
            )
        first = np.full(batch_size, length - 1 - mark_distance)
        second = np.full(batch_size, length - 1)
    markers = np.zeros((batch_size, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype("float32")
    targets = (values[rows, first] + values[rows, second])[:, None].astype("float32")
    return inputs, targets


def copy_layout(delay, copy_length=10, alphabet_size=8):
    """Sizes of the copy task: (sequence length, input features, output classes).

    Input symbols are one-hot over blank (0), letters 1..alphabet_size and
    the delimiter (alphabet_size + 1); targets are blank or a letter.
    """
    delay = require_int("delay", delay)
    copy_length = require_int("copy_length", copy_length)
    alphabet_size = require_int("alphabet_size", alphabet_size)
    return delay + 2 * copy_length, alphabet_size + 2, alphabet_size + 1


def copy_batch(rng, batch_size, delay, copy_length=10, alphabet_size=8):
    """One batch of the copy-memory task (layout of Arjovsky et al., 2016).

    Steps `[0, copy_length)` hold letters, then `delay - 1` blanks, the
    delimiter at step `copy_length + delay - 1`, then `copy_length` blanks.
    Targets are blank except the last `copy_length` steps, which repeat the
    letters; so each letter must be kept `delay + copy_length` steps.

    Returns:
        `(inputs, targets)`: float32 one-hot inputs of shape
        `(batch_size, delay + 2 * copy_length, alphabet_size + 2)` and int32
        class targets of shape `(batch_size, delay + 2 * copy_length)`.
    """
    batch_size = require_int("batch_size", batch_size)
    total, features, _ = copy_layout(delay, copy_length, alphabet_size)
    letters = rng.integers(1, alphabet_size + 1, size=(batch_size, copy_length))
    symbols = np.zeros((batch_size, total), dtype="int32")
    symbols[:, :copy_length] = letters
    symbols[:, copy_length + delay - 1] = alphabet_size + 1
    targets = np.zeros((batch_size, total), dtype="int32")
    targets[:, total - copy_length :] = letters
    inputs = np.eye(features, dtype="float32")[symbols]
    return inputs, targets


def make_batch(rng, task, batch_size, length, mark_distance=None, copy_length=10, alphabet_size=8):
    """A batch of `task` ("adding" or "copy"); `length` is T (the delay for copy)."""
    require_choice("task", task, TASKS)
    if task == "adding":
        return adding_batch(rng, batch_size, length, mark_distance)
    return copy_batch(rng, batch_size, length, copy_length, alphabet_size)


def make_dataset(task, batch_size, length, seed, mark_distance=None, copy_length=10, alphabet_size=8):
    """An endless, seeded `tf.data.Dataset` of `(inputs, targets)` batches."""
    inputs, targets = make_batch(np.random.default_rng(0), task, 1, length, mark_distance, copy_length, alphabet_size)

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            yield make_batch(rng, task, batch_size, length, mark_distance, copy_length, alphabet_size)

    signature = (
        tf.TensorSpec((batch_size, *inputs.shape[1:]), tf.float32),
        tf.TensorSpec((batch_size, *targets.shape[1:]), tf.as_dtype(targets.dtype)),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def evaluation_batch(config, size):
    """The fixed test batch of `config`: its own random stream, never trained on."""
    rng = np.random.default_rng([config.seed, 1])
    return make_batch(
        rng, config.task, size, config.length, config.mark_distance, config.copy_length, config.alphabet_size
    )


def training_dataset(config, batch_size):
    """The endless training stream of `config` (random stream 0 of its seed)."""
    return make_dataset(
        config.task,
        batch_size,
        config.length,
        [config.seed, 0],
        config.mark_distance,
        config.copy_length,
        config.alphabet_size,
    )
