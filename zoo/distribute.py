"""TensorFlow distribution strategies by name, for `--strategy`."""

import json
import os

import tensorflow as tf

from zoo.errors import UserError

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
            raise UserError(
                "Received `strategy='multi-worker'` but the TF_CONFIG environment variable is not set; "
                'expected e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\'.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"Received an invalid value for argument `strategy`: {name!r}; expected one of {list(STRATEGIES)}.")


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
        raise UserError(f"TF_CONFIG is not valid JSON: {error}.") from None
    task = tf_config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    has_chief = "chief" in tf_config.get("cluster", {})
    return task_type == "worker" and index == 0 and not has_chief


def rows_per_replica(strategy, global_batch_size):
    """`global_batch_size / replicas`; a ValueError if the replicas cannot share the batch."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise UserError(
            f"Received a global batch size of {global_batch_size}, which {replicas} replicas cannot share; "
            f"expected a multiple of {replicas} (set `batch_size` accordingly)."
        )
    return global_batch_size // replicas


def distribute_row_streams(strategy, dataset, global_batch_size):
    """Distribute fixed-size global batches so every replica keeps its rows.

    Stateful models (the character LM's streams) carry each row's state from
    one batch to the next, so row r of every global batch must go to the
    same replica, in the same position, at every step. With one replica the
    dataset is returned unchanged. Under `MirroredStrategy` (one process)
    each global batch is split into contiguous row blocks, replica i taking
    rows `[i * b, (i + 1) * b)` with `b = global_batch_size / replicas`.
    Under `MultiWorkerMirroredStrategy` each worker builds the input of its
    own replica from the same global batches: worker i keeps rows
    `[i * b, (i + 1) * b)`, so no rows are shuffled between workers.

    Args:
        strategy: The `tf.distribute.Strategy` training runs under.
        dataset: A `tf.data.Dataset` whose elements are tuples of tensors
            with `global_batch_size` rows each, never shuffled.
        global_batch_size: Rows in every element of `dataset`.

    Returns:
        `dataset` itself, or a distributed dataset for `Model.fit`.
    """
    rows = rows_per_replica(strategy, global_batch_size)
    if strategy.num_replicas_in_sync == 1:
        return dataset
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
        return strategy.experimental_distribute_dataset(_with_static_batch(dataset, global_batch_size), options)

    def replica_rows(context):
        if context.num_input_pipelines != context.num_replicas_in_sync:
            raise UserError(
                f"Row streams under MultiWorkerMirroredStrategy need one replica per worker; found "
                f"{context.num_replicas_in_sync} replicas on {context.num_input_pipelines} workers."
            )
        start = context.input_pipeline_id * rows

        def take_rows(*tensors):
            return tuple(tensor[start : start + rows] for tensor in tensors)

        return dataset.map(take_rows)

    return strategy.distribute_datasets_from_function(replica_rows)


def _with_static_batch(dataset, global_batch_size):
    """`dataset` with the batch dimension known, so tf.distribute can split it."""

    def fix(*tensors):
        return tuple(tf.ensure_shape(tensor, [global_batch_size, *tensor.shape[1:]]) for tensor in tensors)

    return dataset.map(fix)
