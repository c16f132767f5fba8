"""Our cells and sequence layers against Keras's built-in ones, on the backend Keras runs on.

Every test here runs under each backend (`KERAS_BACKEND=jax pytest tests/layers
-m backends`): outputs and final states within 1e-5, gradients (through the
backend's own autodiff, see `tests.layers.autodiff`) within 1e-4 relative,
for masks, `initial_state`, `stateful`, `unroll`, `Bidirectional`, stacking and
dropout with a seed; training with dropout; `.keras` files in safe mode. The
last test saves a `.keras` file under each installed backend and loads it
under each other one, in fresh processes.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import layers
from tests.layers.autodiff import outputs_and_gradients, relative_difference
from tests.support import REPO

pytestmark = pytest.mark.backends

BACKEND = keras.backend.backend()
OUTPUT_TOLERANCE = 1e-5  # absolute
GRADIENT_TOLERANCE = 1e-4  # relative, per tensor
BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 4

# kind: (our layer, our cell, Keras's layer, Keras's cell, arguments of all four)
KINDS = {
    "simple_rnn": (layers.SimpleRNN, layers.SimpleRNNCell, keras.layers.SimpleRNN, keras.layers.SimpleRNNCell, {}),
    "lstm": (layers.LSTM, layers.LSTMCell, keras.layers.LSTM, keras.layers.LSTMCell, {}),
    "gru": (layers.GRU, layers.GRUCell, keras.layers.GRU, keras.layers.GRUCell, {"reset_after": True}),
    "gru_reset_before": (
        layers.GRU,
        layers.GRUCell,
        keras.layers.GRU,
        keras.layers.GRUCell,
        {"reset_after": False},
    ),
}
CELL_ARGUMENTS = ("dropout", "recurrent_dropout", "seed")
# A mask with a hole and left padding: at masked steps states and outputs carry over.
MASK = np.array([[True, True, False, True], [False, True, True, True]])


def recurrent(kind, form, units=UNITS, **options):
    """(ours, Keras's): the sequence layer (`form="layer"`) or `keras.layers.RNN` of the cell."""
    our_layer, our_cell, keras_layer, keras_cell, arguments = KINDS[kind]
    if form == "layer":
        return (our_layer(units, **arguments, **options), keras_layer(units, **arguments, **options))
    cell_options = {k: v for k, v in options.items() if k in CELL_ARGUMENTS}
    rnn_options = {k: v for k, v in options.items() if k not in CELL_ARGUMENTS}
    if form == "cell":
        return (
            keras.layers.RNN(our_cell(units, **arguments, **cell_options), **rnn_options),
            keras.layers.RNN(keras_cell(units, **arguments, **cell_options), **rnn_options),
        )
    if form == "stacked_cells":
        return tuple(
            keras.layers.RNN([cell(units, **arguments, **cell_options), cell(units + 1, **arguments)], **rnn_options)
            for cell in (our_cell, keras_cell)
        )
    raise ValueError(f"Received an invalid value for argument `form`: {form!r}.")


def sequences(seed=0, batch=BATCH):
    return np.random.default_rng(seed).normal(size=(batch, TIME, FEATURES)).astype("float32")


def share_random_weights(ours, theirs, seed=1):
    """Random weights on ours (biases included), copied to Keras's network."""
    rng = np.random.default_rng(seed)
    for our_weight, their_weight in zip(ours.trainable_weights, theirs.trainable_weights):
        value = (0.5 * rng.normal(size=tuple(our_weight.shape))).astype("float32")
        our_weight.assign(value)
        their_weight.assign(value)


def assert_equal_networks(ours, theirs, call, arrays, label):
    our_outputs, our_gradients = outputs_and_gradients(ours, lambda *t: call(ours, *t), arrays)
    their_outputs, their_gradients = outputs_and_gradients(theirs, lambda *t: call(theirs, *t), arrays)
    assert len(our_outputs) == len(their_outputs) and len(our_gradients) == len(their_gradients)
    for index, (a, b) in enumerate(zip(our_outputs, their_outputs)):
        assert a.shape == b.shape, (label, index)
        np.testing.assert_allclose(a, b, atol=OUTPUT_TOLERANCE, rtol=0, err_msg=f"{label} output {index}")
    for index, (a, b) in enumerate(zip(our_gradients, their_gradients)):
        assert relative_difference(a, b) <= GRADIENT_TOLERANCE, (label, index, relative_difference(a, b))
    # The comparison can fail: the gradients are not all zero.
    assert max(np.max(np.abs(g)) for g in their_gradients) > 1e-3, label
    return our_outputs


CASES = {
    # case: (options, wrapper, uses_mask, uses_initial_state)
    "sequences_and_states": (dict(return_sequences=True, return_state=True), None, False, False),
    "backwards_masked": (dict(return_sequences=True, go_backwards=True), None, True, False),
    "initial_state": (dict(return_state=True), None, True, True),
    "unrolled": (dict(return_sequences=True, unroll=True), None, False, False),
    "bidirectional": (dict(return_sequences=True), "bidirectional", True, False),
    "stacked": (dict(return_sequences=True), "stacked", True, False),
}


def covering(cases, forms=("layer", "cell")):
    """(kind, case, form) triples: every case in every form, the kinds taking turns.

    The cells' maths are the same `keras.ops` on every backend; what differs
    is the loop, masking, autodiff and random numbers, which every case
    exercises whatever the kind, so each kind need not meet each case.
    """
    kinds = list(KINDS)
    return [
        (kinds[(i * len(forms) + j) % len(kinds)], case, form)
        for i, case in enumerate(cases)
        for j, form in enumerate(forms)
    ]


# Each kind once, alternately as a sequence layer and as a cell in keras.layers.RNN.
EACH_KIND_ONCE = [(kind, ("layer", "cell")[index % 2]) for index, kind in enumerate(KINDS)]


def state_widths(kind, units=UNITS):
    return [units, units] if kind == "lstm" else [units]


@pytest.mark.parametrize(
    "kind, case, form",
    [(kind, "sequences_and_states", form) for kind in KINDS for form in ("layer", "cell")]
    + covering([case for case in CASES if case != "sequences_and_states"]),
)
def test_outputs_states_and_gradients_equal_keras(kind, case, form):
    options, wrapper, uses_mask, uses_initial_state = CASES[case]
    if wrapper == "stacked" and form == "cell":
        ours, theirs = recurrent(kind, "stacked_cells", **options)
    elif wrapper == "stacked":  # two sequence layers, the second fed the first's sequences
        # (a `Sequential` passes on the mask of a `Masking` layer, not a `mask` argument)
        pairs = [recurrent(kind, "layer", return_sequences=True), recurrent(kind, "layer", UNITS + 1, **options)]
        ours, theirs = (
            keras.Sequential([keras.layers.Masking(0.0)] + [pair[side] for pair in pairs]) for side in (0, 1)
        )
    else:
        ours, theirs = recurrent(kind, form, **options)
        if wrapper == "bidirectional":
            ours, theirs = keras.layers.Bidirectional(ours), keras.layers.Bidirectional(theirs)
    arrays = [sequences()]
    if uses_initial_state:
        rng = np.random.default_rng(2)
        arrays += [rng.normal(size=(BATCH, width)).astype("float32") for width in state_widths(kind)]
    mask = MASK if uses_mask else None
    if mask is not None and wrapper == "stacked" and form == "layer":
        arrays[0] = np.where(mask[:, :, None], arrays[0], 0.0).astype("float32")
        mask = None

    def call(network, inputs, *initial_state):
        arguments = {"training": True}
        if mask is not None:
            arguments["mask"] = keras.ops.convert_to_tensor(mask)
        if initial_state:
            arguments["initial_state"] = list(initial_state)
        return network(inputs, **arguments)

    for network in (ours, theirs):
        call(network, *arrays)  # builds
    share_random_weights(ours, theirs)
    assert_equal_networks(ours, theirs, call, arrays, f"{kind} {case} {form}")


@pytest.mark.parametrize("kind, form", EACH_KIND_ONCE)
def test_stateful_calls_continue_from_the_last_state_as_keras(kind, form):
    ours, theirs = recurrent(kind, form, stateful=True, return_sequences=True)
    # The gradients of a second stateful call are those of a call from the
    # carried state: Keras's stateful LSTM and GRU layers cannot be
    # differentiated on PyTorch (an in-place update of their state), so the
    # reference is Keras's layer given that state as `initial_state`.
    _, reference = recurrent(kind, form, return_sequences=True)
    first, second = sequences(0), sequences(3)
    for network in (ours, theirs, reference):
        network(first)
    share_random_weights(ours, theirs)
    share_random_weights(ours, reference)
    for network in (ours, theirs):
        network.reset_state()
    our_first, their_first = (keras.ops.convert_to_numpy(n(first)) for n in (ours, theirs))
    np.testing.assert_allclose(our_first, their_first, atol=OUTPUT_TOLERANCE, rtol=0)
    carried = [keras.ops.convert_to_numpy(state) for state in theirs.states]
    their_second = keras.ops.convert_to_numpy(theirs(second))

    def call(network, inputs):
        return network(inputs) if network.stateful else network(inputs, initial_state=carried)

    our_second = assert_equal_networks(ours, reference, call, [second], f"{kind} stateful {form}")[0]
    np.testing.assert_allclose(our_second, their_second, atol=OUTPUT_TOLERANCE, rtol=0)
    # The second call started where the first ended (not from zeros).
    ours.reset_state()
    assert np.max(np.abs(our_second - keras.ops.convert_to_numpy(ours(second)))) > 1e-3


# Keras's LSTM and GRU cells draw one dropout mask per gate when
# `recurrent_dropout > 0`; ours share one mask, so only these options draw
# the same masks as Keras's for the same seed.
KERAS_EQUAL_DROPOUT = {
    "simple_rnn": dict(dropout=0.3, recurrent_dropout=0.4),
    "lstm": dict(dropout=0.3),
    "gru": dict(dropout=0.3),
    "gru_reset_before": dict(dropout=0.3),
}


@pytest.mark.parametrize("form", ["layer", "cell"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_with_a_seed_equals_keras(kind, form):
    options = dict(KERAS_EQUAL_DROPOUT[kind], seed=7, return_sequences=True)
    ours, theirs = recurrent(kind, form, **options)
    plain, _ = recurrent(kind, form, return_sequences=True)
    inputs = sequences()
    for network in (ours, theirs, plain):
        # Built, not called: Keras's RNN draws masks at every call, also in inference.
        network.build(inputs.shape)
    share_random_weights(ours, theirs)
    share_random_weights(plain, theirs)
    dropped = assert_equal_networks(ours, theirs, lambda n, x: n(x, training=True), [inputs], f"{kind} {form}")
    # Dropout did drop something; inference ignores it.
    no_dropout = keras.ops.convert_to_numpy(plain(inputs, training=True))
    assert np.max(np.abs(dropped[0] - no_dropout)) > 1e-2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(inputs)), no_dropout, atol=OUTPUT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("kind, form", EACH_KIND_ONCE)
def test_same_seed_same_dropout_other_seed_other_dropout(kind, form):
    inputs = sequences()

    def two_training_calls(seed):
        network, _ = recurrent(kind, form, dropout=0.3, recurrent_dropout=0.4, seed=seed, return_sequences=True)
        network.build(inputs.shape)
        for index, weight in enumerate(network.trainable_weights):
            weight.assign(np.full(tuple(weight.shape), 0.1 * (index + 1), "float32"))
        return [keras.ops.convert_to_numpy(network(inputs, training=True)) for _ in range(2)]

    first, again, other = two_training_calls(11), two_training_calls(11), two_training_calls(12)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(first[0] - first[1])) > 1e-3  # each call draws new masks
    assert np.max(np.abs(first[0] - other[0])) > 1e-3


FIT_NETWORKS = {
    "cell": lambda kind, **options: recurrent(kind, "cell", **options)[0],
    "layer": lambda kind, **options: recurrent(kind, "layer", **options)[0],
    "stateful_layer": lambda kind, **options: recurrent(kind, "layer", stateful=True, **options)[0],
    "bidirectional_layer": lambda kind, **options: keras.layers.Bidirectional(recurrent(kind, "layer", **options)[0]),
    "stacked_cells": lambda kind, **options: recurrent(kind, "stacked_cells", **options)[0],
}


@pytest.mark.parametrize(
    "kind, network",
    [(kind, "cell") for kind in ("simple_rnn", "lstm", "gru")]
    + list(zip(KINDS, [network for network in FIT_NETWORKS if network != "cell"])),
)
def test_fit_with_dropout_and_recurrent_dropout_trains(kind, network):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((TIME, FEATURES), batch_size=4),
            FIT_NETWORKS[network](kind, dropout=0.2, recurrent_dropout=0.2, seed=1),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(
        rng.normal(size=(8, TIME, FEATURES)), rng.normal(size=(8, 1)), batch_size=4, epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert all(np.max(np.abs(a - b)) > 0 for a, b in zip(before, after))


def test_rnn_of_a_cell_with_dropout_and_an_initial_state():
    # Keras's RNN never asks the cell for its initial state when it is given
    # one (or is stateful); it asks for the dropout masks before its loop
    # instead, which on JAX is the only place masks can be drawn (the loop
    # is a `lax.scan`). The masks are Keras's: equal outputs for equal seeds.
    initial_state = [np.zeros((BATCH, UNITS), "float32")] * 2
    ours = keras.layers.RNN(layers.LSTMCell(UNITS, dropout=0.5, recurrent_dropout=0.3, seed=1), return_sequences=True)
    dropped = keras.ops.convert_to_numpy(ours(sequences(), initial_state=initial_state, training=True))
    plain = keras.ops.convert_to_numpy(ours(sequences(), initial_state=initial_state))
    assert np.max(np.abs(dropped - plain)) > 1e-2
    ours = keras.layers.RNN(layers.LSTMCell(UNITS, dropout=0.5, seed=3), return_sequences=True)
    theirs = keras.layers.RNN(keras.layers.LSTMCell(UNITS, dropout=0.5, seed=3), return_sequences=True)
    for rnn in (ours, theirs):
        rnn.build(sequences().shape)
    theirs.set_weights(ours.get_weights())
    outputs = [
        keras.ops.convert_to_numpy(rnn(sequences(), initial_state=initial_state, training=True))
        for rnn in (ours, theirs)
    ]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=OUTPUT_TOLERANCE, rtol=0)
    assert np.max(np.abs(outputs[0] - plain)) > 1e-2
    # The sequence layer draws its masks before its loop in every case.
    layer = layers.LSTM(UNITS, dropout=0.5, seed=1, return_sequences=True)
    dropped = keras.ops.convert_to_numpy(layer(sequences(), initial_state=initial_state, training=True))
    assert np.max(np.abs(dropped - keras.ops.convert_to_numpy(layer(sequences(), initial_state=initial_state)))) > 1e-2


def test_stateful_rnn_of_cells_with_dropout_trains():
    # Stateful: `RNN` takes its state from its variables, again without
    # `get_initial_state`; stacked cells with dropout in one `RNN`.
    cells = [layers.GRUCell(UNITS, dropout=0.3, seed=1), layers.LSTMCell(UNITS, recurrent_dropout=0.3, seed=2)]
    model = keras.Sequential(
        [keras.Input((TIME, FEATURES), batch_size=4), keras.layers.RNN(cells, stateful=True), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.normal(size=(8, TIME, FEATURES)), rng.normal(size=(8, 1)), batch_size=4, epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_truncated_backpropagation_cuts_the_gradient_at_chunk_starts(kind):
    # The last output depends on every step, but with `bptt_steps=2` its
    # gradient reaches only the inputs of the last chunk, and there equals
    # the gradient of full back-propagation. Dropout (same seed) keeps both
    # layers' numbers equal.
    options = dict(units=UNITS, dropout=0.2, recurrent_dropout=0.2, seed=4, **KINDS[kind][4])
    truncated, full = KINDS[kind][0](bptt_steps=2, **options), KINDS[kind][0](**options)
    inputs = np.random.default_rng(0).normal(size=(BATCH, 6, FEATURES)).astype("float32")
    for layer in (truncated, full):
        layer.build(inputs.shape)
    share_random_weights(truncated, full)
    results = [
        outputs_and_gradients(layer, lambda x, n=layer: n(x, training=True), [inputs]) for layer in (truncated, full)
    ]
    (truncated_outputs, truncated_gradients), (full_outputs, full_gradients) = results
    np.testing.assert_allclose(truncated_outputs[0], full_outputs[0], atol=OUTPUT_TOLERANCE, rtol=0)
    np.testing.assert_array_equal(truncated_gradients[0][:, :4], 0.0)
    assert np.min(np.max(np.abs(full_gradients[0][:, :4]), axis=(0, 2))) > 1e-6
    assert relative_difference(truncated_gradients[0][:, 4:], full_gradients[0][:, 4:]) <= GRADIENT_TOLERANCE


# Which path the sequence layers take on each backend (`layer.last_path`).
SEQUENCE_PATH = {"tensorflow": "fused", "jax": "fused", "torch": "cell"}


def test_sequence_layers_take_the_path_their_backend_has():
    layer = layers.LSTM(UNITS)
    layer(sequences())
    assert layer.last_path == SEQUENCE_PATH[BACKEND]
    if layer.last_path == "cell":
        assert BACKEND in layer.fallback_reason


def all_kinds_model():
    """A model with a sequence layer, a Bidirectional one and a cell in keras.layers.RNN."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TIME, FEATURES))
    masked = keras.layers.Masking(0.0)(inputs)
    hidden = layers.LSTM(UNITS, return_sequences=True, dropout=0.1, seed=1)(masked)
    hidden = keras.layers.Bidirectional(layers.GRU(3, return_sequences=True, reset_after=False))(hidden)
    hidden = keras.layers.RNN([layers.SimpleRNNCell(2), layers.GRUCell(2)])(hidden)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def test_keras_file_loads_in_safe_mode_with_identical_outputs(tmp_path):
    model = all_kinds_model()
    inputs = sequences()
    inputs[0, :1] = 0.0  # a masked step
    expected = keras.ops.convert_to_numpy(model(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)), expected, atol=1e-6, rtol=0)


INSTALLED_BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]

_SAVE = """
import numpy as np, keras
from tests.layers.test_backends import all_kinds_model, sequences
model = all_kinds_model()
inputs = sequences()
inputs[0, :1] = 0.0
model.save({path!r})
np.save({inputs_path!r}, inputs)
np.save({outputs_path!r}, keras.ops.convert_to_numpy(model(inputs)))
print("{{}}")
"""
_LOAD = """
import json, numpy as np, keras
import layers
differences = {{}}
for name, path, inputs_path, outputs_path in {files!r}:
    loaded = keras.saving.load_model(path, safe_mode=True)
    outputs = keras.ops.convert_to_numpy(loaded(np.load(inputs_path)))
    differences[name] = float(np.max(np.abs(outputs - np.load(outputs_path))))
print(json.dumps(differences))
"""


def _run_under(backend, code, cwd):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise AssertionError(f"KERAS_BACKEND={backend} process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="spawns one process per backend: runs once, in the default run")
@pytest.mark.skipif(len(INSTALLED_BACKENDS) < 2, reason="needs a second Keras backend installed (jax or torch)")
def test_keras_file_saved_under_one_backend_loads_under_the_others(tmp_path):
    files = {}
    for backend in INSTALLED_BACKENDS:
        paths = [str(tmp_path / f"{backend}{suffix}") for suffix in (".keras", "_inputs.npy", "_outputs.npy")]
        _run_under(backend, _SAVE.format(path=paths[0], inputs_path=paths[1], outputs_path=paths[2]), tmp_path)
        files[backend] = paths
    for backend in INSTALLED_BACKENDS:
        others = [(name, *paths) for name, paths in files.items() if name != backend]
        differences = _run_under(backend, _LOAD.format(files=others), tmp_path)
        assert sorted(differences) == sorted(name for name, *_ in others)
        for saved_under, difference in differences.items():
            assert difference <= OUTPUT_TOLERANCE, (saved_under, backend, difference)
