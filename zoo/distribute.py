"""TensorFlow distribution strategies by name, for `--strategy`."""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker")


def get_strategy(name="default"):
    """Return the `tf.distribute.Strategy` called `name`.

    - `default`: no distribution (the current default strategy).
    - `mirrored`: `MirroredStrategy` over all local devices.
    - `multi-worker`: `MultiWorkerMirroredStrategy`, configured by the
      standard `TF_CONFIG` environment variable (cluster and task).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "Received `strategy='multi-worker'` but the TF_CONFIG environment variable is not set; "
                'expected e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\'.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Received an invalid value for argument `strategy`: {name!r}; expected one of {list(STRATEGIES)}.")


def is_chief():
    """Whether this process writes metrics, checkpoints and exports.

    Without TF_CONFIG (a single process) it always is; with TF_CONFIG, the
    chief is the task of type `chief`, or worker 0 when there is no chief.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}.") from None
    task = tf_config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    has_chief = "chief" in tf_config.get("cluster", {})
    return task_type == "worker" and index == 0 and not has_chief
