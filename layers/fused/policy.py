"""When the fused path compiles its loops, keeps states as columns or splits a batch.

Each rule is a threshold measured with TensorFlow 2.21 on the benchmark
machine (two CPU cores); the figures are in layers/README.md
(layers/README.md#measurements-behind-the-fused-paths-rules). The thresholds
are read from this module at every call, so a test or an experiment changes
them here (`monkeypatch.setattr(policy, ...)`), not on `layers.fused`.
"""

import contextlib
import os

import tensorflow as tf

# Graph loops compute a step's `[batch, k] @ [k, n]` transposed,
# `(kernel^T @ h^T)^T` (`RecurrenceMath.product`), where TensorFlow's CPU
# kernels ran that faster: a large kernel (k * n of 3 Mi entries or more: an
# LSTM or GRU of 1024 units) with a small batch (32 rows or fewer). Smaller
# kernels, and batches of 48 rows or more, ran faster directly (see
# layers/README.md#transposed-step-products).
TRANSPOSED_PRODUCT_MIN_SIZE = 3 * 1024 * 1024
TRANSPOSED_PRODUCT_MAX_BATCH = 32

# When `jit_compile="auto"` compiles the loops (see `compiles_by_default`).
# Up to 512 units compiling was faster at every size tried; at 1024 units it
# was faster or as fast with a batch of 64, but much slower with a batch of
# 16 or 32: XLA's product of a short, wide `[batch, k] @ [k, n]` is slow,
# where the graph loops take it transposed (see
# layers/README.md#compiling-the-loops).
COMPILED_MAX_UNITS = 512
COMPILED_WIDE_MIN_BATCH = 64

# Compiled inference loops whose recurrent kernel is this wide (gate blocks
# times units: a SimpleRNN of 512 units, a GRU of 171, an LSTM of 128) or
# wider keep their states as columns (see
# `BatchMajorLoops._loop_in_columns`): `kernel^T @ h` with `h` of shape
# `(units, batch)`, whose short, wide result XLA computes faster than
# `h @ kernel`. Narrower kernels were faster as rows. In columns, compiled
# inference was faster than graph loops at every size tried, so `auto`
# compiles inference at any size; training keeps the rule above (its loops
# keep the states as rows). See layers/README.md#states-as-columns.
COLUMN_MIN_WIDTH = 512

# Compiled loops run the two halves of a batch as two calls of one compiled
# program, which the graph executor runs at the same time, one per core:
# each step is too small for the matrix-product kernel to keep two threads
# busy, and the gate arithmetic runs on one thread, where two independent
# recurrences keep both cores busy. Training splits its saving forward loop
# and its backward loop, and forms the weight gradients of each half (then
# summed). Halves were faster for inference with a batch of 16 or more
# except at 1024 units with a batch of 16 (hence `SPLIT_WIDE_MIN_BATCH`),
# and for training from a batch of 8 up to 512 units, but slower at 1024
# units (hence `SPLIT_TRAINING_MAX_UNITS`). See layers/README.md#batch-halves.
SPLIT_MIN_BATCH = 16
SPLIT_WIDE_UNITS = 1024
SPLIT_WIDE_MIN_BATCH = 32
SPLIT_TRAINING_MIN_BATCH = 8
SPLIT_TRAINING_MAX_UNITS = 512


def inside_compiled_function():
    """Whether the function being traced is compiled with XLA as a whole.

    There the two halves would be one program's two loops, run one after
    the other, which measured slower (see layers/README.md#batch-halves).
    TensorFlow marks such a trace with an XLA context, which only its
    internal module reports.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without them
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


_splitting = [True]


@contextlib.contextmanager
def whole_batches():
    """Within this context, traced calls run their compiled loops on the whole batch at once.

    For comparing the two (`python -m recipes.bench --whole-batch`), or for
    a process that keeps the cores busy otherwise. The choice is made when a
    call is traced; functions traced before keep theirs.
    """
    _splitting.append(False)
    try:
        yield
    finally:
        _splitting.pop()


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """The CPU quota of the cgroup mounted at `root` in cores (a container's `--cpus`), or `None` without one.

    cgroup v2 keeps it in `cpu.max` ("quota period", or "max"), v1 in
    `cpu/cpu.cfs_quota_us` (-1 for none) and `cpu/cpu.cfs_period_us`.
    """
    candidates = (
        (os.path.join(root, "cpu.max"), None),
        (os.path.join(root, "cpu", "cpu.cfs_quota_us"), os.path.join(root, "cpu", "cpu.cfs_period_us")),
    )
    for quota_path, period_path in candidates:
        try:
            with open(quota_path) as handle:
                fields = handle.read().split()
            if period_path is not None:
                with open(period_path) as handle:
                    fields += handle.read().split()
            quota, period = fields[0], float(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if quota in ("max", "-1") or period <= 0:
            return None
        try:
            return float(quota) / period
        except ValueError:
            return None
    return None


def available_cores():
    """The CPU cores this process can run on at once.

    Its CPU affinity (`os.sched_getaffinity`: `taskset`, a container's
    cpuset), where the system reports one, else `os.cpu_count()`; and no
    more than a cgroup's CPU quota, in whole cores (a container started
    with `--cpus=1.5` runs on one and a half cores' time: one whole core).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (no affinity on macOS and Windows)
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, int(limit)))
    return cores


def batch_parts(cores, inter_op_threads):
    """How many parts compiled loops may run a batch in: 2 (its halves) or 1.

    `cores`: the cores available (`available_cores`); `inter_op_threads`:
    TensorFlow's inter-op threads (`tf.config.threading`, where 0 is its
    default, one per available core), which run the two parts' programs at
    the same time. Two parts need two of each: on one core the halves run
    one after the other, and their smaller products only cost time (see
    layers/README.md#batch-halves). More cores keep two parts: more were not
    measured, and the other cores run TensorFlow's intra-op work (the
    products outside the loops) and the input pipeline.
    """
    threads = cores if inter_op_threads <= 0 else min(cores, inter_op_threads)
    return 2 if threads >= 2 else 1


def splits_batch(math, inputs, training=False):
    """Whether compiled loops run the batch as two halves (see `SPLIT_MIN_BATCH`).

    Only inside a traced function that is not compiled as a whole (an eager
    call, or one program, would run the halves one after the other), with
    two cores and a graph executor allowed to run two ops at once
    (`batch_parts`), and not within `whole_batches()`.
    `training`: the loops of a training call (the saving forward loop and
    the backward loop), else the inference loop.
    """
    batch = inputs.shape[0]
    if not _splitting[-1] or tf.executing_eagerly() or inside_compiled_function():
        return False
    if batch_parts(available_cores(), tf.config.threading.get_inter_op_parallelism_threads()) < 2:
        return False
    # An unknown batch (a dataset's, without `drop_remainder`) is taken to
    # be the size it usually is, at least `SPLIT_WIDE_MIN_BATCH`; a smaller
    # one (a partial last batch) runs in halves too, correctly, even with
    # one row (an empty half).
    if training:
        return (batch is None or batch >= SPLIT_TRAINING_MIN_BATCH) and math.units <= SPLIT_TRAINING_MAX_UNITS
    return batch is None or batch >= (SPLIT_WIDE_MIN_BATCH if math.units >= SPLIT_WIDE_UNITS else SPLIT_MIN_BATCH)


def transposes_product(batch, depth, width):
    """Whether a graph loop computes a step's `[batch, depth] @ [depth, width]` transposed.

    See `TRANSPOSED_PRODUCT_MIN_SIZE`; `None` for an unknown dimension,
    which takes the direct product.
    """
    if None in (batch, depth, width):
        return False
    return batch <= TRANSPOSED_PRODUCT_MAX_BATCH and depth * width >= TRANSPOSED_PRODUCT_MIN_SIZE


def keeps_columns(math):
    """Whether a compiled inference loop keeps its states as columns (`COLUMN_MIN_WIDTH`)."""
    return math.recurrent_kernel.shape[-1] >= COLUMN_MIN_WIDTH


def compiles_by_default(units, batch, training):
    """Whether `jit_compile="auto"` compiles a traced call with a known time dimension.

    `batch` is `None` where the traced call does not know it: training
    wider than `COMPILED_MAX_UNITS` then runs graph loops, since the batch
    may be smaller than `COMPILED_WIDE_MIN_BATCH`.
    """
    if not training:
        return True
    return units <= COMPILED_MAX_UNITS or (batch is not None and batch >= COMPILED_WIDE_MIN_BATCH)
