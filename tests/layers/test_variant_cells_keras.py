"""The variant cells in Keras: `Bidirectional`, stacked cells, dropout, `fit`, configs, `.keras` files, errors.

Numbers come from the NumPy references (`tests.layers.numpy_variants`), on
every backend.
"""

import doctest
import json

import keras
import numpy as np
import pytest

import layers
import layers.lstm_variants
import layers.migration
import layers.norm_cells
from tests.layers import numpy_reference
from tests.layers.variant_kinds import FEATURES, KINDS, make_cell, random_weights, reference_step, state_widths
from tests.support import to_numpy

pytestmark = pytest.mark.backends

BATCH, TIME = 3, 5
SEQUENCES = np.random.default_rng(0).normal(size=(BATCH, TIME, FEATURES)).astype("float32")
MASK = np.array([[True] * 5, [False, False, True, True, True], [True, True, False, True, True]])


def _reference(kind, weights, sequences, mask=None, go_backwards=False, **masks):
    step, options = reference_step(kind)
    widths = state_widths(make_cell(kind))
    zeros = [np.zeros((sequences.shape[0], w)) for w in widths]
    return numpy_reference.run_sequence(
        step, sequences, zeros, weights, mask=mask, go_backwards=go_backwards, **options, **masks
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_with_a_mask_matches_numpy(kind):
    network = keras.layers.Bidirectional(keras.layers.RNN(make_cell(kind), return_sequences=True))
    network.build(SEQUENCES.shape)
    weights = random_weights(network, np.random.default_rng(1))
    network.set_weights(weights)
    outputs = to_numpy(network(SEQUENCES, mask=keras.ops.convert_to_tensor(MASK)))
    half = len(weights) // 2
    forward, _ = _reference(kind, weights[:half], SEQUENCES, MASK)
    backward, _ = _reference(kind, weights[half:], SEQUENCES, MASK, go_backwards=True)
    expected = np.concatenate([forward, backward[:, ::-1]], axis=-1)
    np.testing.assert_allclose(outputs[MASK], expected[MASK], atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stacked_with_a_plain_cell_and_a_mask_matches_numpy(kind):
    upper = layers.GRUCell(2)
    network = keras.layers.RNN([make_cell(kind), upper], return_sequences=True)
    network.build(SEQUENCES.shape)
    weights = random_weights(network, np.random.default_rng(1))
    network.set_weights(weights)
    outputs = to_numpy(network(SEQUENCES, mask=keras.ops.convert_to_tensor(MASK)))
    lower_count = len(weights) - len(upper.weights)
    lower_outputs, _ = _reference(kind, weights[:lower_count], SEQUENCES, MASK)
    expected, _ = numpy_reference.run_sequence(
        numpy_reference.gru_step, lower_outputs, [np.zeros((BATCH, 2))], weights[lower_count:], mask=MASK
    )
    np.testing.assert_allclose(outputs[MASK], expected[MASK], atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_applies_one_mask_per_sequence_as_numpy(kind):
    cell = make_cell(kind, dropout=0.3, recurrent_dropout=0.4, seed=5)
    network = keras.layers.RNN(cell, return_sequences=True)
    network.build(SEQUENCES.shape)
    weights = random_weights(network, np.random.default_rng(1))
    network.set_weights(weights)
    dropped = to_numpy(network(SEQUENCES, training=True))
    input_mask, recurrent_mask = (to_numpy(mask) for mask in (cell._input_mask, cell._recurrent_mask))
    assert input_mask.shape == (BATCH, FEATURES) and recurrent_mask.shape == (BATCH, state_widths(cell)[0])
    assert 0 < np.mean(input_mask == 0) < 1 and 0 < np.mean(recurrent_mask == 0) < 1
    expected, _ = _reference(kind, weights, SEQUENCES, input_mask=input_mask, recurrent_mask=recurrent_mask)
    np.testing.assert_allclose(dropped, expected, atol=1e-5)
    plain, _ = _reference(kind, weights, SEQUENCES)
    assert np.max(np.abs(dropped - plain)) > 1e-2
    np.testing.assert_allclose(to_numpy(network(SEQUENCES)), plain, atol=1e-5)  # inference: no dropout


WRAPPERS = ("rnn", "bidirectional", "stacked")


@pytest.mark.parametrize("kind, wrapper", [(kind, WRAPPERS[i % 3]) for i, kind in enumerate(KINDS)])
def test_fit_with_dropout_trains_every_weight(kind, wrapper):
    keras.utils.set_random_seed(0)
    cell = make_cell(kind, dropout=0.2, recurrent_dropout=0.2, seed=1)
    if wrapper == "stacked":
        recurrent = keras.layers.RNN([cell, make_cell(kind, units=2)])
    else:
        recurrent = keras.layers.RNN(cell)
        if wrapper == "bidirectional":
            recurrent = keras.layers.Bidirectional(recurrent)
    model = keras.Sequential([keras.Input((TIME, FEATURES), batch_size=4), recurrent, keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(rng.normal(size=(8, TIME, FEATURES)), rng.normal(size=(8, 1)), batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.max(np.abs(a - b)) > 0 for a, b in zip(before, model.get_weights()))


CONFIGS = {
    "layer_norm_simple_rnn": dict(layernorm_epsilon=1e-3, gamma_regularizer="l2", use_bias=False, dropout=0.1),
    "layer_norm_lstm": dict(norm_epsilon=1e-2, norm_gamma_initializer="zeros", carry_normalized_state=False),
    "layer_norm_gru": dict(reset_after=False, norm_beta_initializer="ones", recurrent_dropout=0.2, seed=3),
    "peephole_lstm": dict(unit_forget_bias=False, activation="relu"),
    "projection_lstm_all_options": dict(projection_initializer="orthogonal", projection_regularizer="l1"),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_get_config_round_trip(kind):
    cell = make_cell(kind, name="my_cell", **CONFIGS[kind])
    config = cell.get_config()
    for key, value in CONFIGS[kind].items():
        if isinstance(value, (int, float, bool)):
            assert config[key] == value, key
    serialized = keras.saving.serialize_keras_object(cell)
    assert serialized["registered_name"] == f"rnnzoo>{type(cell).__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is type(cell) and restored.get_config() == config


def all_variants_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TIME, FEATURES))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.RNN(layers.LayerNormSimpleRNNCell(4), return_sequences=True)(x)
    x = keras.layers.Bidirectional(
        keras.layers.RNN(layers.LayerNormLSTMCell(3, carry_normalized_state=False), return_sequences=True)
    )(x)
    x = keras.layers.RNN([layers.LayerNormGRUCell(3, reset_after=False), layers.PeepholeLSTMCell(3)], True)(x)
    x = keras.layers.RNN(layers.ProjectionLSTMCell(4, 2, use_peepholes=True, coupled_input_forget_gate=True))(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.set_weights(random_weights(model, np.random.default_rng(1), scale=0.5))
    return model


def test_keras_file_loads_in_safe_mode_with_identical_outputs(tmp_path):
    model = all_variants_model()
    inputs = SEQUENCES.copy()
    inputs[1, :2] = 0.0  # masked steps
    expected = to_numpy(model(inputs))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(loaded(inputs)), expected, atol=1e-6, rtol=0)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("kind", list(KINDS))
def test_mixed_float16_computes_in_half_precision_close_to_float32(dtype_policy, kind):
    reference = keras.layers.RNN(make_cell(kind), return_sequences=True, return_state=True)
    reference.build(SEQUENCES.shape)
    reference.set_weights(random_weights(reference, np.random.default_rng(1), scale=0.5))
    expected = to_numpy(reference(SEQUENCES))
    dtype_policy("mixed_float16")
    half = keras.layers.RNN(make_cell(kind), return_sequences=True, return_state=True)
    half.build(SEQUENCES.shape)
    half.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in half.weights)
    for output, target in zip(half(SEQUENCES), expected):
        assert keras.backend.standardize_dtype(output.dtype) == "float16"
        assert np.max(np.abs(to_numpy(output).astype("float32") - target)) <= 2e-2


def test_bias_initial_values_put_ones_at_the_forget_gate():
    for cell, forget_block in [
        (layers.LayerNormLSTMCell(2), 1),
        (layers.PeepholeLSTMCell(2), 1),
        (layers.ProjectionLSTMCell(2, 1, coupled_input_forget_gate=True), 0),
    ]:
        cell.build((None, 3))
        blocks = np.split(to_numpy(cell.bias), cell._gate_count)
        for index, block in enumerate(blocks):
            np.testing.assert_array_equal(block, 1.0 if index == forget_block else 0.0)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: layers.LayerNormLSTMCell(3, norm_epsilon=0), ValueError, r"`norm_epsilon`.*positive float.*got 0"),
        (lambda: layers.LayerNormSimpleRNNCell(3, layernorm_epsilon="x"), ValueError, r"`layernorm_epsilon`"),
        (lambda: layers.LayerNormGRUCell(3, norm_gamma_initializer="nope"), ValueError, r"`norm_gamma_initializer`"),
        (lambda: layers.ProjectionLSTMCell(3, proj_units=0), ValueError, r"`proj_units`.*positive integer"),
        (lambda: layers.ProjectionLSTMCell(3, proj_units=2.0), TypeError, r"`proj_units`"),
        (lambda: layers.ProjectionLSTMCell(3, cell_clip=-1.0), ValueError, r"`cell_clip`.*positive float or None"),
        (lambda: layers.ProjectionLSTMCell(3, proj_clip=0.5), ValueError, r"`proj_clip=0.5` without `proj_units`"),
        (lambda: layers.PeepholeLSTMCell(3, proj_units=2), TypeError, r"`proj_units`.*ProjectionLSTMCell"),
    ],
)
def test_bad_arguments_are_named(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_wrong_weights_and_states_are_named():
    cell = layers.LayerNormLSTMCell(2)
    cell.build((None, 3))
    with pytest.raises(ValueError, match=r"kernel, recurrent_kernel, bias, kernel_norm/gamma.*state_norm/beta"):
        cell.set_weights(cell.get_weights()[:3])
    projection = layers.ProjectionLSTMCell(4, proj_units=2)
    inputs = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match=r"`states\[0\]` of shape \(batch, 2\).*\(2, 4\)"):
        projection(inputs, [np.zeros((2, 4), "float32"), np.zeros((2, 4), "float32")])


@pytest.mark.parametrize("module", [layers.norm_cells, layers.lstm_variants, layers.migration])
def test_docstring_examples_pass_and_sections_are_in_keras_order(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    cells = [
        value for value in vars(module).values() if isinstance(value, type) and value.__module__ == module.__name__
    ]
    for cell_class in [c for c in cells if not c.__name__.startswith("_") and c.__name__.endswith("Cell")]:
        text = cell_class.__doc__
        sections = [text.index(name) for name in ("Reference", "Args:", "Call arguments:", "Example:")]
        assert sections == sorted(sections), cell_class.__name__
    if module is not layers.migration:
        assert result.attempted >= 8
