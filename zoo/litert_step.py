"""Streaming signatures: one time step plus the recurrent states in, the output plus the new states out.

A `step` signature lets a device run a recurrent model one time step at a
time (generation, online forecasting), keeping the states itself: it feeds
each call's state outputs to the next call, starting from zeros. The states
are named per recurrent layer `i` (in the order the network runs them):
`h{i}` (and `c{i}` for an LSTM), float32 `(batch, size)`: `units`, except
a projection LSTM's `h{i}`, which has its `proj_units`. The same step
function serves the SavedModel and the `.tflite` model; in the `.tflite` it
is plain builtin ops (FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD), not the
fused LSTM op, so it keeps no state of its own between calls.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import layers

STEP = "step"
# The sequence layers that the exports read and step through: ours, plain and
# variant, and Keras's built-in ones (a recipe's `implementation="keras"`).
SEQUENCE_LAYERS = (
    layers.SimpleRNN,
    layers.LSTM,
    layers.GRU,
    layers.LayerNormSimpleRNN,
    layers.LayerNormLSTM,
    layers.LayerNormGRU,
    layers.PeepholeLSTM,
    layers.ProjectionLSTM,
    keras.layers.SimpleRNN,
    keras.layers.LSTM,
    keras.layers.GRU,
)
LSTM_CELLS = (layers.LSTMCell, keras.layers.LSTMCell)  # cells whose states are (h, c)


def cell_step(cell, inputs, states):
    """One step of a recurrent `cell` (ours or Keras's) without dropout: (output, new states as a list)."""
    if isinstance(cell, (keras.layers.SimpleRNNCell, keras.layers.LSTMCell, keras.layers.GRUCell)):
        output, new_states = cell(inputs, list(states), training=False)
        return output, list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
    return cell.step(inputs, list(states), None)


@dataclasses.dataclass
class StepSignature:
    """A `step` signature to export, and what to check it on.

    `function(*inputs)` takes tensors of `input_signature` (the step's own
    inputs first, then the states in the order of `states`) and returns a
    dict of outputs holding each state's new value under its name.
    `states` maps each state's name to its initial value (zeros, with the
    export's batch size). `check` is a list of sequences to step through,
    each a list of `(inputs, expected)` pairs: the step's own inputs (a dict
    of arrays) and the outputs expected after that step (a dict; empty
    where nothing is checked).
    """

    function: object
    input_signature: list
    states: dict
    check: list = dataclasses.field(default_factory=list)


def state_names(recurrent_layers):
    """The state names of `recurrent_layers`, grouped per layer: `[["h0", "c0"], ["h1"], ...]`."""
    names = []
    for index, layer in enumerate(recurrent_layers):
        _check_layer(layer)
        names.append([f"h{index}", f"c{index}"] if isinstance(layer.cell, LSTM_CELLS) else [f"h{index}"])
    return names


def _sizes(layer):
    sizes = layer.cell.state_size
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def zero_states(recurrent_layers, batch_size):
    """The initial states `{name: zeros (batch_size, size)}` of `recurrent_layers`."""
    return {
        name: np.zeros((batch_size, size), np.float32)
        for layer, names in zip(recurrent_layers, state_names(recurrent_layers))
        for name, size in zip(names, _sizes(layer))
    }


def state_specs(recurrent_layers, batch_size):
    """`tf.TensorSpec`s of the states of `recurrent_layers`, in order."""
    return [
        tf.TensorSpec([batch_size, size], tf.float32, name=name)
        for layer, names in zip(recurrent_layers, state_names(recurrent_layers))
        for name, size in zip(names, _sizes(layer))
    ]


def _check_layer(layer):
    if not isinstance(layer, SEQUENCE_LAYERS) or layer.go_backwards:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot be stepped; expected a forward recurrent layer "
            "of ours or Keras's SimpleRNN, LSTM or GRU (a bidirectional layer reads its whole input)."
        )


def run_layers(recurrent_layers, inputs, states):
    """One time step of `recurrent_layers` in sequence from `states` (flat, in `state_names` order).

    Returns (the last layer's output, the new states as a dict by name).
    """
    states, new_states, hidden = list(states), {}, inputs
    for layer, names in zip(recurrent_layers, state_names(recurrent_layers)):
        layer_states, states = states[: len(names)], states[len(names) :]
        hidden, layer_states = cell_step(layer.cell, hidden, layer_states)
        new_states.update(zip(names, layer_states))
    return hidden, new_states


def record(step, sequences, states):
    """Every full input dict (inputs and states) `step` sees stepping through `sequences` from `states`.

    `step` is a `StepSignature.function` run eagerly; `sequences` are lists
    of input dicts. Calibration data for a quantized `step` signature.
    """
    samples = []
    for sequence in sequences:
        current = dict(states)
        for inputs in sequence:
            samples.append({**inputs, **current})
            outputs = step(*(keras.ops.convert_to_tensor(value) for value in [*inputs.values(), *current.values()]))
            current = {name: np.asarray(outputs[name]) for name in current}
    return samples
