"""Our cells against Keras's built-in cells and layers, with copied weights.

The grid and the comparison live in `layers.testing` (so
`python -m recipes.crosscheck` prints the same numbers as a table); these
tests run its default grid, and the exhaustive one under `-m slow`.
"""

import keras
import numpy as np
import pytest

import layers
from layers import testing

OUR_CELLS = {
    "simple_rnn": (layers.SimpleRNNCell, {}),
    "lstm": (layers.LSTMCell, {}),
    "gru": (layers.GRUCell, {"reset_after": True}),
    "gru_reset_before": (layers.GRUCell, {"reset_after": False}),
}
KERAS_CELLS = {
    "simple_rnn": (keras.layers.SimpleRNNCell, {}),
    "lstm": (keras.layers.LSTMCell, {}),
    "gru": (keras.layers.GRUCell, {"reset_after": True}),
    "gru_reset_before": (keras.layers.GRUCell, {"reset_after": False}),
}
KERAS_LAYERS = {
    "simple_rnn": (keras.layers.SimpleRNN, {}),
    "lstm": (keras.layers.LSTM, {}),
    "gru": (keras.layers.GRU, {"reset_after": True}),
    "gru_reset_before": (keras.layers.GRU, {"reset_after": False}),
}


def _label(setting):
    return setting.label().replace(" ", "-")


@pytest.mark.parametrize("setting", testing.quick_grid(), ids=_label)
def test_outputs_states_and_gradients_match_keras(setting):
    result = testing.compare(setting, seed=0)
    # sequences, every weight, and the initial states when given
    assert result.gradient_count >= 3
    assert result.output_difference <= 1e-5, setting.label()
    assert result.gradient_difference <= 1e-4, setting.label()


@pytest.mark.slow
@pytest.mark.parametrize("setting", testing.default_grid(), ids=_label)
def test_outputs_states_and_gradients_match_keras_default_grid(setting):
    result = testing.compare(setting, seed=0)
    assert result.output_difference <= 1e-5, setting.label()
    assert result.gradient_difference <= 1e-4, setting.label()


@pytest.mark.slow
@pytest.mark.parametrize("setting", testing.full_grid(), ids=_label)
def test_outputs_states_and_gradients_match_keras_full_grid(setting):
    result = testing.compare(setting, seed=1)
    assert result.output_difference <= 1e-5, setting.label()
    assert result.gradient_difference <= 1e-4, setting.label()


@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before"])
def test_comparison_detects_a_small_weight_change(cell):
    """The cross-check is not vacuous: a 0.01 change in one weight shows up."""
    setting = testing.Setting(cell, return_sequences=True, return_state=True)
    ours, theirs = testing.make_layers(setting)
    testing.share_weights(setting, ours, theirs, seed=0)
    recurrent_kernel = ours.get_weights()[1]
    recurrent_kernel[0, 0] += 1e-2
    ours.set_weights([*ours.get_weights()[:1], recurrent_kernel, *ours.get_weights()[2:]])
    inputs = testing.make_inputs(setting, seed=0)
    our_outputs, our_gradients = testing.run_network(setting, ours, *inputs, seed=0)
    keras_outputs, keras_gradients = testing.run_network(setting, theirs, *inputs, seed=0)
    output_difference = max(np.max(np.abs(a - b)) for a, b in zip(our_outputs, keras_outputs))
    gradient_difference = max(testing.relative_difference(a, b) for a, b in zip(our_gradients, keras_gradients))
    assert output_difference > 1e-5
    assert gradient_difference > 1e-4


@pytest.mark.parametrize("kind", list(OUR_CELLS))
@pytest.mark.parametrize("use_bias", [True, False])
def test_cell_weights_have_keras_names_shapes_and_order(kind, use_bias):
    our_class, our_arguments = OUR_CELLS[kind]
    keras_class, keras_arguments = KERAS_CELLS[kind]
    ours = our_class(5, use_bias=use_bias, **our_arguments)
    theirs = keras_class(5, use_bias=use_bias, **keras_arguments)
    ours.build((None, 3))
    theirs.build((None, 3))
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    expected_width = {"simple_rnn": 5, "lstm": 20, "gru": 15, "gru_reset_before": 15}[kind]
    assert tuple(ours.kernel.shape) == (3, expected_width)
    if use_bias and kind == "gru":
        assert tuple(ours.bias.shape) == (2, 15)


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_same_seed_gives_the_keras_layers_initial_weights(kind):
    # A model with our layer and one with Keras's, each built after the same global seed, start equal:
    # the recipes' `implementation=keras` comparisons are paired.
    our_class = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[kind]
    keras_class, _ = KERAS_LAYERS[kind]
    weights = []
    for layer_class in (our_class, keras_class):
        keras.utils.set_random_seed(7)
        inputs = keras.Input((None, 3))
        recurrent = keras.layers.Bidirectional(layer_class(4, return_sequences=True, dropout=0.1))
        model = keras.Model(inputs, keras.layers.Dense(2)(recurrent(inputs)))
        weights.append(model.get_weights())
    assert len(weights[0]) == len(weights[1]) == 8
    for ours, theirs in zip(*weights):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("kind", list(OUR_CELLS))
@pytest.mark.parametrize("direction", ["ours_to_keras", "keras_to_ours"])
def test_cell_set_weights_both_directions_gives_equal_steps(kind, direction):
    our_class, our_arguments = OUR_CELLS[kind]
    keras_class, keras_arguments = KERAS_CELLS[kind]
    ours = our_class(4, **our_arguments)
    theirs = keras_class(4, **keras_arguments)
    ours.build((2, 3))
    theirs.build((2, 3))
    rng = np.random.default_rng(0)
    source, target = (ours, theirs) if direction == "ours_to_keras" else (theirs, ours)
    source.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in source.get_weights()])
    target.set_weights(source.get_weights())
    for ours_weight, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(ours_weight, keras_weight)
    inputs = rng.normal(size=(2, 3)).astype("float32")
    states = [rng.normal(size=(2, 4)).astype("float32") for _ in range(2 if kind == "lstm" else 1)]
    our_output, our_states = ours(inputs, states)
    keras_output, keras_states = theirs(inputs, states)
    np.testing.assert_allclose(our_output, keras_output, atol=1e-6)
    for ours_state, keras_state in zip(our_states, keras_states):
        np.testing.assert_allclose(ours_state, keras_state, atol=1e-6)


@pytest.mark.parametrize("kind", list(OUR_CELLS))
@pytest.mark.parametrize("direction", ["ours_to_keras", "keras_to_ours"])
def test_keras_sequence_layers_exchange_weights_with_rnn_of_our_cell(kind, direction):
    """`keras.layers.LSTM/GRU/SimpleRNN` weights load into `RNN(our cell)` and back."""
    our_class, our_arguments = OUR_CELLS[kind]
    keras_class, keras_arguments = KERAS_LAYERS[kind]
    ours = keras.layers.RNN(our_class(4, **our_arguments), return_sequences=True, return_state=True)
    theirs = keras_class(4, return_sequences=True, return_state=True, **keras_arguments)
    shape = (2, 5, 3)
    ours.build(shape)
    theirs.build(shape)
    rng = np.random.default_rng(1)
    source, target = (ours, theirs) if direction == "ours_to_keras" else (theirs, ours)
    source.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in source.get_weights()])
    target.set_weights(source.get_weights())
    sequences = rng.normal(size=shape).astype("float32")
    for our_output, keras_output in zip(ours(sequences), theirs(sequences)):
        np.testing.assert_allclose(our_output, keras_output, atol=1e-5)


def test_gru_layer_weights_of_the_other_layout_are_refused_by_rnn_of_our_cell():
    """Keras's own check stops GRU weights of the other bias layout."""
    keras_gru = keras.layers.GRU(4, reset_after=True)
    keras_gru.build((2, 5, 3))
    ours = keras.layers.RNN(layers.GRUCell(4, reset_after=False))
    ours.build((2, 5, 3))
    with pytest.raises(ValueError, match=r"\(2, 12\)"):
        ours.set_weights(keras_gru.get_weights())


def test_quick_grid_covers_every_variant_and_run_mode_of_the_default_grid():
    quick, default = testing.quick_grid(), testing.default_grid()
    assert set(quick) <= set(default)
    assert len(quick) < len(default)
    for cell in testing.CELL_KINDS:
        for variant in testing._variants(cell):
            assert testing.Setting(cell, **variant) in quick
    for mode in testing._RUN_MODES:
        assert sum(s == testing.Setting(s.cell, **mode) for s in quick) == 2
