"""The fused JAX path (`layers.fused_jax`) equals the cell path and Keras's layers on JAX.

Run with `KERAS_BACKEND=jax`; on another backend, or without JAX, the module
is skipped. Every comparison runs the same weights and inputs through our
layer on its fused path and the same layer with `fused=False` (our cell in
`keras.layers.RNN`, differentiated by JAX), and compares outputs and final
states (within 1e-5) and the gradients (`jax.grad`) of a fixed random
projection of all outputs with respect to the inputs, the initial states and
every weight (within 1e-5 + 1e-4 * max|reference|).
"""

import keras
import numpy as np
import pytest

# Runs in the JAX run of the backend tests (`KERAS_BACKEND=jax pytest tests/layers -m backends`).
pytestmark = pytest.mark.backends

if keras.backend.backend() != "jax":
    pytest.skip("the fused JAX path runs on the JAX backend (KERAS_BACKEND=jax)", allow_module_level=True)
jax = pytest.importorskip("jax")
jnp = jax.numpy

import layers  # noqa: E402 (after the backend check, which skips the module elsewhere)

OUTPUT_TOLERANCE = 1e-5
GRADIENT_ABSOLUTE = 1e-5
GRADIENT_RELATIVE = 1e-4
BATCH, STEPS, FEATURES, UNITS = 3, 7, 4, 5

# kind -> (our layer, Keras's layer, fixed keyword arguments)
KINDS = {
    "simple_rnn": (layers.SimpleRNN, keras.layers.SimpleRNN, {}),
    "lstm": (layers.LSTM, keras.layers.LSTM, {}),
    "gru": (layers.GRU, keras.layers.GRU, {"reset_after": True}),
    "gru_reset_before": (layers.GRU, keras.layers.GRU, {"reset_after": False}),
}

# Each setting is run for every kind. (On JAX, Keras's loop repeats the
# carried state at a masked step, so outputs before the first valid step
# are the initial state; the cell path with `bptt_steps` repeats the last
# output instead, zeros at first, so truncated settings here start every
# sequence with a valid step; see layers/README.md.)
SETTINGS = [
    {"return_sequences": True},
    {"return_sequences": False, "mask": "holes"},
    {"return_sequences": True, "mask": "left", "go_backwards": True, "initial_state": True},
    {"return_sequences": False, "go_backwards": True, "initial_state": True, "use_bias": False},
    {"return_sequences": True, "bptt_steps": 3, "mask": "right", "initial_state": True},
    {"return_sequences": False, "bptt_steps": 2, "mask": "holes", "go_backwards": True},
    # Dropout in training: both paths draw the same masks from the same seed.
    {
        "return_sequences": True,
        "dropout": 0.3,
        "recurrent_dropout": 0.4,
        "seed": 5,
        "mask": "holes",
        "initial_state": True,
    },
    {"return_sequences": False, "recurrent_dropout": 0.5, "seed": 6, "bptt_steps": 3, "go_backwards": True},
]


def setting_id(setting):
    return "-".join(f"{key}={value}" for key, value in setting.items())


def sequence_mask(kind):
    """A `(batch, steps)` mask: right-padded, left-padded, or with holes (each row differs)."""
    mask = np.ones((BATCH, STEPS), bool)
    if kind == "right":
        mask[0, 4:] = False
        mask[1, 6:] = False
    elif kind == "left":
        mask[0, :3] = False
        mask[2, :1] = False
    elif kind == "holes":
        mask[0, 2] = False
        mask[1, 0] = False
        mask[1, 5:] = False
        mask[2, 3:5] = False
    return mask


def state_count(kind):
    return 2 if kind == "lstm" else 1


def make_pair(kind, weight_seed=0, **layer_arguments):
    """Our layer on the fused path and on the cell path, built with the same random weights."""
    ours, _, fixed = KINDS[kind]
    fused = ours(UNITS, return_state=True, **fixed, **layer_arguments)
    cell = ours(UNITS, return_state=True, fused=False, **fixed, **layer_arguments)
    rng = np.random.default_rng(weight_seed)
    for layer in (fused, cell):
        layer.build((BATCH, STEPS, FEATURES))
    weights = [rng.uniform(-0.6, 0.6, size=w.shape).astype("float32") for w in fused.get_weights()]
    fused.set_weights(weights)
    cell.set_weights(weights)
    return fused, cell


def outputs_and_gradients(layer, inputs, initial_state, mask, projections):
    """The layer's outputs and the gradients of `sum(projection * output)` w.r.t. weights, inputs, initial states.

    One `jax.jit`-compiled function (a compile costs less than running the
    steps' operations one by one).
    """
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, inputs, initial_state):
        outputs, _ = layer.stateless_call(
            trainable, non_trainable, inputs, initial_state=initial_state, mask=mask, training=True
        )
        return sum(jnp.sum(p * o) for p, o in zip(projections, outputs, strict=True)), outputs

    trainable = [v.value for v in layer.trainable_variables]
    gradient = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
    gradients, outputs = gradient(trainable, inputs, initial_state)
    return outputs, gradients


def assert_gradients_close(actual, expected, what):
    for index, (a, e) in enumerate(zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True)):
        a, e = np.asarray(a), np.asarray(e)
        tolerance = GRADIENT_ABSOLUTE + GRADIENT_RELATIVE * np.max(np.abs(e))
        np.testing.assert_allclose(a, e, rtol=0, atol=tolerance, err_msg=f"{what}: gradient {index}")


def example(kind, setting, seed=1):
    rng = np.random.default_rng(seed)
    inputs = jnp.asarray(rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32"))
    initial_state = None
    if setting.get("initial_state"):
        initial_state = [
            jnp.asarray(rng.normal(size=(BATCH, UNITS)).astype("float32")) for _ in range(state_count(kind))
        ]
    mask = None if setting.get("mask") is None else jnp.asarray(sequence_mask(setting["mask"]))
    return inputs, initial_state, mask


def layer_arguments(setting):
    return {key: value for key, value in setting.items() if key not in ("mask", "initial_state")}


def run_both(kind, setting, **extra):
    inputs, initial_state, mask = example(kind, setting)
    fused, cell = make_pair(kind, **layer_arguments(setting), **extra)
    rng = np.random.default_rng(2)
    output_shape = (BATCH, STEPS, UNITS) if setting.get("return_sequences") else (BATCH, UNITS)
    shapes = [output_shape] + [(BATCH, UNITS)] * state_count(kind)
    projections = [jnp.asarray(rng.normal(size=shape).astype("float32")) for shape in shapes]
    results = {}
    for name, layer in (("fused", fused), ("cell", cell)):
        results[name] = outputs_and_gradients(layer, inputs, initial_state, mask, projections)
    assert fused.last_path == "fused", fused.fallback_reason
    assert cell.last_path == "cell"
    return results


@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_cell_path_outputs_and_gradients(kind, setting):
    results = run_both(kind, setting)
    (fused_outputs, fused_gradients), (cell_outputs, cell_gradients) = results["fused"], results["cell"]
    assert len(fused_outputs) == 1 + state_count(kind)
    for index, (f, c) in enumerate(zip(fused_outputs, cell_outputs, strict=True)):
        np.testing.assert_allclose(f, c, rtol=0, atol=OUTPUT_TOLERANCE, err_msg=f"output {index}")
    names = ("weights", "inputs", "initial states")
    for name, f, c in zip(names, fused_gradients, cell_gradients, strict=True):
        assert_gradients_close(f, c, name)
    # Every weight gets a gradient, and the gradients are not all zero (the
    # initial states' are, when truncation cuts them off the last output).
    assert len(jax.tree.leaves(fused_gradients[0])) == (2 if setting.get("use_bias") is False else 3)
    reached = fused_gradients[:2] if setting.get("bptt_steps") else fused_gradients
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(reached))


@pytest.mark.parametrize("kind", list(KINDS))
def test_truncation_changes_the_gradients_and_not_the_outputs(kind):
    inputs, _, _ = example(kind, {})
    projections = [jnp.ones((BATCH, STEPS, UNITS))] + [jnp.ones((BATCH, UNITS))] * state_count(kind)
    results = []
    for bptt_steps in (2, None):
        fused, _ = make_pair(kind, return_sequences=True, bptt_steps=bptt_steps)
        results.append(outputs_and_gradients(fused, inputs, None, None, projections))
        assert fused.last_path == "fused"
    (truncated_outputs, truncated_gradients), (full_outputs, full_gradients) = results
    for t, f in zip(truncated_outputs, full_outputs, strict=True):
        np.testing.assert_allclose(t, f, rtol=0, atol=OUTPUT_TOLERANCE)
    kernel_truncated, kernel_full = np.asarray(truncated_gradients[0][1]), np.asarray(full_gradients[0][1])
    assert np.max(np.abs(kernel_truncated - kernel_full)) > 1e-3 * np.max(np.abs(kernel_full))


# One choice of activations per kind (the step maths differ per kind).
OTHER_ACTIVATIONS = {
    "simple_rnn": {"activation": "relu"},
    "lstm": {"activation": "linear", "recurrent_activation": "hard_sigmoid"},
    "gru": {"activation": "sigmoid", "recurrent_activation": "relu"},
    "gru_reset_before": {"activation": "relu", "recurrent_activation": "hard_sigmoid"},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_cell_path_with_other_activations(kind):
    setting = {"return_sequences": True, "mask": "holes", "initial_state": True}
    results = run_both(kind, setting, **OTHER_ACTIVATIONS[kind])
    for f, c in zip(results["fused"][0], results["cell"][0], strict=True):
        np.testing.assert_allclose(f, c, rtol=0, atol=OUTPUT_TOLERANCE)
    for name, f, c in zip(("weights", "inputs", "initial states"), results["fused"][1], results["cell"][1]):
        assert_gradients_close(f, c, name)


@pytest.mark.parametrize(
    "setting",
    [
        {"return_sequences": True, "mask": "holes", "go_backwards": True},
        {"return_sequences": False, "mask": "left", "initial_state": True},
    ],
    ids=setting_id,
)
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_keras_layer(kind, setting):
    inputs, initial_state, mask = example(kind, setting)
    fused, _ = make_pair(kind, **layer_arguments(setting))
    _, builtin, fixed = KINDS[kind]
    reference = builtin(UNITS, return_state=True, **fixed, **layer_arguments(setting))
    reference.build((BATCH, STEPS, FEATURES))
    reference.set_weights(fused.get_weights())
    ours = fused(inputs, initial_state=initial_state, mask=mask)
    assert fused.last_path == "fused"
    theirs = reference(inputs, initial_state=initial_state, mask=mask)
    for index, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(o, t, rtol=0, atol=OUTPUT_TOLERANCE, err_msg=f"output {index}")


def test_fused_inside_bidirectional_with_a_mask_equals_the_cell_path():
    inputs, _, mask = example("gru", {"mask": "holes"})
    results = []
    for fused in (True, False):
        layer = keras.layers.Bidirectional(layers.GRU(UNITS, return_sequences=True, fused=fused))
        layer.build((BATCH, STEPS, FEATURES))
        layer.set_weights([np.full(w.shape, 0.1 * (i + 1), "float32") for i, w in enumerate(layer.get_weights())])
        results.append(np.asarray(layer(inputs, mask=mask)))
        assert layer.forward_layer.last_path == ("fused" if fused else "cell")
    np.testing.assert_allclose(results[0], results[1], rtol=0, atol=OUTPUT_TOLERANCE)


def test_what_falls_back_and_why():
    inputs = np.zeros((BATCH, STEPS, FEATURES), "float32")
    other = layers.GRU(UNITS, activation="softsign")
    other(inputs)
    assert other.last_path == "cell" and other.fallback_reason.startswith("activation")
    off = layers.SimpleRNN(UNITS, fused=False)
    off(inputs)
    assert (off.last_path, off.fallback_reason) == ("cell", "fused=False")


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_runs_fused_and_drops(kind):
    # Dropout runs on the fused path in training; with `training=False` no
    # dropout applies; new masks are drawn for every call.
    inputs = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    ours, _, fixed = KINDS[kind]
    layer = ours(UNITS, dropout=0.4, recurrent_dropout=0.4, seed=1, return_sequences=True, **fixed)
    plain = np.asarray(layer(inputs, training=False))
    first, second = (np.asarray(layer(inputs, training=True)) for _ in range(2))
    assert layer.last_path == "fused" and layer.fallback_reason is None
    assert np.max(np.abs(first - plain)) > 1e-2 and np.max(np.abs(second - first)) > 1e-2


def _model(fused):
    model = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            layers.LSTM(UNITS, return_sequences=True, fused=fused, bptt_steps=3),
            layers.GRU(UNITS, fused=fused),
            keras.layers.Dense(1),
        ]
    )
    rng = np.random.default_rng(3)
    model.set_weights([rng.uniform(-0.5, 0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_model_fit_on_the_fused_path_equals_the_cell_path():
    rng = np.random.default_rng(4)
    inputs = rng.normal(size=(8, STEPS, FEATURES)).astype("float32")
    targets = rng.normal(size=(8, 1)).astype("float32")
    fused, cell = _model(True), _model(False)
    before = [np.array(w) for w in fused.get_weights()]
    losses = {}
    for name, model in (("fused", fused), ("cell", cell)):
        history = model.fit(inputs, targets, batch_size=4, epochs=3, shuffle=False, verbose=0)
        losses[name] = history.history["loss"]
    assert fused.layers[0].last_path == "fused" and fused.layers[1].last_path == "fused"
    assert cell.layers[0].last_path == "cell"
    np.testing.assert_allclose(losses["fused"], losses["cell"], rtol=1e-4)
    assert losses["fused"][-1] < losses["fused"][0]
    for f, c, b in zip(fused.get_weights(), cell.get_weights(), before, strict=True):
        assert np.max(np.abs(f - b)) > 1e-4  # every weight trained
        np.testing.assert_allclose(f, c, rtol=0, atol=1e-4)


def test_jitted_training_step_equals_the_cell_path():
    setting = {"return_sequences": True, "mask": "right", "initial_state": True, "bptt_steps": 3}
    inputs, initial_state, mask = example("lstm", setting)
    fused, cell = make_pair("lstm", **layer_arguments(setting))

    def train_step_of(layer):
        non_trainable = [v.value for v in layer.non_trainable_variables]

        @jax.jit
        def train_step(trainable, inputs, initial_state):
            def loss(trainable):
                outputs, _ = layer.stateless_call(
                    trainable, non_trainable, inputs, initial_state=initial_state, mask=mask, training=True
                )
                return jnp.mean(jnp.square(outputs[0] - 0.5))

            value, gradients = jax.value_and_grad(loss)(trainable)
            return [w - 0.1 * g for w, g in zip(trainable, gradients)], value

        return train_step

    results = {}
    for name, layer in (("fused", fused), ("cell", cell)):
        trainable, train_step = [v.value for v in layer.trainable_variables], train_step_of(layer)
        values = []
        for _ in range(3):
            trainable, value = train_step(trainable, inputs, initial_state)
            values.append(float(value))
        results[name] = (trainable, values)
    assert fused.last_path == "fused"
    np.testing.assert_allclose(results["fused"][1], results["cell"][1], rtol=1e-5)
    for f, c in zip(results["fused"][0], results["cell"][0], strict=True):
        np.testing.assert_allclose(f, c, rtol=0, atol=1e-5)
