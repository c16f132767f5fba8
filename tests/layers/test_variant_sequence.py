"""The variant sequence layers (`LayerNormLSTM`, ..., `ProjectionLSTM`) on the backend Keras runs on.

Each layer equals `keras.layers.RNN` of its cell with the same weights:
outputs and final states within 1e-5, gradients through the backend's own
autodiff (`tests.layers.autodiff`) within 1e-4 relative, with a mask, an
initial state, `go_backwards` and `return_state`. On TensorFlow the layer
runs its fused path (hand-written back-propagation), elsewhere the cell path
with `fallback_reason` naming the backend. Also: their arguments reach the
cell, configs and `.keras` files round-trip, `Bidirectional` and `stateful`.
"""

import keras
import numpy as np
import pytest

import layers
from tests.layers.autodiff import outputs_and_gradients, relative_difference
from tests.layers.variant_kinds import FEATURES, KINDS, make_cell, random_weights, state_widths

pytestmark = pytest.mark.backends

BACKEND = keras.backend.backend()
OUTPUT_TOLERANCE = 1e-5  # absolute
GRADIENT_TOLERANCE = 1e-4  # relative, per tensor
BATCH, TIME = 3, 5
SEQUENCES = np.random.default_rng(0).normal(size=(BATCH, TIME, FEATURES)).astype("float32")
# Left padding, a hole, and a row with no valid step.
MASK = np.array([[True] * 5, [False, False, True, False, True], [False] * 5])
PATH = {"tensorflow": "fused", "jax": "cell", "torch": "cell"}
LAYER_OF_CELL = {
    layer.cell_class: layer
    for layer in (
        layers.LayerNormSimpleRNN,
        layers.LayerNormLSTM,
        layers.LayerNormGRU,
        layers.PeepholeLSTM,
        layers.ProjectionLSTM,
    )
}


def layer_and_reference(kind, **options):
    """The variant's sequence layer and `keras.layers.RNN` of its cell, built, with the same random weights."""
    cell = make_cell(kind)
    cell_arguments = {
        key: value for key, value in cell.get_config().items() if key not in ("name", "trainable", "dtype")
    }
    layer = LAYER_OF_CELL[type(cell)](**cell_arguments, **options)
    reference = keras.layers.RNN(cell, **options)
    for network in (layer, reference):
        network.build(SEQUENCES.shape)
    weights = random_weights(reference, np.random.default_rng(1))
    reference.set_weights(weights)
    layer.set_weights(weights)
    return layer, reference


# Elsewhere both sides run the cell path: a few kinds show that the layers run there.
EQUALITY_KINDS = list(KINDS) if BACKEND == "tensorflow" else ["layer_norm_lstm", "layer_norm_gru", "projection_lstm"]


@pytest.mark.parametrize("kind", EQUALITY_KINDS)
def test_layer_equals_rnn_of_its_cell_with_gradients(kind):
    options = dict(return_sequences=True, return_state=True, go_backwards=kind.endswith(("lstm", "gru")))
    layer, reference = layer_and_reference(kind, **options)
    rng = np.random.default_rng(2)
    initial = [rng.normal(size=(BATCH, width)).astype("float32") for width in state_widths(reference.cell)]
    mask = keras.ops.convert_to_tensor(MASK)
    results = [
        outputs_and_gradients(
            network,
            lambda x, *states, n=network: n(x, initial_state=list(states), mask=mask, training=True),
            [SEQUENCES, *initial],
        )
        for network in (layer, reference)
    ]
    assert layer.last_path == PATH[BACKEND], layer.fallback_reason
    if layer.last_path == "cell":
        assert BACKEND in layer.fallback_reason
    (outputs, gradients), (expected_outputs, expected_gradients) = results
    for ours, theirs in zip(outputs, expected_outputs):
        np.testing.assert_allclose(ours, theirs, atol=OUTPUT_TOLERANCE, rtol=0)
    assert len(gradients) == len(expected_gradients) == 1 + len(initial) + len(reference.trainable_weights)
    for index, (ours, theirs) in enumerate(zip(gradients, expected_gradients)):
        assert relative_difference(ours, theirs) <= GRADIENT_TOLERANCE, (kind, index)


def test_arguments_reach_the_cell_and_configs_round_trip():
    layer = layers.ProjectionLSTM(6, proj_units=3, use_peepholes=True, cell_clip=2.0, recurrent_dropout=0.1)
    assert (layer.cell.proj_units, layer.proj_units, layer.cell.cell_clip, layer.recurrent_dropout) == (3, 3, 2.0, 0.1)
    normalised = layers.LayerNormLSTM(4, norm_epsilon=1e-4, carry_normalized_state=False, unit_forget_bias=False)
    assert (normalised.norm_epsilon, normalised.carry_normalized_state, normalised.cell.unit_forget_bias) == (
        1e-4,
        False,
        False,
    )
    for original in (layer, normalised, layers.LayerNormGRU(3, reset_after=False, bptt_steps=2)):
        copy = type(original).from_config(original.get_config())
        assert copy.get_config() == original.get_config()
    with pytest.raises(TypeError, match="ProjectionLSTMCell"):
        layers.PeepholeLSTM(4, proj_units=2)


def test_keras_file_loads_in_safe_mode_with_identical_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TIME, FEATURES))
    hidden = layers.LayerNormLSTM(4, return_sequences=True, bptt_steps=2)(inputs)
    hidden = keras.layers.Bidirectional(layers.LayerNormGRU(3, return_sequences=True))(hidden)
    hidden = layers.ProjectionLSTM(5, proj_units=2, use_peepholes=True)(hidden)
    model = keras.Model(inputs, layers.LayerNormSimpleRNN(2)(keras.layers.RepeatVector(2)(hidden)))
    expected = keras.ops.convert_to_numpy(model(SEQUENCES))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(SEQUENCES)), expected, atol=1e-6, rtol=0)


def test_stateful_calls_continue_from_the_last_state():
    layer, reference = layer_and_reference("peephole_lstm", stateful=True)
    first, second = SEQUENCES[:, :3], SEQUENCES[:, 3:]
    for network in (layer, reference):
        network(first)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(second)), keras.ops.convert_to_numpy(reference(second)), atol=1e-5, rtol=0
    )
    assert layer.last_path == PATH[BACKEND]
