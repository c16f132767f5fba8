"""zoo.litert quantized exports and step signatures on small layers: operators, tensor types, agreement."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from zoo import litert, litert_quantize, litert_step
from zoo.errors import UserError

BATCH, STEPS, FEATURES = 2, 8, 32
# 32 units: each gate's matrices have 32 x 32 = 1024 elements, the smallest the converter quantizes.
UNITS = 32


def _randomized(layer, seed, scale):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(0.0, scale / np.sqrt(variable.shape[0]), variable.shape).astype("float32"))
    return layer


def _inputs(count, seed):
    return np.random.default_rng(seed).normal(0.0, 1.0, (count, BATCH, STEPS, FEATURES)).astype("float32")


class Network:
    """Two stacked recurrent layers and a Dense head; `serve` runs whole sequences, `step` one time step."""

    def __init__(self, cell="lstm"):
        layer_class = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
        self.first = layer_class(UNITS, return_sequences=True)
        self.second = layer_class(UNITS, return_sequences=True)
        self.head = keras.layers.Dense(3)
        self.first.build((BATCH, STEPS, FEATURES))
        self.second.build((BATCH, STEPS, UNITS))
        self.head.build((BATCH, UNITS))
        for seed, layer in enumerate((self.first, self.second, self.head)):
            _randomized(layer, seed, scale=2.0)
        self.recurrent = [self.first, self.second]
        self.weights = [*self.first.weights, *self.second.weights, *self.head.weights]
        self.signature = [tf.TensorSpec([BATCH, None, FEATURES], tf.float32, name="inputs")]

    def serve(self, inputs):
        hidden = litert.recurrent(self.second, litert.recurrent(self.first, inputs))
        return {"outputs": self.head(hidden)}

    def step_signature(self):
        def step(inputs, *states):
            hidden, new_states = litert_step.run_layers(self.recurrent, inputs, states)
            return {"outputs": self.head(hidden), **new_states}

        return litert_step.StepSignature(
            step,
            [
                tf.TensorSpec([BATCH, FEATURES], tf.float32, name="inputs"),
                *litert_step.state_specs(self.recurrent, BATCH),
            ],
            litert_step.zero_states(self.recurrent, BATCH),
        )


@pytest.fixture(scope="module")
def lstm_models():
    network = Network()
    calibration = [(litert.SIGNATURE, {"inputs": inputs}) for inputs in _inputs(16, seed=1)]
    models = {
        mode: litert.convert(
            network.serve, network.signature, network.weights, quantize=mode, representative=calibration
        )
        for mode in litert_quantize.MODES
    }
    return network, {mode: litert.finish(model, {}) for mode, (model, _) in models.items()}


def _lstm_types(model):
    """(input, weights, biases, hidden state, cell state) types of each fused LSTM op."""
    return [
        (inputs[0], set(inputs[1:9]) - {None}, set(inputs[12:16]), inputs[18], inputs[19])
        for inputs, _ in litert.operator_types(model, litert.FUSED_LSTM)
    ]


def test_quantized_models_hold_builtin_ops_and_quantized_tensors(lstm_models):
    _, models = lstm_models
    for model in models.values():
        litert.check_operators(litert.operators(model), 2)
    assert _lstm_types(models["none"]) == [("FLOAT32", {"FLOAT32"}, {"FLOAT32"}, "FLOAT32", "FLOAT32")] * 2
    # Dynamic range: int8 weights, float activations and states.
    assert _lstm_types(models["dynamic"]) == [("FLOAT32", {"INT8"}, {"FLOAT32"}, "FLOAT32", "FLOAT32")] * 2
    # Full integer: int8 activations and weights, int32 biases, int16 cell state.
    assert _lstm_types(models["int8"]) == [("INT8", {"INT8"}, {"INT32"}, "INT8", "INT16")] * 2
    ((head_inputs, head_outputs),) = litert.operator_types(models["int8"], "FULLY_CONNECTED")
    assert head_inputs[:2] == ["INT8", "INT8"] and head_outputs == ["INT8"]
    sizes = {mode: len(model) for mode, model in models.items()}
    assert sizes["dynamic"] < 0.4 * sizes["none"] and sizes["int8"] < 0.4 * sizes["none"]


def test_quantized_models_stay_near_the_float_model(lstm_models):
    network, models = lstm_models
    batches = [{"inputs": inputs} for inputs in _inputs(4, seed=2)]  # not the calibration data
    wanted = [network.serve(batch["inputs"])["outputs"].numpy() for batch in batches]
    # The head's outputs are O(1) (unit-scale inputs, Dense of tanh outputs); int8 spreads its range over
    # 256 levels, so one level is ~1/100 of it. The bounds allow a few levels after 8 steps of two layers:
    # 0.1 for int8, 0.05 for dynamic range (activations rounded per call, not calibrated).
    scale = max(np.abs(batch).max() for batch in wanted)
    assert 0.5 < scale < 5
    differences = {}
    for mode, model in models.items():
        got = [output["outputs"] for output in litert.run_each(model, batches)]
        differences[mode] = max(np.abs(g - w).max() for g, w in zip(got, wanted))
    assert differences["none"] < 1e-5
    assert 1e-4 < differences["dynamic"] < 0.05, differences
    assert 1e-3 < differences["int8"] < 0.1, differences


def test_int8_refuses_loops_and_missing_data_dynamic_takes_them():
    network = Network("gru")
    calibration = [(litert.SIGNATURE, {"inputs": inputs}) for inputs in _inputs(2, seed=1)]
    with pytest.raises(UserError, match="WHILE"):
        litert.convert(network.serve, network.signature, network.weights, quantize="int8", representative=calibration)
    lstm_network = Network()
    with pytest.raises(UserError, match="representative"):
        litert.convert(lstm_network.serve, lstm_network.signature, lstm_network.weights, quantize="int8")
    with pytest.raises(UserError, match="quantize"):
        litert.convert(network.serve, network.signature, network.weights, quantize="int4")
    model, fused = litert.convert(network.serve, network.signature, network.weights, quantize="dynamic")
    counts = litert.operators(model)
    litert.check_operators(counts, fused)
    assert counts["WHILE"] == 2 and fused == 0
    # The GRUs' matrices inside the loops are int8.
    assert ["FLOAT32", "INT8", "FLOAT32"] in [inputs for inputs, _ in litert.operator_types(model, "FULLY_CONNECTED")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepping_reproduces_the_whole_sequence(cell, tmp_path):
    network = Network(cell)
    step = network.step_signature()
    inputs = _inputs(1, seed=3)[0]
    wanted = network.serve(inputs)["outputs"].numpy()
    step.check = [[({"inputs": inputs[:, t]}, {"outputs": wanted[:, t]}) for t in range(STEPS)]]
    report = litert.export(
        str(tmp_path / "model.tflite"),
        network.serve,
        network.signature,
        network.weights,
        metadata={},
        batches=[{"inputs": inputs}],
        expected=[{"outputs": wanted}],
        step=step,
    )
    assert report["max_step_difference"] <= 1e-5 and np.abs(wanted).max() > 0.5
    with open(report["path"], "rb") as stream:
        model = stream.read()
    assert litert.interpreter(model).get_signature_list()["step"] == {
        "inputs": sorted(["inputs", *step.states]),
        "outputs": sorted(["outputs", *step.states]),
    }
    # The step subgraph keeps no state of its own: the same call twice gives the same outputs.
    runner = litert.interpreter(model).get_signature_runner("step")
    first, again = (runner(inputs=inputs[:, 0], **step.states)["outputs"] for _ in range(2))
    np.testing.assert_array_equal(first, again)
    # Stepping from the states after four steps continues the sequence.
    (outputs,) = litert.run_steps(model, [[{"inputs": inputs[:, t]} for t in range(4)]], step.states)
    middle = {name: outputs[-1][name] for name in step.states}
    (rest,) = litert.run_steps(model, [[{"inputs": inputs[:, t]} for t in range(4, STEPS)]], middle)
    np.testing.assert_allclose(rest[-1]["outputs"], wanted[:, -1], atol=1e-5)


def test_state_names_follow_the_layers():
    recurrent = [layers.LSTM(3), layers.GRU(2), layers.SimpleRNN(4)]
    assert litert_step.state_names(recurrent) == [["h0", "c0"], ["h1"], ["h2"]]
    assert {name: value.shape for name, value in litert_step.zero_states(recurrent, 5).items()} == {
        "h0": (5, 3),
        "c0": (5, 3),
        "h1": (5, 2),
        "h2": (5, 4),
    }
    with pytest.raises(ValueError, match="cannot be stepped"):
        litert_step.state_names([keras.layers.Bidirectional(layers.LSTM(3))])
