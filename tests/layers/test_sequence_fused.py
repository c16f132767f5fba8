"""The fused whole-sequence path of `SimpleRNN`, `LSTM`, `GRU` against references.

Every comparison runs the same weights and inputs through

- our layer (fused path: the forward loop saves what the hand-written BPTT
  needs when `training=True`; with `training=False` the lean inference
  loop runs, and a gradient taken anyway repeats the saving forward loop
  before the hand-written BPTT), with its loops run as TensorFlow graph
  loops (what an eager call does by default) and compiled by XLA
  (`jit_compile=True`),
- Keras's built-in layer (`keras.layers.LSTM`, ...), and
- our cell inside `keras.layers.RNN` (the generic cell path),

and compares outputs, final states and the gradients of a fixed random
projection of all outputs with respect to the inputs, the initial states and
every weight: outputs within 1e-5 absolute, gradients within
1e-5 + 1e-4 * max|reference|.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers

OUTPUT_TOLERANCE = 1e-5
GRADIENT_ABSOLUTE = 1e-5
GRADIENT_RELATIVE = 1e-4

# kind -> (our layer, Keras's layer, our cell, fixed keyword arguments)
KINDS = {
    "simple_rnn": (layers.SimpleRNN, keras.layers.SimpleRNN, layers.SimpleRNNCell, {}),
    "lstm": (layers.LSTM, keras.layers.LSTM, layers.LSTMCell, {}),
    "gru": (layers.GRU, keras.layers.GRU, layers.GRUCell, {"reset_after": True}),
    "gru_reset_before": (layers.GRU, keras.layers.GRU, layers.GRUCell, {"reset_after": False}),
}
CELL_ARGUMENTS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "reset_after",
    "dropout",
    "recurrent_dropout",
    "seed",
)
BATCH, TIMESTEPS, FEATURES, UNITS = 3, 5, 4, 6


def state_count(kind):
    return 2 if kind == "lstm" else 1


def sequence_mask(pattern, batch=BATCH, timesteps=TIMESTEPS):
    """Boolean (batch, timesteps) masks: right- or left-padded, or with holes.

    Each pattern has a row with no valid step at all, where Keras outputs
    zeros and returns the initial state.
    """
    if pattern is None:
        return None
    rows = {
        "right": [[1] * timesteps, [1] * 3 + [0] * (timesteps - 3), [0] * timesteps],
        "left": [[1] * timesteps, [0] * 2 + [1] * (timesteps - 2), [0] * timesteps],
        "holes": [[1, 0, 1, 1, 0][:timesteps], [0, 1, 0, 0, 1][:timesteps], [0] * timesteps],
    }[pattern]
    return np.array(rows[:batch], dtype=bool)


def make_layers(kind, weight_seed=0, units=UNITS, features=FEATURES, with_keras=True, batch=None, **options):
    """Our layer, Keras's layer and `RNN(our cell)`, all with the same weights.

    The weights depend only on `weight_seed` (biases are not zero); `options`
    go to the layers (a `seed` there is the dropout seed). Stateful layers
    need a fixed `batch`.
    """
    ours_class, keras_class, cell_class, fixed = KINDS[kind]
    options = {**fixed, **options}
    ours = ours_class(units, **options)
    ours.build((batch, None, features))
    rng = np.random.default_rng(weight_seed)
    # Only the trainable weights are drawn; the others (the dropout seed
    # generator's state) keep their values.
    weights = [
        rng.uniform(-0.6, 0.6, size=w.shape).astype(w.dtype) if w.trainable else np.asarray(w)
        for w in ours.weights
    ]
    ours.set_weights(weights)
    cell_options = {k: v for k, v in options.items() if k in CELL_ARGUMENTS or k == "dtype"}
    rnn_options = {
        k: v for k, v in options.items() if k not in CELL_ARGUMENTS and k not in ("bptt_steps", "fused", "jit_compile")
    }
    references = []
    if with_keras:
        keras_options = {k: v for k, v in options.items() if k not in ("fused", "jit_compile")}
        builtin = keras_class(units, **keras_options) if "bptt_steps" not in options else None
        if builtin is not None:
            builtin.build((batch, None, features))
            builtin.set_weights(weights)
            references.append(("keras_builtin", builtin))
    cell_rnn = keras.layers.RNN(cell_class(units, **cell_options), **rnn_options)
    cell_rnn.build((batch, None, features))
    cell_rnn.set_weights(weights)
    references.append(("keras_rnn_our_cell", cell_rnn))
    return ours, references


def run(layer, inputs, mask=None, initial_state=None, training=False, loss_seed=7, traced=False):
    """Outputs (list) and gradients (inputs, initial states, weights) of `layer`.

    The loss is a fixed random projection of every output, so every output
    element gets its own weight in the gradient. With `traced`, the call and
    its gradient run inside one `tf.function` (as in `fit` or `predict`),
    else eagerly.
    """
    inputs = tf.constant(inputs)
    initial = None if initial_state is None else [tf.constant(s) for s in initial_state]
    mask = None if mask is None else tf.constant(mask)

    def outputs_and_gradients(inputs, initial, mask):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            if initial is not None:
                tape.watch(initial)
            result = layer(inputs, mask=mask, initial_state=initial, training=training)
            outputs = list(result) if isinstance(result, (list, tuple)) else [result]
            rng = np.random.default_rng(loss_seed)
            loss = sum(
                tf.reduce_sum(o * rng.normal(size=o.shape).astype(o.dtype.name)) for o in outputs
            )
        sources = [inputs] + (initial or []) + list(layer.trainable_weights)
        return outputs, tape.gradient(loss, sources)

    if traced:
        outputs_and_gradients = tf.function(outputs_and_gradients)
    outputs, gradients = outputs_and_gradients(inputs, initial, mask)
    return [np.asarray(o) for o in outputs], [np.asarray(g) for g in gradients]


def differences(ours, reference):
    """(largest output difference, largest gradient difference / allowed) of two `run`s."""
    (outputs, gradients), (ref_outputs, ref_gradients) = ours, reference
    assert len(outputs) == len(ref_outputs) and len(gradients) == len(ref_gradients)
    output_difference = max(float(np.max(np.abs(a - b))) for a, b in zip(outputs, ref_outputs))
    gradient_ratio = 0.0
    for a, b in zip(gradients, ref_gradients):
        allowed = GRADIENT_ABSOLUTE + GRADIENT_RELATIVE * float(np.max(np.abs(b)))
        gradient_ratio = max(gradient_ratio, float(np.max(np.abs(a - b))) / allowed)
    return output_difference, gradient_ratio


def assert_same(ours, reference, label=""):
    output_difference, gradient_ratio = differences(ours, reference)
    assert output_difference <= OUTPUT_TOLERANCE, f"{label}: outputs differ by {output_difference}"
    assert gradient_ratio <= 1.0, f"{label}: gradients differ by {gradient_ratio} x tolerance"


def example_inputs(kind, seed=0, initial_state=False, batch=BATCH, timesteps=TIMESTEPS):
    rng = np.random.default_rng(seed + 100)
    inputs = rng.normal(size=(batch, timesteps, FEATURES)).astype("float32")
    initial = None
    if initial_state:
        initial = [rng.normal(size=(batch, UNITS)).astype("float32") for _ in range(state_count(kind))]
    return inputs, initial


def compare_setting(kind, training, mask=None, initial_state=False, data_seed=0, **options):
    """Run one setting through our layer and both references; assert and return the worst."""
    ours, references = make_layers(kind, weight_seed=data_seed, **options)
    inputs, initial = example_inputs(kind, data_seed, initial_state)
    mask_array = sequence_mask(mask)
    result = run(ours, inputs, mask_array, initial, training=training)
    assert ours.last_path == "fused", ours.fallback_reason
    worst = (0.0, 0.0)
    for name, reference in references:
        expected = run(reference, inputs, mask_array, initial, training=training)
        assert_same(result, expected, f"{kind} {options} mask={mask} vs {name}")
        worst = tuple(max(a, b) for a, b in zip(worst, differences(result, expected)))
    return worst


# A covering set of settings for the default run; the full product is `slow`.
SETTINGS = [
    dict(return_sequences=True, return_state=True, initial_state=True),
    dict(return_sequences=True, mask="right", go_backwards=True),
    dict(return_sequences=False, return_state=True, mask="left", initial_state=True),
    dict(return_sequences=True, return_state=True, mask="holes", use_bias=False, initial_state=True, go_backwards=True),
    dict(return_sequences=False, go_backwards=True, use_bias=False),
]


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_keras_and_cell_path(kind, setting, training):
    compare_setting(kind, training, **setting)


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_equal_keras_and_cell_path(kind, setting, training):
    # The same comparisons with the loops compiled by XLA (one dense tensor
    # per record) instead of run as graph loops (records in a TensorList).
    compare_setting(kind, training, jit_compile=True, **setting)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_inference_in_columns_equals_keras_and_cell_path(kind, setting, monkeypatch):
    # Wide layers' compiled inference loops keep the states as columns;
    # lowering the width at which that starts runs these tiny layers so.
    from layers import fused

    monkeypatch.setattr(fused, "COLUMN_MIN_WIDTH", 1)
    calls = []
    original = fused._BatchMajorLoops._loop_in_columns
    monkeypatch.setattr(fused._BatchMajorLoops, "_loop_in_columns", lambda self: calls.append(1) or original(self))
    compare_setting(kind, False, jit_compile=True, **setting)
    assert calls


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_compiled_inference_of_a_wide_layer_runs_in_columns(kind, monkeypatch):
    # At the real threshold (no patching): a recurrent kernel 512 wide, a
    # short masked batch.
    from layers import fused

    calls = []
    original = fused._BatchMajorLoops._loop_in_columns
    monkeypatch.setattr(fused._BatchMajorLoops, "_loop_in_columns", lambda self: calls.append(1) or original(self))
    units = -(-fused.COLUMN_MIN_WIDTH // (4 if kind == "lstm" else 3))
    ours, references = make_layers(kind, units=units, jit_compile=True, return_sequences=True)
    inputs, _ = example_inputs(kind)
    mask = sequence_mask("left")
    result = run(ours, inputs, mask, None, training=False)
    assert calls and ours.last_path == "fused"
    for name, reference in references:
        assert_same(result, run(reference, inputs, mask, None, training=False), f"{kind} vs {name}")


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
    from layers import fused

    answers = []
    original = fused.keeps_columns
    monkeypatch.setattr(fused, "keeps_columns", lambda math: answers.append(original(math)) or answers[-1])
    layer = layer_class(units, return_sequences=True)
    tf.function(lambda x: layer(x, training=False)).get_concrete_function(tf.TensorSpec((4, 3, 8)))
    assert answers and set(answers) == {columns}


def record_splits(monkeypatch):
    """A list that gets `fused.splits_batch`'s answer for every compiled recurrence traced."""
    from layers import fused

    answers = []
    original = fused.splits_batch
    monkeypatch.setattr(fused, "splits_batch", lambda *args: answers.append(original(*args)) or answers[-1])
    return answers


# Two settings with masks, going backwards, initial states and without
# biases for the default run; every setting is `slow`.
HALVES_SETTINGS = [SETTINGS[1], SETTINGS[3]]
HALVES_MODES = ["training", "inference_in_rows", "inference_in_columns"]


@pytest.mark.parametrize("mode", HALVES_MODES)
@pytest.mark.parametrize("setting", HALVES_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_in_halves_equal_keras_and_cell_path(kind, setting, mode, monkeypatch):
    compare_in_halves(kind, setting, mode, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("mode", HALVES_MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_in_halves_equal_keras_and_cell_path_every_setting(kind, mode, monkeypatch):
    for setting in SETTINGS:
        with monkeypatch.context() as patch:
            compare_in_halves(kind, setting, mode, patch)


def compare_in_halves(kind, setting, mode, monkeypatch):
    # Traced, compiled loops run the halves of the batch as two calls;
    # lowering the thresholds runs this batch of 3 so (halves of 1 and 2
    # rows). Training splits the saving and the backward loops; the gradient
    # of an inference call reruns the saving loop, which splits too.
    from layers import fused

    for name in ("SPLIT_MIN_BATCH", "SPLIT_TRAINING_MIN_BATCH"):
        monkeypatch.setattr(fused, name, 2)
    if mode == "inference_in_columns":
        monkeypatch.setattr(fused, "COLUMN_MIN_WIDTH", 1)
    answers = record_splits(monkeypatch)
    setting = dict(setting)
    mask, initial_state = sequence_mask(setting.pop("mask", None)), setting.pop("initial_state", False)
    ours, references = make_layers(kind, jit_compile=True, **setting)
    inputs, initial = example_inputs(kind, initial_state=initial_state)
    training = mode == "training"
    result = run(ours, inputs, mask, initial, training=training, traced=True)
    assert answers == [True] and ours.last_path == "fused"
    for name, reference in references:
        assert_same(result, run(reference, inputs, mask, initial, training=training), f"{kind} {setting} vs {name}")


def test_batch_is_split_at_the_measured_sizes_only(monkeypatch):
    # Tracing alone (nothing compiled or run) shows each decision.
    from layers import fused

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
    assert traced(layers.SimpleRNN, 32, None) is None  # an unknown batch is not compiled
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
    with fused.whole_batches():
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


def test_halves_share_one_compiled_program(monkeypatch):
    # Both halves call one program, compiled once, where their shapes and
    # math agree.
    answers = record_splits(monkeypatch)

    def compiled_functions(layer, training, batch):
        spec = tf.TensorSpec((batch, 4, 3))
        concrete = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        library = concrete.graph.as_graph_def().library.function
        return [f.signature.name for f in library if f.attr["_XlaMustCompile"].b]

    assert len(compiled_functions(layers.LSTM(8), False, 16)) == 1
    # Halves of 8 and 9 rows: one program, traced for each shape.
    assert len(compiled_functions(layers.LSTM(8), False, 17)) == 2
    # Training (the forward call traces the saving loop only); with
    # recurrent dropout each half has its rows of the mask, so its own.
    assert len(compiled_functions(layers.LSTM(8), True, 16)) == 1
    assert len(compiled_functions(layers.LSTM(8, recurrent_dropout=0.5), True, 16)) == 2
    assert answers and set(answers) == {True}


def test_compiled_inference_in_columns_with_a_gradient(monkeypatch):
    # A gradient through an inference call reruns the (row) saving loop.
    from layers import fused

    monkeypatch.setattr(fused, "COLUMN_MIN_WIDTH", 1)
    for kind in KINDS:
        ours, _ = make_layers(kind, with_keras=False, jit_compile=True, return_sequences=True)
        reference, _ = make_layers(kind, with_keras=False, fused=False, return_sequences=True)
        inputs, _ = example_inputs(kind)
        x = tf.constant(inputs)
        grads = []
        for layer in (ours, reference):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(layer(x, training=False)))
            grads.append(tape.gradient(loss, [x, *layer.trainable_variables]))
        for got, want in zip(*grads):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5, err_msg=kind)


def test_loops_are_compiled_when_traced_with_known_shapes():
    def compiled_functions(layer, training, spec=tf.TensorSpec((2, 4, 3))):
        concrete = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        library = concrete.graph.as_graph_def().library.function
        return {f.signature.name for f in library if f.attr["_XlaMustCompile"].b}

    for training in (True, False):
        assert compiled_functions(layers.LSTM(5), training), training
        assert compiled_functions(layers.LSTM(5, jit_compile=True), training), training
        assert not compiled_functions(layers.LSTM(5, jit_compile=False), training), training
        for unknown in (tf.TensorSpec((None, 4, 3)), tf.TensorSpec((2, None, 3))):
            assert not compiled_functions(layers.LSTM(5), training, unknown), (training, unknown)
            assert compiled_functions(layers.LSTM(5, jit_compile=True), training, unknown), (training, unknown)
    # "auto" compiles only the sizes where compiling was measured to pay:
    # inference at any size; training up to 512 units, and more units only
    # with a batch of 64 or more.
    from layers import fused

    wide_batch = tf.TensorSpec((fused.COMPILED_WIDE_MIN_BATCH, 2, 3))
    narrow_batch = tf.TensorSpec((fused.COMPILED_WIDE_MIN_BATCH - 1, 2, 3))
    assert compiled_functions(layers.LSTM(512), True, narrow_batch)
    assert not compiled_functions(layers.LSTM(513), True, narrow_batch)
    assert compiled_functions(layers.GRU(513), True, wide_batch)
    assert not compiled_functions(layers.SimpleRNN(513), True, narrow_batch)
    for training in (True, False):
        assert compiled_functions(layers.LSTM(513, jit_compile=True), training, narrow_batch), training
    assert compiled_functions(layers.LSTM(513), False, narrow_batch)
    assert compiled_functions(layers.SimpleRNN(1024), False, narrow_batch)


FULL_GRID = [
    dict(
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        mask=mask,
        initial_state=initial_state,
        use_bias=use_bias,
    )
    for return_sequences, return_state, go_backwards, mask, initial_state, use_bias in itertools.product(
        [False, True], [False, True], [False, True], [None, "right", "left", "holes"], [False, True], [True, False]
    )
]


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS[:4], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", list(KINDS))
def test_transposed_step_products_give_the_same_numbers(kind, setting, training, monkeypatch):
    # Wide step products are computed as (kernel^T @ h^T)^T; lowering the
    # width at which that starts runs every step product of these tiny
    # layers (forward and backward) in that form.
    from layers import fused

    monkeypatch.setattr(fused, "TRANSPOSED_PRODUCT_WIDTH", 1)
    compare_setting(kind, training, **setting)


def test_transposed_step_product_is_taken_for_wide_kernels():
    from layers import fused

    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(3, 8)).astype("float32"))
    for width in (fused.TRANSPOSED_PRODUCT_WIDTH - 1, fused.TRANSPOSED_PRODUCT_WIDTH):
        kernel = tf.constant(rng.normal(size=(8, width)).astype("float32"))
        graph = tf.function(lambda h, k: fused._state_product(h, k, tf.transpose(k))).get_concrete_function(h, kernel)
        transposes = sum(op.type == "Transpose" for op in graph.graph.get_operations())
        # Two transposes of the operands plus the one of the kernel passed in.
        assert transposes == (3 if width >= fused.TRANSPOSED_PRODUCT_WIDTH else 1), width
        np.testing.assert_allclose(graph(h, kernel), h.numpy() @ kernel.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_keras_and_cell_path_full_grid(kind, training):
    for setting in FULL_GRID:
        compare_setting(kind, training, **setting)


@pytest.mark.parametrize(
    "activation, recurrent_activation",
    [("relu", "hard_sigmoid"), ("linear", "tanh"), ("hard_sigmoid", "relu")],
)
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_supports_common_activations(kind, activation, recurrent_activation):
    options = {"activation": activation}
    if kind != "simple_rnn":
        options["recurrent_activation"] = recurrent_activation
    ours, references = make_layers(kind, return_sequences=True, return_state=True, with_keras=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    for training in (True, False):
        result = run(ours, inputs, mask, initial, training=training)
        assert ours.last_path == "fused"
        assert_same(result, run(references[0][1], inputs, mask, initial, training=training), activation)


def test_float64_runs_fused_and_matches_keras_closely():
    ours, references = make_layers("lstm", return_sequences=True, return_state=True, dtype="float64")
    inputs, initial = example_inputs("lstm", initial_state=True)
    inputs = inputs.astype("float64")
    initial = [s.astype("float64") for s in initial]
    for training in (True, False):
        result = run(ours, inputs, sequence_mask("left"), initial, training=training)
        assert ours.last_path == "fused"
        assert result[0][0].dtype == np.float64
        for _, reference in references:
            expected = run(reference, inputs, sequence_mask("left"), initial, training=training)
            output_difference, _ = differences(result, expected)
            assert output_difference < 1e-12
            for a, b in zip(result[1], expected[1]):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_unroll_runs_fused_with_the_same_numbers():
    rolled, _ = make_layers("gru", return_sequences=True, with_keras=False)
    unrolled, _ = make_layers("gru", return_sequences=True, unroll=True, with_keras=False)
    inputs, _ = example_inputs("gru")
    for training in (True, False):
        expected = run(rolled, inputs, sequence_mask("right"), training=training)
        result = run(unrolled, inputs, sequence_mask("right"), training=training)
        assert unrolled.last_path == "fused"
        for a, b in zip(result[0] + result[1], expected[0] + expected[1]):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- path choice
@pytest.mark.parametrize(
    "options, reason_part",
    [
        (dict(fused=False), "fused=False"),
        (dict(activation="elu"), "activation"),
        (dict(recurrent_activation="softsign"), "recurrent_activation"),
    ],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fallback_is_taken_and_equals_keras_rnn_of_our_cell_exactly(kind, options, reason_part):
    ours, references = make_layers(kind, return_sequences=True, return_state=True, with_keras=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    for training in (True, False):
        result = run(ours, inputs, mask, initial, training=training)
        assert ours.last_path == "cell"
        assert reason_part in ours.fallback_reason
        expected = run(references[0][1], inputs, mask, initial, training=training)
        for a, b in zip(result[0] + result[1], expected[0] + expected[1]):
            np.testing.assert_array_equal(a, b)


def test_simple_rnn_with_unsupported_activation_falls_back():
    ours, references = make_layers("simple_rnn", activation="softplus", return_sequences=True, with_keras=False)
    inputs, _ = example_inputs("simple_rnn")
    result = run(ours, inputs)
    assert ours.last_path == "cell" and "softplus" in ours.fallback_reason
    np.testing.assert_array_equal(result[0][0], run(references[0][1], inputs)[0][0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_precision_falls_back_to_the_cell_path(dtype_policy, policy):
    dtype_policy(policy)
    layer = layers.LSTM(4, return_sequences=True)
    reference = keras.layers.RNN(layers.LSTMCell(4), return_sequences=True)
    inputs = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    reference(inputs)
    layer.build((None, None, 5))
    layer.set_weights(reference.get_weights())
    output = layer(inputs)
    assert layer.last_path == "cell"
    assert "float16" in layer.fallback_reason
    np.testing.assert_array_equal(np.asarray(output), np.asarray(reference(inputs)))


def test_subclassed_cell_is_not_fused():
    class ShiftedLSTMCell(layers.LSTMCell):
        def step(self, inputs, states, recurrent_mask):
            output, new_states = super().step(inputs, states, recurrent_mask)
            return output + 1.0, new_states

    class ShiftedLSTM(layers.LSTM):
        cell_class = ShiftedLSTMCell

    layer = ShiftedLSTM(3)
    output = layer(np.zeros((2, 4, 2), "float32"))
    assert layer.last_path == "cell" and "ShiftedLSTMCell" in layer.fallback_reason
    assert np.all(np.asarray(output) >= 0.0)  # the shift was applied


def test_path_is_recorded_inside_tf_function():
    layer = layers.GRU(3)
    inputs = np.zeros((2, 4, 2), "float32")
    traced = tf.function(lambda x: layer(x, training=True))
    traced(inputs)
    assert layer.last_path == "fused"
    slow = layers.GRU(3, fused=False)
    tf.function(lambda x: slow(x))(inputs)
    assert slow.last_path == "cell" and slow.fallback_reason == "fused=False"


# ------------------------------------------------------------- dropout
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bptt_steps, jit_compile", [(None, "auto"), (2, "auto"), (None, True), (2, True)])
def test_dropout_masks_equal_the_cell_paths_for_the_same_seed(kind, bptt_steps, jit_compile):
    # Eager calls run graph loops under "auto"; True compiles them.
    options = dict(return_sequences=True, return_state=True, dropout=0.3, recurrent_dropout=0.4, seed=5)
    if bptt_steps:
        options["bptt_steps"] = bptt_steps
    fused, _ = make_layers(kind, with_keras=False, jit_compile=jit_compile, **options)
    cell_path, _ = make_layers(kind, with_keras=False, fused=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    result = run(fused, inputs, mask, initial, training=True)
    expected = run(cell_path, inputs, mask, initial, training=True)
    assert fused.last_path == "fused" and cell_path.last_path == "cell"
    assert_same(result, expected, f"{kind} dropout")
    # Dropout changed something, and inference ignores it.
    plain, _ = make_layers(kind, with_keras=False, **{k: v for k, v in options.items() if "dropout" not in k})
    assert np.max(np.abs(result[0][0] - run(plain, inputs, mask, initial, training=True)[0][0])) > 1e-2
    assert_same(run(fused, inputs, mask, initial), run(plain, inputs, mask, initial), "inference")


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_masks_are_split_with_the_batch(kind, monkeypatch):
    # Training in halves: each half's loops take their rows of the recurrent
    # dropout mask, so the numbers stay those of the cell path (both traced,
    # the first call of each, with the same seed).
    from layers import fused

    monkeypatch.setattr(fused, "SPLIT_TRAINING_MIN_BATCH", 2)
    answers = record_splits(monkeypatch)
    options = dict(return_sequences=True, return_state=True, dropout=0.3, recurrent_dropout=0.4, seed=5, bptt_steps=2)
    ours, _ = make_layers(kind, with_keras=False, jit_compile=True, **options)
    cell_path, _ = make_layers(kind, with_keras=False, fused=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    result = run(ours, inputs, mask, initial, training=True, traced=True)
    assert answers == [True] and ours.last_path == "fused"
    assert_same(result, run(cell_path, inputs, mask, initial, training=True, traced=True), f"{kind} dropout")


def test_dropout_draws_new_masks_for_every_call():
    layer, _ = make_layers("lstm", with_keras=False, dropout=0.5, seed=1)
    inputs, _ = example_inputs("lstm")
    first = np.asarray(layer(inputs, training=True))
    second = np.asarray(layer(inputs, training=True))
    assert np.max(np.abs(first - second)) > 1e-3


# --------------------------------------------------------- truncated BPTT
def truncated_reference(cell, inputs, mask, initial_state, bptt_steps, go_backwards):
    """Step-by-step loop over the cell with explicit `stop_gradient` at chunk starts.

    Returns all outputs (batch, time, units) and the final states; masked
    steps carry the states and repeat the previous output (zeros before the
    first valid step), as `keras.layers.RNN` does.
    """
    steps = list(range(inputs.shape[1]))
    if go_backwards:
        steps.reverse()
    states = list(initial_state)
    previous_output = tf.zeros_like(states[0])
    outputs = []
    for position, t in enumerate(steps):
        if position > 0 and position % bptt_steps == 0:
            states = [tf.stop_gradient(s) for s in states]
            previous_output = tf.stop_gradient(previous_output)
        output, new_states = cell(inputs[:, t], states)
        if mask is not None:
            valid = mask[:, t : t + 1]
            new_states = [tf.where(valid, n, s) for n, s in zip(new_states, states)]
            output = tf.where(valid, output, previous_output)
        states, previous_output = list(new_states), output
        outputs.append(output)
    return tf.stack(outputs, axis=1), states


class _TruncatedReference(keras.layers.Layer):
    """Wraps `truncated_reference` so that `run` can drive it like a layer."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.supports_masking = True

    def call(self, inputs, mask=None, initial_state=None, training=False):
        sequence, states = truncated_reference(
            self.layer.cell, inputs, mask, initial_state, self.layer.bptt_steps, self.layer.go_backwards
        )
        return [sequence, *states]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bptt_steps, go_backwards, mask", [(2, False, "holes"), (3, True, "left"), (1, False, None)])
def test_truncated_bptt_equals_stop_gradient_reference(kind, bptt_steps, go_backwards, mask):
    options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards, bptt_steps=bptt_steps)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask_array = sequence_mask(mask)
    reference_layer, _ = make_layers(kind, with_keras=False, **options)
    expected = run(_TruncatedReference(reference_layer), inputs, mask_array, initial)
    for fused, training, jit_compile in (
        (True, True, "auto"), (True, False, "auto"), (True, True, True), (True, False, True), (False, True, "auto")
    ):
        layer, _ = make_layers(kind, with_keras=False, fused=fused, jit_compile=jit_compile, **options)
        result = run(layer, inputs, mask_array, initial, training=training)
        assert layer.last_path == ("fused" if fused else "cell")
        label = f"{kind} bptt_steps={bptt_steps} fused={fused} training={training} jit_compile={jit_compile}"
        assert_same(result, expected, label)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_truncation_changes_gradients_but_not_outputs(kind):
    inputs, initial = example_inputs(kind, initial_state=True)
    full_layer, _ = make_layers(kind, with_keras=False, return_sequences=True)
    truncated_layer, _ = make_layers(kind, with_keras=False, return_sequences=True, bptt_steps=2)
    long_layer, _ = make_layers(kind, with_keras=False, return_sequences=True, bptt_steps=TIMESTEPS)
    full = run(full_layer, inputs, None, initial, training=True)
    truncated = run(truncated_layer, inputs, None, initial, training=True)
    np.testing.assert_allclose(truncated[0][0], full[0][0], atol=1e-6)
    input_gradient_change = np.max(np.abs(truncated[1][0] - full[1][0]))
    assert input_gradient_change > 1e-3
    # The initial state gets gradient only through the first chunk (steps 0 and 1).
    assert np.max(np.abs(truncated[1][1] - full[1][1])) > 1e-3
    # A chunk as long as the sequence is full back-propagation.
    assert_same(run(long_layer, inputs, None, initial, training=True), full, "bptt_steps=T")


# --------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)]
)
def test_invalid_bptt_steps_is_rejected(value, error):
    with pytest.raises(error, match="`bptt_steps`.*positive integer"):
        layers.LSTM(3, bptt_steps=value)


def test_invalid_fused_is_rejected():
    with pytest.raises(TypeError, match="`fused`.*bool"):
        layers.GRU(3, fused="yes")


def test_invalid_jit_compile_is_rejected():
    for value in ("yes", 1, None):
        with pytest.raises(TypeError, match="`jit_compile`.*True, False or 'auto'"):
            layers.LSTM(3, jit_compile=value)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_recurrence_gradient_survives_autograph(jit_compile):
    # A caller's `tf.function` converts what it calls with AutoGraph, which
    # must leave the hand-written gradient's closure intact.
    from layers import fused

    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(2, 4, 3)).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(3, 5)).astype("float32"))
    recurrent_kernel = tf.Variable(rng.normal(size=(5, 5)).astype("float32"))
    initial = [tf.zeros((2, 5))]

    def gradients(training):
        with tf.GradientTape() as tape:
            math = fused._SimpleRNNMath(5, tf.convert_to_tensor(recurrent_kernel), None, None, fused._TANH, None)
            h_seq, _ = fused.run_recurrence(
                math, inputs, tf.convert_to_tensor(kernel), None, initial,
                save_for_gradient=training, jit_compile=jit_compile,
            )
            loss = tf.reduce_sum(h_seq * h_seq)
        return tape.gradient(loss, [kernel, recurrent_kernel])

    for training in (True, False):
        expected = gradients(training)
        traced = tf.function(gradients, autograph=True)(training)
        for a, b in zip(traced, expected):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
            assert float(tf.reduce_max(tf.abs(a))) > 0
