"""Where the measured thresholds of `layers.fused.policy` switch: columns, batch halves, compiling, transposed products."""

import numpy as np
import pytest
import tensorflow as tf

import layers
from layers.fused import maths, policy
from tests.layers.fused.support import record_splits


@pytest.mark.parametrize(
    "layer_class, units, columns",
    [
        (layers.SimpleRNN, 511, False),
        (layers.SimpleRNN, 512, True),
        (layers.GRU, 170, False),
        (layers.GRU, 171, True),
        (layers.LSTM, 127, False),
        (layers.LSTM, 128, True),
    ],
)
def test_inference_keeps_columns_from_a_recurrent_kernel_512_wide(layer_class, units, columns, monkeypatch):
    # Tracing alone (nothing compiled or run) shows the layout chosen.
    answers = []
    original = policy.keeps_columns
    monkeypatch.setattr(policy, "keeps_columns", lambda math: answers.append(original(math)) or answers[-1])
    layer = layer_class(units, return_sequences=True)
    tf.function(lambda x: layer(x, training=False)).get_concrete_function(tf.TensorSpec((4, 3, 8)))
    assert answers and set(answers) == {columns}


def test_batch_is_split_at_the_measured_sizes_only(monkeypatch):
    # Tracing alone (nothing compiled or run) shows each decision.
    answers = record_splits(monkeypatch)

    def traced(layer_class, units, batch, training=False, **options):
        layer = layer_class(units, return_sequences=True, **options)
        spec = tf.TensorSpec((batch, 10, 16))
        tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        # (Keras may trace a first call twice: once to build the layer.)
        decided = set(answers)
        answers.clear()
        assert len(decided) <= 1
        return decided.pop() if decided else None

    assert traced(layers.SimpleRNN, 32, 16) is True
    assert traced(layers.GRU, 256, 64) is True
    assert traced(layers.LSTM, 256, 64) is True
    assert traced(layers.SimpleRNN, 32, 8) is False  # batch below SPLIT_MIN_BATCH
    assert traced(layers.LSTM, 1024, 32) is True
    assert traced(layers.LSTM, 1024, 16) is False  # SPLIT_WIDE_MIN_BATCH
    # An unknown batch (a dataset's) is compiled, and split where the units allow.
    assert traced(layers.SimpleRNN, 32, None) is True
    assert traced(layers.SimpleRNN, 1024, None) is True
    assert traced(layers.LSTM, 256, None, training=True) is True
    assert traced(layers.LSTM, 1024, None, training=True) is None  # graph loops: the batch may be small
    # Training, with recurrent dropout (each half takes its rows of the mask).
    assert traced(layers.LSTM, 256, 64, training=True, recurrent_dropout=0.5) is True
    assert traced(layers.GRU, 512, 8, training=True) is True
    assert traced(layers.GRU, 32, 4, training=True) is False
    assert traced(layers.GRU, 1024, 64, training=True) is False
    assert traced(layers.GRU, 1024, 16, training=True) is None  # graph loops: not compiled
    # Eager, the halves would run one after the other.
    layer = layers.SimpleRNN(32, jit_compile=True)
    layer(tf.zeros((16, 10, 16)))
    assert answers == [False]
    # Nor within `whole_batches()`; outside it again, the batch is split.
    with policy.whole_batches():
        assert traced(layers.SimpleRNN, 32, 16) is False
        assert traced(layers.GRU, 64, 16, training=True) is False
    assert traced(layers.SimpleRNN, 32, 16) is True
    # Nor inside a function compiled as a whole (one program).
    layer = layers.SimpleRNN(32, return_sequences=True)
    tf.function(lambda x: layer(x), jit_compile=True).get_concrete_function(tf.TensorSpec((16, 10, 16)))
    assert set(answers) == {False}
    answers.clear()
    # Nor when the graph executor may run one op at a time.
    monkeypatch.setattr(tf.config.threading, "get_inter_op_parallelism_threads", lambda: 1)
    assert traced(layers.SimpleRNN, 32, 16) is False


def test_loops_are_compiled_when_traced_with_known_shapes():
    def compiled_functions(layer, training, spec=None):
        spec = spec or tf.TensorSpec((2, 4, 3))
        concrete = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        library = concrete.graph.as_graph_def().library.function
        return {f.signature.name for f in library if f.attr["_XlaMustCompile"].b}

    for training in (True, False):
        assert compiled_functions(layers.LSTM(5), training), training
        assert compiled_functions(layers.LSTM(5, jit_compile=True), training), training
        assert not compiled_functions(layers.LSTM(5, jit_compile=False), training), training
        # An unknown time dimension (padded to each batch's longest) runs
        # graph loops; an unknown batch (a dataset's) is compiled.
        unknown_time, unknown_batch = tf.TensorSpec((2, None, 3)), tf.TensorSpec((None, 4, 3))
        assert not compiled_functions(layers.LSTM(5), training, unknown_time), training
        assert compiled_functions(layers.LSTM(5), training, unknown_batch), training
        for unknown in (unknown_time, unknown_batch):
            assert compiled_functions(layers.LSTM(5, jit_compile=True), training, unknown), (training, unknown)
    # "auto" compiles only the sizes where compiling was measured to pay:
    # inference at any size; training up to 512 units, and more units only
    # with a batch of 64 or more.
    wide_batch = tf.TensorSpec((policy.COMPILED_WIDE_MIN_BATCH, 2, 3))
    narrow_batch = tf.TensorSpec((policy.COMPILED_WIDE_MIN_BATCH - 1, 2, 3))
    assert compiled_functions(layers.LSTM(512), True, narrow_batch)
    assert not compiled_functions(layers.LSTM(513), True, narrow_batch)
    assert not compiled_functions(layers.LSTM(513), True, tf.TensorSpec((None, 2, 3)))
    assert compiled_functions(layers.GRU(513), True, wide_batch)
    assert not compiled_functions(layers.SimpleRNN(513), True, narrow_batch)
    for training in (True, False):
        assert compiled_functions(layers.LSTM(513, jit_compile=True), training, narrow_batch), training
    assert compiled_functions(layers.LSTM(513), False, narrow_batch)
    assert compiled_functions(layers.SimpleRNN(1024), False, narrow_batch)


@pytest.mark.parametrize(
    "batch, depth, width, transposed",
    [
        (policy.TRANSPOSED_PRODUCT_MAX_BATCH, 1024, 3072, True),  # a GRU of 1024 units
        (policy.TRANSPOSED_PRODUCT_MAX_BATCH, 1024, 3071, False),
        (policy.TRANSPOSED_PRODUCT_MAX_BATCH + 1, 1024, 4096, False),
        (16, 256, 1024, False),  # an LSTM of 256 units
        (None, 1024, 4096, False),
    ],
)
def test_transposed_step_product_is_taken_for_large_kernels_and_small_batches(batch, depth, width, transposed):
    assert policy.transposes_product(batch, depth, width) is transposed


def test_transposed_step_product_gives_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(3, 8)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(8, 5)).astype("float32"))
    for transposed in (False, True):
        monkeypatch.setattr(policy, "transposes_product", lambda batch, depth, width, answer=transposed: answer)
        graph = tf.function(lambda h, k: maths._state_product(h, k, tf.transpose(k))).get_concrete_function(h, kernel)
        transposes = sum(op.type == "Transpose" for op in graph.graph.get_operations())
        # Two transposes of the operands plus the one of the kernel passed in.
        assert transposes == (3 if transposed else 1), transposed
        np.testing.assert_allclose(graph(h, kernel), h.numpy() @ kernel.numpy(), rtol=1e-5, atol=1e-5)


def test_last_loops_says_which_loops_ran():
    def traced(layer, shape, training=False):
        tf.function(lambda x: layer(x, training=training)).get_concrete_function(tf.TensorSpec(shape))
        return layer.last_loops

    assert traced(layers.GRU(8), (policy.SPLIT_MIN_BATCH, 4, 3)) == "compiled halves"
    assert traced(layers.GRU(8), (policy.SPLIT_MIN_BATCH - 1, 4, 3)) == "compiled"
    assert traced(layers.GRU(8), (16, None, 3), training=True) == "graph"
    assert traced(layers.GRU(8, jit_compile=False), (16, 4, 3)) == "graph"
    layer = layers.GRU(8, fused=False)
    layer(tf.zeros((2, 4, 3)))
    assert (layer.last_path, layer.last_loops) == ("cell", None)


@pytest.mark.parametrize(
    "cores, inter_op_threads, parts",
    [
        (1, 0, 1),  # one core: the halves would run one after the other
        (2, 0, 2),  # TensorFlow's default inter-op threads: one per core
        (8, 0, 2),
        (64, 0, 2),
        (64, 1, 1),  # one op at a time
        (2, 8, 2),
        (1, 4, 1),
    ],
)
def test_batch_parts_follow_the_cores_and_inter_op_threads(cores, inter_op_threads, parts):
    assert policy.batch_parts(cores, inter_op_threads) == parts


def test_available_cores_are_the_affinity_within_the_cgroup_quota(monkeypatch, tmp_path):
    read_limit = policy.cgroup_cpu_limit
    monkeypatch.setattr(policy.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(policy, "cgroup_cpu_limit", lambda: None)
    assert policy.available_cores() == 4
    monkeypatch.setattr(policy, "cgroup_cpu_limit", lambda: 1.5)
    assert policy.available_cores() == 1
    monkeypatch.setattr(policy, "cgroup_cpu_limit", lambda: 0.5)
    assert policy.available_cores() == 1
    # The quota files: cgroup v2, then v1.
    assert read_limit(str(tmp_path)) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert read_limit(str(tmp_path)) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert read_limit(str(tmp_path)) == 2.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert read_limit(str(tmp_path)) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert read_limit(str(tmp_path)) == 1.0


def test_one_available_core_runs_the_whole_batch(monkeypatch):
    answers = record_splits(monkeypatch)
    layer = layers.GRU(8, return_sequences=True)
    monkeypatch.setattr(policy, "available_cores", lambda: 1)
    tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec((16, 4, 3)))
    assert set(answers) == {False} and layer.last_loops == "compiled"
    monkeypatch.setattr(policy, "available_cores", lambda: 2)
    tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec((16, 4, 3)))
    assert answers[-1] is True and layer.last_loops == "compiled halves"
