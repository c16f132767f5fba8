"""Our cells against TensorFlow Addons' own, through fixtures recorded from Addons.

`tests/layers/addons/make_fixtures.py` (run in a Keras 2 environment with
TensorFlow Addons, see its docstring) recorded Addons' `LayerNormLSTMCell`,
`LayerNormSimpleRNNCell` and `PeepholeLSTMCell`, and TensorFlow's
`tf.compat.v1.nn.rnn_cell.LSTMCell` with a projection (Addons has no LSTMP),
inside `keras.layers.RNN`: weights under their TensorFlow names, inputs,
masks, initial states, outputs, final states and the gradients of a fixed
loss. Here our cells load those weights by name (`layers.migration`) and must
give the same outputs within 1e-5 and gradients within 1e-4 relative, on each
backend. Also: Keras 2 `.h5` weight files and Addons' configs load into ours.

`python -m tests.layers.test_addons_fixtures` prints the differences: ours
against the recorded numbers (outputs and final states, absolute; gradients,
relative), and the recorded and our outputs against the NumPy reference in
float64.
"""

import glob
import json
import os

import keras
import numpy as np
import pytest

import layers
from layers import migration
from tests.layers import numpy_reference, numpy_variants
from tests.layers.autodiff import outputs_and_gradients, relative_difference
from tests.support import to_numpy

pytestmark = pytest.mark.backends

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addons")
OUTPUT_TOLERANCE = 1e-5  # absolute
GRADIENT_TOLERANCE = 1e-4  # relative, per tensor
CASES = sorted(os.path.basename(path)[: -len(".npz")] for path in glob.glob(os.path.join(FIXTURES, "*.npz")))


def load_fixture(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz")) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["case"] = json.loads(str(arrays["case"]))
    arrays["cell_config"] = json.loads(str(arrays["cell_config"]))
    return arrays


def named(fixture, kind):
    """`{TensorFlow name: array}` of the fixture's weights (`kind="weight"`) or their gradients."""
    return {name: fixture[f"{kind}/{name}"] for name in fixture["weight_names"]}


def our_cell(case):
    """Our cell with the arguments of the recorded cell."""
    arguments = dict(case["arguments"])
    if case["class_name"] == "tf1.LSTMCell":
        arguments["units"] = arguments.pop("num_units")
        arguments["proj_units"] = arguments.pop("num_proj", None)
        return layers.ProjectionLSTMCell(**arguments)
    return getattr(layers, case["class_name"])(**arguments)


def numpy_step(case):
    """`(step, options)` of the NumPy reference (`tests.layers.numpy_variants`) for a recorded cell."""
    arguments = case["arguments"]
    options = {key: arguments[key] for key in ("activation", "use_bias") if key in arguments}
    if case["class_name"] == "LayerNormLSTMCell":
        return numpy_variants.layer_norm_lstm_step, {**options, "epsilon": arguments.get("norm_epsilon", 1e-3)}
    if case["class_name"] == "LayerNormSimpleRNNCell":
        epsilon = arguments.get("layernorm_epsilon", 1e-5)
        return numpy_variants.layer_norm_simple_rnn_step, {**options, "epsilon": epsilon}
    if case["class_name"] == "PeepholeLSTMCell":
        return numpy_variants.gated_lstm_step, {**options, "use_peepholes": True}
    clips = {key: arguments[key] for key in ("cell_clip", "proj_clip") if key in arguments}
    peepholes = arguments.get("use_peepholes", False)
    return numpy_variants.gated_lstm_step, {**clips, "use_peepholes": peepholes, "projection": True}


def compare_with_fixture(name):
    """Differences between our cell, the recorded numbers and the NumPy reference, as a dict.

    `output`: max |ours - recorded| over the output sequence and final
    states; `gradient`: the largest relative difference of a gradient;
    `recorded_vs_numpy` and `ours_vs_numpy`: max |output difference| of each
    against the NumPy reference in float64.
    """
    fixture = load_fixture(name)
    case = fixture["case"]
    tf1 = case["class_name"] == "tf1.LSTMCell"
    rnn = keras.layers.RNN(our_cell(case), return_sequences=True, return_state=True)
    rnn.build(fixture["inputs"].shape)
    if tf1:
        migration.load_tf1_lstm_cell_weights(rnn, named(fixture, "weight"))
        expected_weight_gradients = migration.tf1_lstm_cell_arrays(rnn, named(fixture, "gradient/weight"), 0.0)
    else:
        migration.load_addons_weights(rnn, named(fixture, "weight"))
        gradients = named(fixture, "gradient/weight")
        expected_weight_gradients = {
            ours: next(value for theirs, value in gradients.items() if theirs.endswith("/" + ours + ":0"))
            for ours in rnn.cell._weight_names()
        }
    # tf.compat.v1's states are (c, h), ours [h, c].
    state_count = len(keras.tree.flatten(rnn.cell.state_size))
    state_order = [1, 0] if tf1 else list(range(state_count))
    initial_state = [fixture[f"initial_state/{k}"] for k in state_order if f"initial_state/{k}" in fixture]
    mask = fixture.get("mask")

    def call(inputs, *states):
        arguments = {"mask": keras.ops.convert_to_tensor(mask)} if mask is not None else {}
        return rnn(inputs, initial_state=list(states) or None, **arguments)

    # At masked steps before a row's first unmasked one, Keras 3's RNN outputs
    # the initial state on JAX and zeros on TensorFlow (for Keras's own cells
    # too; Keras 2 recorded zeros, constants that added nothing to the
    # gradients). Those steps are left out of the loss and the comparison.
    counted = np.ones(fixture["inputs"].shape[:2], bool) if mask is None else np.logical_or.accumulate(mask, axis=1)
    projections = [np.where(counted[..., None], fixture["projection/0"], 0.0).astype("float32")]
    projections += [fixture[f"projection/{1 + k}"] for k in state_order]
    outputs, gradients = outputs_and_gradients(rnn, call, [fixture["inputs"], *initial_state], projections=projections)
    outputs[0] = outputs[0][counted]
    expected_outputs = [fixture["output/0"][counted]] + [fixture[f"output/{1 + k}"] for k in state_order]
    expected_gradients = [fixture["gradient/inputs"]]
    expected_gradients += [fixture[f"gradient/initial_state/{k}"] for k in state_order if initial_state]
    expected_gradients += [expected_weight_gradients[name] for name in rnn.cell._weight_names()]
    assert len(outputs) == len(expected_outputs) and len(gradients) == len(expected_gradients)
    # The comparison can fail: the recorded numbers are not all zero.
    assert min(np.max(np.abs(g)) for g in expected_gradients) > 1e-3, name
    step, options = numpy_step(case)
    states = initial_state or [np.zeros((len(fixture["inputs"]), w)) for w in keras.tree.flatten(rnn.cell.state_size)]
    sequence, final_states = numpy_reference.run_sequence(
        step, fixture["inputs"], states, rnn.get_weights(), mask=mask, **options
    )
    reference = [sequence[counted], *final_states]

    def largest(first, second):
        return max(float(np.max(np.abs(a - b))) for a, b in zip(first, second))

    return {
        "output": largest(outputs, expected_outputs),
        "gradient": max(relative_difference(a, b) for a, b in zip(gradients, expected_gradients)),
        "recorded_vs_numpy": largest(expected_outputs, reference),
        "ours_vs_numpy": largest(outputs, reference),
    }


def test_fixtures_cover_every_addons_cell_and_the_projection_lstm():
    classes = {load_fixture(name)["case"]["class_name"] for name in CASES}
    assert classes == {"LayerNormLSTMCell", "LayerNormSimpleRNNCell", "PeepholeLSTMCell", "tf1.LSTMCell"}


@pytest.mark.parametrize("name", CASES)
def test_outputs_states_and_gradients_equal_the_recorded_ones(name):
    differences = compare_with_fixture(name)
    assert differences["output"] <= OUTPUT_TOLERANCE, differences
    assert differences["gradient"] <= GRADIENT_TOLERANCE, differences
    # The NumPy reference of the variants agrees with Addons (and tf.compat.v1) too.
    assert differences["recorded_vs_numpy"] <= OUTPUT_TOLERANCE, differences


H5_CASES = sorted(os.path.basename(path)[: -len(".h5")] for path in glob.glob(os.path.join(FIXTURES, "*.h5")))


def _last_output(name):
    fixture = load_fixture(name)
    return fixture, fixture["output/0"][:, -1]


@pytest.mark.parametrize("name", H5_CASES)
def test_keras_2_weights_file_loads_by_name_into_our_cell(name):
    fixture, expected = _last_output(name)
    rnn = keras.layers.RNN(our_cell(fixture["case"]))
    migration.load_addons_weights(rnn, os.path.join(FIXTURES, f"{name}.h5"))  # builds the cell
    np.testing.assert_allclose(to_numpy(rnn(fixture["inputs"])), expected, atol=OUTPUT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", H5_CASES)
def test_keras_2_weights_file_loads_with_keras_load_weights(name):
    # Keras 3 reads a Keras 2 `.h5` file layer by layer, each layer's weights
    # in order: ours are in Addons' order.
    fixture, expected = _last_output(name)
    model = keras.Sequential([keras.Input(fixture["inputs"].shape[1:]), keras.layers.RNN(our_cell(fixture["case"]))])
    model.load_weights(os.path.join(FIXTURES, f"{name}.h5"))
    np.testing.assert_allclose(to_numpy(model(fixture["inputs"])), expected, atol=OUTPUT_TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "name", ["layer_norm_lstm_relu_no_bias", "layer_norm_simple_rnn_masked_initial_state", "peephole_lstm"]
)
def test_addons_config_builds_our_cell_with_the_same_arguments(name):
    fixture = load_fixture(name)
    addons_config = fixture["cell_config"]
    cell = getattr(layers, fixture["case"]["class_name"]).from_config(addons_config)
    ours = cell.get_config()
    compared = [key for key, value in addons_config.items() if key in ours and not isinstance(value, dict)]
    compared.remove("dtype")  # Keras 3 writes a dtype policy
    assert len(compared) >= 10
    for key in compared:
        assert ours[key] == addons_config[key], key
    assert set(fixture["case"]["arguments"]) <= set(ours)


def test_loading_names_what_is_missing_or_extra():
    fixture = load_fixture("peephole_lstm")
    weights = named(fixture, "weight")
    with pytest.raises(ValueError, match=r"without \['gamma'\]"):
        migration.load_addons_weights(layers.LayerNormSimpleRNNCell(3), weights)
    # Peephole weights are not dropped silently into a plain LSTM.
    with pytest.raises(ValueError, match=r"input_gate_peephole_weights.*does not have"):
        migration.load_addons_weights(layers.LSTMCell(3), weights)
    with pytest.raises(ValueError, match=r"`kernel` of shape \(4, 12\).*expected shape \(4, 16\)"):
        migration.load_addons_weights(layers.PeepholeLSTMCell(4), weights)
    two_cells = {**weights, **{name.replace("rnn_", "other_rnn_"): value for name, value in weights.items()}}
    with pytest.raises(ValueError, match=r"several cells.*prefix="):
        migration.load_addons_weights(layers.PeepholeLSTMCell(3), two_cells)
    cell = layers.PeepholeLSTMCell(3)
    migration.load_addons_weights(cell, two_cells, prefix="other_")
    np.testing.assert_array_equal(cell.get_weights()[3], fixture["weight/" + fixture["weight_names"][3]])
    with pytest.raises(ValueError, match=r"coupled_input_forget_gate=True"):
        migration.load_tf1_lstm_cell_weights(layers.ProjectionLSTMCell(4, 2, coupled_input_forget_gate=True), {})


if __name__ == "__main__":
    columns = ("output", "gradient", "recorded_vs_numpy", "ours_vs_numpy")
    print(f"keras backend: {keras.backend.backend()}")
    print(f"{'fixture':42s}" + "".join(f"{column:>19s}" for column in columns))
    for name in CASES:
        differences = compare_with_fixture(name)
        print(f"{name:42s}" + "".join(f"{differences[column]:19.3e}" for column in columns))
