"""The memoryless baselines every model's test error is compared with."""

import math

import numpy as np

from zoo.config import require_choice
from zoo.memory.data import TASKS, copy_layout


def baseline_error(task, length, copy_length=10, alphabet_size=8):
    """The error of the best predictor that has no memory of the inputs.

    Adding: mean squared error of always predicting 1 (= 1/6). Copy:
    cross-entropy per step (nats) of predicting blank where the target is
    always blank and a uniform letter on the last `copy_length` steps.
    """
    require_choice("task", task, TASKS)
    if task == "adding":
        return 1.0 / 6.0
    total, _, _ = copy_layout(length, copy_length, alphabet_size)
    return copy_length * math.log(alphabet_size) / total


def empirical_baseline_error(task, targets):
    """The memoryless error measured on data.

    Adding: mean squared error of predicting the constant 1. Copy: the
    cross-entropy of predicting, at each position, the empirical frequency of
    each class at that position over the batch (the best a model that knows
    only the position can do on that data).
    """
    require_choice("task", task, TASKS)
    targets = np.asarray(targets)
    if task == "adding":
        return float(np.mean((targets - 1.0) ** 2))
    entropy = 0.0
    for position in range(targets.shape[1]):
        _, counts = np.unique(targets[:, position], return_counts=True)
        frequencies = counts / counts.sum()
        entropy -= float(np.sum(frequencies * np.log(frequencies)))
    return entropy / targets.shape[1]
