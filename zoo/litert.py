"""LiteRT (`.tflite`) export: the recipes' networks rebuilt for the converter, builtin ops only.

Converting a Keras 3 recurrent layer as it is gives a `WHILE` loop (often
with Flex ops) instead of the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` kernel
that tf.keras 2 produced (tensorflow/tensorflow#73254, now
google-ai-edge/LiteRT#41), and `TFLiteConverter.from_keras_model` breaks
under Keras 3 (keras-team/keras#18430). So a task's export writes a
`serve` function that calls the trained model's other layers as they are
and replaces each recurrent layer by `recurrent`, a pure-TensorFlow
computation from the layer's weights; `convert` traces it with every
weight read as a constant:

- an LSTM with tanh and sigmoid activations becomes a `tf.function` in the
  form the converter fuses into `UNIDIRECTIONAL_SEQUENCE_LSTM`: attribute
  `api_implements` starting `lstm_`, arguments (inputs, initial h,
  initial c, kernel, recurrent kernel, bias) with a static batch size,
  five results of which only the first two (last output, all outputs) are
  used, and no mask argument;
- a GRU, a SimpleRNN (no fused builtin kernel) or an LSTM with other
  activations becomes a `tf.while_loop` over the cell's own `step`, which
  converts to the builtin `WHILE` op with builtin ops inside;
- masking: the fused kernel takes no mask, so padded batches must be
  padded on the right; the lengths are passed in, the backward direction
  of a `Bidirectional` layer reads each sequence reversed within its
  length (a batched gather), and outputs at padded steps are left for
  the caller to ignore (pooling uses the mask).

The converter sets the fused kernel's cell clip to 10 (cell states beyond
+-10 are clipped, which Keras never does); `finish` sets it to 0 (no clip)
so that the `.tflite` computes what the Keras model computes. The fused
kernel keeps h and c in variable tensors from one call to the next (the
converter accepts only constant initial states, which it makes variables):
a caller resets them (`reset_all_variables()`) before each independent
input, as `run_each` does. Every export is checked: no custom or Flex op,
no variable left, one fused op per LSTM direction, and the written file,
run by LiteRT's interpreter (`ai-edge-litert`), must match the Keras model
on check data before it replaces an earlier file.
"""

import os
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf

import layers
from zoo import litert_flatbuffer as _flatbuffer
from zoo import litert_quantize, litert_step
from zoo.errors import UserError, UserIsADirectoryError
from zoo.files import atomic_path

# The flatbuffer's readers and writers, part of this module's API (see zoo/litert_flatbuffer.py).
CUSTOM, FUSED_LSTM, METADATA_NAME = _flatbuffer.CUSTOM, _flatbuffer.FUSED_LSTM, _flatbuffer.METADATA_NAME
cell_clips, finish, metadata = _flatbuffer.cell_clips, _flatbuffer.finish, _flatbuffer.metadata
operator_types, operators = _flatbuffer.operator_types, _flatbuffer.operators
SIGNATURE = "serving_default"
CONVERTER_CELL_CLIP = 10.0  # what the converter writes into every fused LSTM op (lstm_utils.cc)
_MERGE = {
    "concat": lambda forward, backward: tf.concat([forward, backward], axis=-1),
    "sum": lambda forward, backward: forward + backward,
    "mul": lambda forward, backward: forward * backward,
    "ave": lambda forward, backward: (forward + backward) / 2.0,
}


# ----------------------------------------------------------------------------- recurrent layers as TF graphs


def _scan(step, sequences, states):
    """`step(x_t, states) -> (output, states)` over time-major `sequences`: (time-major outputs, final states)."""
    steps = tf.shape(sequences)[0]
    outputs = tf.TensorArray(sequences.dtype, size=steps, element_shape=states[0].shape)

    def body(index, outputs, *states):
        output, states = step(sequences[index], list(states))
        return (index + 1, outputs.write(index, output), *states)

    _, outputs, *states = tf.while_loop(lambda index, *_: index < steps, body, (tf.constant(0), outputs, *states))
    return outputs.stack(), states


def _keras_lstm(inputs, initial_h, initial_c, kernel, recurrent_kernel, bias):
    """The LSTM of Keras's contract for the fused kernel; batch-major; (last, outputs, h, c, runtime).

    Only the converter reads this function's signature; this body runs where
    TensorFlow executes the graph (and would be converted if fusing failed,
    which `check_operators` reports).
    """
    projected = tf.einsum("btf,fg->tbg", inputs, kernel) + bias

    def step(projected_t, states):
        h, c = states
        i, f, g, o = tf.split(projected_t + tf.matmul(h, recurrent_kernel), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]

    outputs, (h, c) = _scan(step, projected, [initial_h, initial_c])
    outputs = tf.transpose(outputs, (1, 0, 2))
    return outputs[:, -1], outputs, h, c, tf.constant(0.0)


def _fusable(cell):
    return (
        isinstance(cell, layers.LSTMCell)
        and keras.activations.serialize(cell.activation) == "tanh"
        and keras.activations.serialize(cell.recurrent_activation) == "sigmoid"
    )


def _reverse(sequences, lengths):
    """`sequences` with each row's first `lengths` steps reversed (a gather: REVERSE_SEQUENCE has no int8 kernel)."""
    if lengths is None:
        return tf.reverse(sequences, axis=[1])
    steps = tf.range(tf.shape(sequences)[1])[None, :]
    indices = tf.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return tf.gather(sequences, indices, batch_dims=1)


def _last(sequences, lengths):
    """Each row's output at its last valid step (zeros for an empty row)."""
    if lengths is None:
        return sequences[:, -1]
    last = tf.gather(sequences, tf.maximum(lengths - 1, 0), batch_dims=1)
    return tf.where((lengths > 0)[:, None], last, tf.zeros_like(last))


def recurrent(layer, inputs, lengths=None):
    """What `layer` returns for `inputs` (batch-major, static batch size), as a graph the converter takes.

    `layer` is one of our sequence layers (`layers.LSTM`, `GRU`,
    `SimpleRNN`) or a `keras.layers.Bidirectional` of one, starting from
    zero states. `lengths` (int32, `(batch,)`), if given, is the number of
    valid steps of each row, the rest being padding on the right: the
    result then equals the Keras layer's under the mask `step < length` at
    every valid step (and for `return_sequences=False`).
    """
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode not in _MERGE:
            raise ValueError(f"Bidirectional merge_mode {layer.merge_mode!r} is not supported; expected concat.")
        forward = _direction(layer.forward_layer, inputs, lengths, backwards=False)
        backward = _direction(layer.backward_layer, inputs, lengths, backwards=True)
        if layer.return_sequences:
            backward = _reverse(backward, lengths)
        else:
            forward, backward = _last(forward, lengths), _last(backward, lengths)
        return _MERGE[layer.merge_mode](forward, backward)
    if layer.go_backwards:
        raise ValueError(f"Layer {layer.name!r}: go_backwards outside Bidirectional is not supported.")
    outputs = _direction(layer, inputs, lengths, backwards=False)
    return outputs if layer.return_sequences else _last(outputs, lengths)


def run_functional(model, inputs):
    """What the functional Keras `model` returns for `inputs`, with each recurrent layer computed by `recurrent`.

    Every other layer is called as it is; a nested functional model (an
    ensemble's member) is run the same way. The graph is walked with the
    method Keras's own `Functional.call` and `clone_model` use.
    """

    def operation(layer):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            return lambda sequences, **_: recurrent(layer, sequences)
        if isinstance(layer, keras.Model):
            return lambda given, **_: run_functional(layer, given)
        return layer

    return model._run_through_graph(inputs, operation_fn=operation)


def _direction(layer, inputs, lengths, backwards):
    """All outputs of one direction, in the order it reads them (reversed within lengths if `backwards`)."""
    if not isinstance(layer, (layers.LSTM, layers.GRU, layers.SimpleRNN)):
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) is not one of our recurrent layers.")
    if layer.return_state:
        raise ValueError(f"Layer {layer.name!r}: return_state is not supported.")
    if backwards:
        inputs = _reverse(inputs, lengths)
    cell = layer.cell
    batch = inputs.shape[0]
    if batch is None:
        raise ValueError("The inputs need a static batch size (the fused LSTM kernel requires one).")
    if _fusable(cell):
        zeros = tf.zeros([batch, cell.units], inputs.dtype)
        bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else tf.zeros([4 * cell.units], inputs.dtype)
        composite = tf.function(
            _keras_lstm,
            autograph=False,
            experimental_attributes={
                "api_implements": f"lstm_{uuid.uuid4().hex}",
                "time_major": False,
                "go_backwards": False,
            },
        )
        kernel, recurrent_kernel = tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.recurrent_kernel)
        _, outputs, _, _, _ = composite(inputs, zeros, zeros, kernel, recurrent_kernel, bias)
        return outputs
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
    states = [tf.zeros([batch, size], inputs.dtype) for size in sizes]
    outputs, _ = _scan(lambda x, states: cell.step(x, states, None), tf.transpose(inputs, (1, 0, 2)), states)
    return tf.transpose(outputs, (1, 0, 2))


# ----------------------------------------------------------------------------- conversion and the flatbuffer


def convert(serve, input_signature, weights, *, step=None, quantize=litert_quantize.NONE, representative=None):
    """`serve` as `.tflite` bytes with builtin ops only, signature `serving_default` (and `step`).

    `serve` maps tensors of `input_signature` to a dict of outputs, calling
    Keras layers and `recurrent` for recurrent ones; `step`, a
    `litert_step.StepSignature`, adds the signature `step`. `weights` (Keras
    variables, such as a model's `weights`) are read as constants while they
    are traced: the converter would keep Keras 3 variables as resource
    variables that nothing initialises in the `.tflite`. `quantize` is one of
    `litert_quantize.MODES`; int8 calibrates on `representative`
    (`(signature, inputs)` pairs). Returns (bytes, how many fused LSTM ops
    they should hold).
    """
    values = [(variable, keras.ops.convert_to_numpy(variable)) for variable in weights]

    def frozen(function):
        def call(*inputs):
            with keras.StatelessScope(state_mapping=[(variable, tf.constant(value)) for variable, value in values]):
                return function(*inputs)

        return call

    functions = {SIGNATURE: (serve, input_signature)}
    if step is not None:
        functions[litert_step.STEP] = (step.function, step.input_signature)
    concretes = {
        name: tf.function(frozen(function), input_signature=signature, autograph=False).get_concrete_function()
        for name, (function, signature) in functions.items()
    }
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(tf.Module(), directory, signatures=concretes)

        def converter():
            made = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(concretes))
            made.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return made

        model_bytes = converter().convert()
        if quantize != litert_quantize.NONE:
            litert_quantize.check_quantizable(operators(model_bytes), quantize, representative)
            quantizing = converter()
            litert_quantize.configure(quantizing, quantize, representative)
            model_bytes = quantizing.convert()
    return model_bytes, sum(fused_lstm_calls(concrete) for concrete in concretes.values())


def fused_lstm_calls(concrete):
    """How many calls of LSTM composite functions `concrete`'s graph makes (loop bodies included)."""
    graph_def = concrete.graph.as_graph_def()
    composites = {
        function.signature.name
        for function in graph_def.library.function
        if "api_implements" in function.attr and function.attr["api_implements"].s.decode("utf-8").startswith("lstm_")
    }
    nodes = [*graph_def.node, *(node for function in graph_def.library.function for node in function.node_def)]
    return sum(1 for node in nodes if "f" in node.attr and node.attr["f"].func.name in composites)


def check_operators(counts, fused_lstms):
    """Raise unless `counts` has no custom/Flex op and exactly `fused_lstms` fused LSTM ops."""
    custom = sorted(name for name in counts if name.startswith(CUSTOM))
    if custom:
        raise RuntimeError(f"The converted model holds custom or Flex ops {custom}; expected builtin ops only.")
    if counts.get("READ_VARIABLE"):
        raise RuntimeError("The converted model reads variables; expected every weight frozen as a constant.")
    if counts.get(FUSED_LSTM, 0) != fused_lstms:
        raise RuntimeError(
            f"The converted model holds {counts.get(FUSED_LSTM, 0)} {FUSED_LSTM} ops; expected {fused_lstms} "
            f"(one per LSTM direction). Operators: {dict(sorted(counts.items()))}."
        )


# ----------------------------------------------------------------------------- running and writing


def interpreter(model, num_threads=None):
    """LiteRT's interpreter for `model`: a `.tflite` path or its bytes (on `num_threads` threads if given)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise _flatbuffer.missing_litert() from error
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    return Interpreter(model_path=os.fspath(model), num_threads=num_threads)


def run(model, inputs):
    """Outputs (dict of arrays) of the model's `serving_default` signature on `inputs` (dict of arrays)."""
    return next(run_each(model, [inputs]))


def run_each(model, batches):
    """The model's outputs for each input dict of `batches`, every call from zero states.

    The fused LSTM op keeps its states in variable tensors from one call to
    the next (the converter requires them to be variables), so they are
    reset before every call, as every user of the model must do.
    """
    model_interpreter = interpreter(model)
    model_interpreter.allocate_tensors()
    runner = model_interpreter.get_signature_runner(SIGNATURE)
    for inputs in batches:
        model_interpreter.reset_all_variables()
        yield {name: np.array(value) for name, value in runner(**inputs).items()}


def compare(model, batches, expected):
    """Largest difference between the model's outputs on `batches` and `expected` (dicts of arrays).

    Element by element, relative where the expected value exceeds 1 in
    magnitude: `|got - expected| / max(1, |expected|)`, so that log-probabilities
    near -20 and forecasts in original units are held to float32's precision
    at their size.
    """
    worst = 0.0
    for got, wanted in zip(run_each(model, batches), expected):
        for name, value in wanted.items():
            worst = max(worst, _difference(got[name], value, name))
    return worst


def run_steps(model, sequences, states):
    """Outputs of the model's `step` signature over each of `sequences` (lists of input dicts), from `states`.

    Each call's state outputs (the names of `states`) are fed to the next
    call; every sequence starts again from `states`. Returns a list per
    sequence of output dicts.
    """
    model_interpreter = interpreter(model)
    runner = model_interpreter.get_signature_runner(litert_step.STEP)
    results = []
    for sequence in sequences:
        current, outputs = dict(states), []
        for inputs in sequence:
            got = {name: np.array(value) for name, value in runner(**inputs, **current).items()}
            current = {name: got[name] for name in current}
            outputs.append(got)
        results.append(outputs)
    return results


def _difference(got, wanted, name):
    if got.shape != np.shape(wanted):
        raise RuntimeError(f"The .tflite output {name!r} has shape {got.shape}; expected {np.shape(wanted)}.")
    return float(np.max(np.abs(got - wanted) / np.maximum(1.0, np.abs(wanted)), initial=0.0))


def compare_steps(model, step):
    """Largest difference (as `compare`) between the `step` signature's outputs and `step.check`'s expected ones."""
    sequences = [[inputs for inputs, _ in sequence] for sequence in step.check]
    worst = 0.0
    for outputs, sequence in zip(run_steps(model, sequences, step.states), step.check):
        for got, (_, wanted) in zip(outputs, sequence):
            for name, value in wanted.items():
                worst = max(worst, _difference(got[name], value, name))
    return worst


def export(
    path,
    serve,
    input_signature,
    weights,
    *,
    metadata,
    batches,
    expected,
    tolerance=1e-5,
    step=None,
    quantize=litert_quantize.NONE,
    representative=None,
):
    """Convert (see `convert`), check and write `serve` (and `step`) to the `.tflite` file `path`, atomically.

    The converted model must hold builtin ops only and one fused LSTM op per
    LSTM direction traced; the file written beside `path` is then run by
    LiteRT's interpreter on `batches` (input dicts), and the `step`
    signature over `step.check`, and a float model must give `expected`
    (output dicts) within `tolerance` (see `compare`) before it replaces
    whatever was at `path`. A quantized model (`quantize` dynamic or int8)
    differs by its rounding: its differences are reported, not bounded
    here (recipes/litert_report.py measures what they cost). Returns a
    report: path, bytes, operators, quantize, the largest differences found.
    """
    if not path:
        raise UserError("Received an empty value for the export path; expected a .tflite file path.")
    if os.path.isdir(path):
        raise UserIsADirectoryError(
            f"Received the export path {path!r}, which is a directory; expected a .tflite file."
        )
    litert_quantize.require_mode(quantize)
    converted, fused_lstms = convert(
        serve, input_signature, weights, step=step, quantize=quantize, representative=representative
    )
    model_bytes = finish(converted, metadata)
    counts = operators(model_bytes)
    check_operators(counts, fused_lstms)
    differences = {}

    def verify(temporary):
        differences["max_difference"] = compare(temporary, batches, expected)
        if step is not None:
            differences["max_step_difference"] = compare_steps(temporary, step)
        worst = max(differences.values())
        if quantize == litert_quantize.NONE and not worst <= tolerance:
            raise RuntimeError(
                f"The .tflite model differs from the Keras model by {worst:.3g} (relative beyond magnitude 1); "
                f"expected at most {tolerance:g}. The export was not written."
            )

    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(model_bytes)
            stream.flush()
            os.fsync(stream.fileno())
        verify(temporary)
    report = {"path": path, "bytes": len(model_bytes), "operators": dict(sorted(counts.items())), "quantize": quantize}
    report.update(differences)
    if fused_lstms and quantize == litert_quantize.NONE:
        # What the converter's own cell clip (10) would have changed on the same data.
        clipped = finish(converted, metadata, cell_clip=CONVERTER_CELL_CLIP)
        report["max_difference_with_converter_cell_clip"] = compare(clipped, batches, expected)
    return report


def in_batches(arrays, batch_size):
    """Split `arrays` (first axis) into batches of exactly `batch_size`, the last padded by repeating its last row.

    Returns (batches, count) where count is the number of real rows.
    """
    count = len(arrays)
    padding = (-count) % batch_size
    if padding:
        arrays = np.concatenate([arrays, np.repeat(arrays[-1:], padding, axis=0)], axis=0)
    return [arrays[start : start + batch_size] for start in range(0, len(arrays), batch_size)], count
