"""What the tests of the fused path share: layers with equal weights, runs and comparisons.

The tests check the fused whole-sequence path of `SimpleRNN`, `LSTM`, `GRU`
and of the variant layers (`LayerNormLSTM`, ..., `VARIANT_KINDS`) against
references. Every comparison runs the same weights and inputs through

- our layer (fused path: the forward loop saves what the hand-written BPTT
  needs when `training=True`; with `training=False` the lean inference
  loop runs, and a gradient taken anyway repeats the saving forward loop
  before the hand-written BPTT), with its loops run as TensorFlow graph
  loops (what an eager call does by default) and compiled by XLA
  (`jit_compile=True`),
- Keras's built-in layer (`keras.layers.LSTM`, ...; the variants have none), and
- our cell inside `keras.layers.RNN` (the generic cell path, differentiated
  by TensorFlow's autodiff),

and compares outputs, final states and the gradients of a fixed random
projection of all outputs with respect to the inputs, the initial states and
every weight: outputs within 1e-5 absolute, gradients within
1e-5 + 1e-4 * max|reference|.
"""

import keras
import numpy as np
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
# The variant layers, each with options that reach every branch of its
# fused step; no Keras layer to compare with.
VARIANT_KINDS = {
    "layer_norm_simple_rnn": (layers.LayerNormSimpleRNN, None, layers.LayerNormSimpleRNNCell, {}),
    "layer_norm_lstm": (layers.LayerNormLSTM, None, layers.LayerNormLSTMCell, {}),
    "layer_norm_lstm_paper": (
        layers.LayerNormLSTM,
        None,
        layers.LayerNormLSTMCell,
        {"carry_normalized_state": False},
    ),
    "layer_norm_gru": (layers.LayerNormGRU, None, layers.LayerNormGRUCell, {"reset_after": True}),
    "layer_norm_gru_reset_before": (layers.LayerNormGRU, None, layers.LayerNormGRUCell, {"reset_after": False}),
    "peephole_lstm": (layers.PeepholeLSTM, None, layers.PeepholeLSTMCell, {}),
    "projection_lstm": (
        layers.ProjectionLSTM,
        None,
        layers.ProjectionLSTMCell,
        {"proj_units": 4, "use_peepholes": True, "cell_clip": 0.6},
    ),
    "projection_lstm_coupled": (
        layers.ProjectionLSTM,
        None,
        layers.ProjectionLSTMCell,
        {"proj_units": 3, "use_peepholes": True, "coupled_input_forget_gate": True, "proj_clip": 0.3},
    ),
}
ALL_KINDS = {**KINDS, **VARIANT_KINDS}
CELL_ARGUMENTS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "reset_after",
    "dropout",
    "recurrent_dropout",
    "seed",
    "carry_normalized_state",
    "proj_units",
    "use_peepholes",
    "coupled_input_forget_gate",
    "cell_clip",
    "proj_clip",
)
BATCH, TIMESTEPS, FEATURES, UNITS = 3, 5, 4, 6


def state_widths(kind, units=UNITS):
    """The widths of a layer's states (a projection's first state is `proj_units` wide)."""
    options = ALL_KINDS[kind][3]
    if "lstm" not in kind:
        return [units]
    return [options.get("proj_units", units), units]


def state_count(kind):
    return len(state_widths(kind))


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
    ours_class, keras_class, cell_class, fixed = ALL_KINDS[kind]
    options = {**fixed, **options}
    ours = ours_class(units, **options)
    ours.build((batch, None, features))
    rng = np.random.default_rng(weight_seed)
    # Only the trainable weights are drawn; the others (the dropout seed
    # generator's state) keep their values.
    weights = [
        rng.uniform(-0.6, 0.6, size=w.shape).astype(w.dtype) if w.trainable else np.asarray(w) for w in ours.weights
    ]
    ours.set_weights(weights)
    cell_options = {k: v for k, v in options.items() if k in CELL_ARGUMENTS or k == "dtype"}
    rnn_options = {
        k: v for k, v in options.items() if k not in CELL_ARGUMENTS and k not in ("bptt_steps", "fused", "jit_compile")
    }
    references = []
    if with_keras and keras_class is not None:
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
    else eagerly; with `traced="batch unknown"`, one traced with the batch
    dimension unknown (as `fit` traces a dataset's batches).
    """
    inputs = tf.constant(inputs)
    initial = None if initial_state is None else [tf.constant(s) for s in initial_state]
    mask = None if mask is None else tf.constant(mask)
    batch = inputs.shape[0]  # (the outputs of a trace may not know it)

    def outputs_and_gradients(inputs, initial, mask):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            if initial is not None:
                tape.watch(initial)
            result = layer(inputs, mask=mask, initial_state=initial, training=training)
            outputs = list(result) if isinstance(result, (list, tuple)) else [result]
            rng = np.random.default_rng(loss_seed)
            loss = sum(tf.reduce_sum(o * rng.normal(size=[batch, *o.shape[1:]]).astype(o.dtype.name)) for o in outputs)
        sources = [inputs] + (initial or []) + list(layer.trainable_weights)
        return outputs, tape.gradient(loss, sources)

    if traced == "batch unknown":

        def unknown_batch(tensor):
            return None if tensor is None else tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype)

        signature = [unknown_batch(inputs), None if initial is None else [unknown_batch(s) for s in initial]]
        signature.append(unknown_batch(mask))
        with_arguments = outputs_and_gradients
        # (`input_signature` takes tensors only: the `None`s stay outside.)
        present = [index for index, spec in enumerate(signature) if spec is not None]
        traced_call = tf.function(
            lambda *given: with_arguments(*_fill(given, present, 3)), input_signature=[signature[i] for i in present]
        )
        outputs, gradients = traced_call(*[(inputs, initial, mask)[i] for i in present])
        return [np.asarray(o) for o in outputs], [np.asarray(g) for g in gradients]
    if traced:
        outputs_and_gradients = tf.function(outputs_and_gradients)
    outputs, gradients = outputs_and_gradients(inputs, initial, mask)
    return [np.asarray(o) for o in outputs], [np.asarray(g) for g in gradients]


def _fill(given, present, count):
    """`count` arguments: those `given`, at the indices `present`, and `None` elsewhere."""
    arguments = [None] * count
    for index, value in zip(present, given):
        arguments[index] = value
    return arguments


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
        initial = [rng.normal(size=(batch, width)).astype("float32") for width in state_widths(kind)]
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


def covering_settings(kinds, offset=0):
    """`(kind, setting, training)` for each kind, the settings taken in turn (with `training` alternating).

    A covering set for the default run: every kind once, every setting and
    both loops across the kinds. `offset` starts elsewhere in the turn.
    """
    return [
        (kind, SETTINGS[(index + offset) % len(SETTINGS)], (index + offset) % 2 == 0)
        for index, kind in enumerate(kinds)
    ]


def setting_id(setting):
    """A test id for one of the `SETTINGS`: its options, `key=value` joined by `-`."""
    return "-".join(f"{k}={v}" for k, v in setting.items())


def record_splits(monkeypatch):
    """A list that gets `policy.splits_batch`'s answer for every compiled recurrence traced."""
    from layers.fused import policy

    answers = []
    original = policy.splits_batch
    monkeypatch.setattr(policy, "splits_batch", lambda *args: answers.append(original(*args)) or answers[-1])
    return answers
