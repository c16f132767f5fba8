"""What the LiteRT and ONNX exports share: weights read as constants, loops, masks, merges and the difference measure.

Both exports rebuild a recipe's inference network as plain TensorFlow for a
converter (`zoo.litert`, `zoo.onnx_export`); the pieces here do not depend
on the target format.
"""

import keras
import numpy as np
import tensorflow as tf

# How a `keras.layers.Bidirectional` layer combines its two directions.
MERGE = {
    "concat": lambda forward, backward: tf.concat([forward, backward], axis=-1),
    "sum": lambda forward, backward: forward + backward,
    "mul": lambda forward, backward: forward * backward,
    "ave": lambda forward, backward: (forward + backward) / 2.0,
}


def frozen(function, weights):
    """`function` with every variable of `weights` read as a constant while it is traced.

    Converters keep Keras 3 variables as resource variables (that nothing
    initialises in a `.tflite`) or as graph inputs (tf2onnx, for tensors a
    function captures); constants made inside the trace are what both fold
    into the converted model.
    """
    values = [(variable, keras.ops.convert_to_numpy(variable)) for variable in weights]

    def call(*inputs):
        with keras.StatelessScope(state_mapping=[(variable, tf.constant(value)) for variable, value in values]):
            return function(*inputs)

    return call


def scan(step, sequences, states):
    """`step(x_t, states) -> (output, states)` over time-major `sequences`: (time-major outputs, final states)."""
    steps = tf.shape(sequences)[0]
    outputs = tf.TensorArray(sequences.dtype, size=steps, element_shape=states[0].shape)

    def body(index, outputs, *states):
        output, states = step(sequences[index], list(states))
        return (index + 1, outputs.write(index, output), *states)

    _, outputs, *states = tf.while_loop(lambda index, *_: index < steps, body, (tf.constant(0), outputs, *states))
    return outputs.stack(), states


def last_valid(sequences, lengths):
    """Each row's output at its last valid step (zeros for an empty row); the last step if `lengths` is None."""
    if lengths is None:
        return sequences[:, -1]
    last = tf.gather(sequences, tf.maximum(lengths - 1, 0), batch_dims=1)
    return tf.where((lengths > 0)[:, None], last, tf.zeros_like(last))


def check_bidirectional(layer):
    """Raise `ValueError` unless `layer`'s merge mode is one `MERGE` has."""
    if layer.merge_mode not in MERGE:
        raise ValueError(
            f"Bidirectional merge_mode {layer.merge_mode!r} is not supported; expected one of {sorted(MERGE)}."
        )


def relative_difference(got, wanted):
    """Largest `|got - wanted| / max(1, |wanted|)`, element by element (0 for empty arrays).

    Relative where the expected value exceeds 1 in magnitude, so that
    log-probabilities near -20 and forecasts in original units (CO2 near
    400 ppm, where one float32 step is 3e-5) are held to float32's precision
    at their size. A NaN where the other has none (or an infinity where the
    other has another value) is an infinite difference; NaN against NaN and
    equal infinities agree.
    """
    got, wanted = np.asarray(got, np.float64), np.asarray(wanted, np.float64)
    with np.errstate(invalid="ignore"):
        differences = np.abs(got - wanted) / np.maximum(1.0, np.abs(wanted))
    agree = (np.isnan(got) & np.isnan(wanted)) | (np.isinf(got) & (got == wanted))
    differences = np.where(agree, 0.0, np.where(np.isnan(differences), np.inf, differences))
    return float(np.max(differences, initial=0.0))


def run_functional(model, inputs, rebuild):
    """What the functional Keras `model` returns for `inputs`, each recurrent layer computed by `rebuild`.

    `rebuild(layer, sequences)` is `zoo.litert.recurrent` or
    `zoo.onnx_export.recurrent`. Every other layer is called as it is; a
    nested functional model (an ensemble's member) is run the same way. The
    graph is walked with the method Keras's own `Functional.call` and
    `clone_model` use.
    """

    def operation(layer):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            return lambda sequences, **_: rebuild(layer, sequences)
        if isinstance(layer, keras.Model):
            return lambda given, **_: run_functional(layer, given, rebuild)
        return layer

    return model._run_through_graph(inputs, operation_fn=operation)
