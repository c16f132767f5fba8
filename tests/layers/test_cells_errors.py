"""Bad arguments and inputs raise ValueError/TypeError naming the argument."""

import keras
import numpy as np
import pytest

import layers

pytestmark = pytest.mark.backends

CELL_CLASSES = [layers.SimpleRNNCell, layers.LSTMCell, layers.GRUCell]


@pytest.mark.parametrize("cell_class", CELL_CLASSES)
@pytest.mark.parametrize(
    "units, error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("4", TypeError), (None, TypeError), (True, TypeError)],
)
def test_units_must_be_a_positive_integer(cell_class, units, error):
    with pytest.raises(error, match=r"`units`.*positive integer.*got") as raised:
        cell_class(units)
    assert repr(units) in str(raised.value)


@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_dropout_rates_must_lie_in_zero_one(argument, value):
    with pytest.raises(ValueError, match=rf"`{argument}`.*\[0, 1\).*got {value}"):
        layers.LSTMCell(4, **{argument: value})


@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout"])
def test_dropout_rates_must_be_numbers(argument):
    with pytest.raises(TypeError, match=rf"`{argument}`.*str"):
        layers.GRUCell(4, **{argument: "0.1"})


def test_seed_must_be_an_integer():
    with pytest.raises(TypeError, match=r"`seed`.*'x'"):
        layers.SimpleRNNCell(4, seed="x")


@pytest.mark.parametrize(
    "argument", ["activation", "recurrent_activation", "kernel_initializer", "bias_regularizer", "recurrent_constraint"]
)
def test_unknown_identifiers_name_the_argument(argument):
    with pytest.raises(ValueError, match=rf"`{argument}`.*'no_such_thing'"):
        layers.LSTMCell(4, **{argument: "no_such_thing"})


@pytest.mark.parametrize("cell_class", CELL_CLASSES)
def test_build_needs_rank_two_step_inputs(cell_class):
    with pytest.raises(ValueError, match=r"`inputs` of rank 2.*\(2, 3, 4\).*keras.layers.RNN"):
        cell_class(4).build((2, 3, 4))


def test_rnn_over_a_rank_four_input_names_inputs():
    with pytest.raises(ValueError, match=r"`inputs` of rank 2"):
        keras.layers.RNN(layers.LSTMCell(4))(np.zeros((2, 3, 4, 5), "float32"))


def test_build_needs_a_known_feature_count():
    with pytest.raises(ValueError, match=r"known last dimension of `inputs`"):
        layers.GRUCell(4).build((2, None))


def test_direct_call_with_wrong_rank_or_width_names_inputs():
    cell = layers.SimpleRNNCell(4)
    cell.build((None, 3))
    state = [np.zeros((2, 4), "float32")]
    with pytest.raises(ValueError, match=r"`inputs` of rank 2.*\(2, 1, 3\)"):
        cell(np.zeros((2, 1, 3), "float32"), state)
    with pytest.raises(ValueError, match=r"built for `inputs` with 3 features.*\(2, 5\)"):
        cell(np.zeros((2, 5), "float32"), state)


@pytest.mark.parametrize("cell_class", CELL_CLASSES)
def test_state_of_the_wrong_width_names_the_state(cell_class):
    cell = cell_class(4)
    count = 2 if cell_class is layers.LSTMCell else 1
    states = [np.zeros((2, 4), "float32")] * (count - 1) + [np.zeros((2, 5), "float32")]
    with pytest.raises(ValueError, match=rf"`states\[{count - 1}\]` of shape \(batch, 4\).*\(2, 5\)"):
        cell(np.zeros((2, 3), "float32"), states)


def test_wrong_number_of_states_names_states():
    with pytest.raises(ValueError, match=r"`states` to hold 2 tensor\(s\), got 1"):
        layers.LSTMCell(4)(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])


def test_wrong_initial_state_through_rnn_names_the_state():
    rnn = keras.layers.RNN(layers.GRUCell(4))
    with pytest.raises(ValueError, match=r"`states\[0\]` of shape \(batch, 4\)"):
        rnn(np.zeros((2, 3, 5), "float32"), initial_state=[np.zeros((2, 6), "float32")])


@pytest.mark.parametrize("source_reset_after", [True, False])
def test_gru_weights_of_the_other_layout_are_refused_with_a_hint(source_reset_after):
    source = layers.GRUCell(4, reset_after=source_reset_after)
    target = layers.GRUCell(4, reset_after=not source_reset_after)
    source.build((None, 3))
    target.build((None, 3))
    with pytest.raises(ValueError, match=r"`weights`.*reset_after"):
        target.set_weights(source.get_weights())
    # Keras's GRU weights of the other layout too
    keras_cell = keras.layers.GRUCell(4, reset_after=source_reset_after)
    keras_cell.build((None, 3))
    with pytest.raises(ValueError, match=r"`weights`.*reset_after"):
        target.set_weights(keras_cell.get_weights())


def test_set_weights_with_missing_bias_names_weights_and_expected_shapes():
    cell = layers.LSTMCell(4)
    cell.build((None, 3))
    with pytest.raises(ValueError, match=r"`weights`.*expected shapes \[\(3, 16\), \(4, 16\), \(16,\)\]"):
        cell.set_weights(cell.get_weights()[:2])


def test_set_weights_before_build_names_weights():
    with pytest.raises(ValueError, match=r"argument `weights` cannot be set.*build"):
        layers.SimpleRNNCell(4).set_weights([np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4)])
