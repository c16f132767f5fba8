"""ONNX export: the recipes' networks rebuilt so that tf2onnx writes ONNX's own `LSTM` and `GRU` operators.

tf2onnx converts a TensorFlow graph op by op, and a `tf.while_loop` becomes
an ONNX `Loop` unless its body matches a recurrent cell that tf2onnx knows;
then it writes ONNX's `LSTM` or `GRU` operator instead (tf2onnx 1.17:
`rewriter/lstm_tf2_rewriter.py` and `gru_tf2_rewriter.py`, matching the
patterns of `rewriter/rnn_utils.py`, which are tf.keras 2's LSTM and GRU
cells). Our layers as they are do not match: the fused path multiplies all
steps' inputs by the kernel before its loop, and the cell path adds the
bias with `AddV2`; the patterns want, in the loop body, the step's input
read from a TensorList and `BiasAdd(MatMul(x_t, W) + MatMul(h, R), b)`
split into the gates. So a task's export writes a `serve` function that
calls the trained model's other layers as they are and replaces each
recurrent layer by `recurrent`, which writes it in that form (the same
arithmetic; every export is checked against the Keras model):

- an LSTM with tanh and sigmoid activations: the gates `i, f, g, o` split
  from `BiasAdd(MatMul(x_t, W) + MatMul(h, R), b)`, `c = sigmoid(f) c +
  sigmoid(i) tanh(g)`, `h = sigmoid(o) tanh(c)`: ONNX `LSTM`;
- a GRU with tanh and sigmoid activations and `reset_after=True`: the
  input and the recurrent product each with its own `BiasAdd`, both split
  into `z, r, h`: ONNX `GRU` with `linear_before_reset=1`;
- anything else (SimpleRNN, other activations, a GRU with
  `reset_after=False`): the cell's own step in a `tf.while_loop`: ONNX
  `Loop`.

Masking: with `lengths`, each step's output at or past its row's length is
replaced by zeros with `Select(time >= length, 0, h)`, the form from which
tf2onnx takes the operator's `sequence_lens`. The backward direction of a
`Bidirectional` layer reads each row reversed within its length
(`ReverseSequence`, and its outputs reversed back); tf2onnx merges the two
directions into one bidirectional operator, whose reverse direction reads
each row from its own last valid step, as ONNX's `sequence_lens` defines.
Weights are read as constants while the function is traced
(`serving_graph.frozen`): the rewriters fold only constant weights.

`export` checks each conversion before writing it: the model must hold
exactly the recurrent operators expected (`expected_operators`), and the
written file, run by ONNX Runtime, must give the Keras model's outputs on
check data to 1e-5 (relative beyond magnitude 1) before it replaces an
earlier file.
"""

import collections
import importlib
import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

import layers
from zoo import litert_step, serving_graph
from zoo.errors import UserError, UserIsADirectoryError
from zoo.files import atomic_path

OPSET = 17  # ONNX opset the models are written in (LSTM and GRU unchanged since opset 14)
METADATA_KEY = "rnnzoo"  # the model's metadata_props entry holding the export's JSON metadata
RECURRENT = ("LSTM", "GRU", "RNN")  # ONNX's recurrent operators


def missing_onnx():
    return UserError(
        "ONNX export needs the tf2onnx and onnxruntime packages; expected them installed: "
        "`pip install -e '.[onnx]'` (or `pip install tf2onnx onnxruntime`)."
    )


def _require(name):
    """The module `name` (tf2onnx, onnx, onnxruntime); a one-line `UserError` naming the extra if missing."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise missing_onnx() from error


# ----------------------------------------------------------------------------- recurrent layers as TF graphs


def _activations(cell):
    return (
        keras.activations.serialize(cell.activation),
        keras.activations.serialize(cell.recurrent_activation),
    )


def operator_for(layer):
    """The ONNX operator `recurrent` writes `layer` (or a `Bidirectional` of it) as: "LSTM", "GRU" or None (a Loop)."""
    if isinstance(layer, keras.layers.Bidirectional):
        layer = layer.forward_layer
    cell = layer.cell
    if type(cell) in (layers.LSTMCell, keras.layers.LSTMCell) and _activations(cell) == ("tanh", "sigmoid"):
        return "LSTM"
    if (
        type(cell) in (layers.GRUCell, keras.layers.GRUCell)
        and cell.reset_after
        and _activations(cell) == ("tanh", "sigmoid")
    ):
        return "GRU"
    return None


def expected_operators(recurrent_layers, calls=1):
    """The recurrent operators (type, direction) a model of `recurrent_layers`, each run `calls` times, must hold."""
    expected = []
    for layer in recurrent_layers:
        operator = operator_for(layer)
        if operator is not None:
            direction = "bidirectional" if isinstance(layer, keras.layers.Bidirectional) else "forward"
            expected += [(operator, direction)] * calls
    return sorted(expected)


def _loop(step, time_major, states, lengths):
    """Time-major outputs of `step(x_t, states) -> (output, states)` in the loop form tf2onnx's rewriters match.

    The inputs are read from a TensorList and the outputs written to one;
    with `lengths`, a step's output at or past its row's length is zeros
    (`Select(time >= length, 0, output)`, from which tf2onnx takes the
    operator's `sequence_lens`).
    """
    steps = tf.shape(time_major)[0]
    inputs = tf.TensorArray(time_major.dtype, size=steps).unstack(time_major)
    outputs = tf.TensorArray(time_major.dtype, size=steps)

    def body(time, outputs, *states):
        output, states = step(inputs.read(time), list(states))
        if lengths is not None:
            # Select (not SelectV2, which tf.where makes): the op the rewriters look for.
            output = tf.raw_ops.Select(condition=tf.greater_equal(time, lengths), x=tf.zeros_like(output), y=output)
        return (time + 1, outputs.write(time, output), *states)

    _, outputs, *_ = tf.while_loop(lambda time, *_: time < steps, body, (tf.constant(0), outputs, *states))
    return outputs.stack()


def _lstm_step(cell, dtype):
    kernel, recurrent_kernel = tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.recurrent_kernel)
    bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else tf.zeros([4 * cell.units], dtype)

    def step(x, states):
        h, c = states
        i, f, g, o = tf.split(tf.nn.bias_add(tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel), bias), 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]

    return step


def _gru_step(cell, dtype):
    kernel, recurrent_kernel = tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.recurrent_kernel)
    bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else tf.zeros([2, 3 * cell.units], dtype)
    input_bias, recurrent_bias = bias[0], bias[1]  # sliced outside the loop: the pattern wants them as loop inputs

    def step(x, states):
        (h,) = states
        x_z, x_r, x_h = tf.split(tf.nn.bias_add(tf.matmul(x, kernel), input_bias), 3, axis=1)
        h_z, h_r, h_h = tf.split(tf.nn.bias_add(tf.matmul(h, recurrent_kernel), recurrent_bias), 3, axis=1)
        z = tf.sigmoid(x_z + h_z)
        r = tf.sigmoid(x_r + h_r)
        h = z * h + (1.0 - z) * tf.tanh(x_h + r * h_h)
        return h, [h]

    return step


def _reverse(time_major, lengths):
    """`time_major` with each row's first `lengths` steps reversed (all steps if `lengths` is None)."""
    if lengths is None:
        return tf.reverse(time_major, axis=[0])
    return tf.reverse_sequence(time_major, lengths, seq_axis=0, batch_axis=1)


def _direction(layer, time_major, lengths):
    """Time-major outputs of one direction of `layer` over `time_major`, from zero states."""
    if not isinstance(layer, litert_step.SEQUENCE_LAYERS):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) is not one of the recurrent layers this export knows."
        )
    if layer.return_state:
        raise ValueError(f"Layer {layer.name!r}: return_state is not supported.")
    cell = layer.cell
    batch = tf.shape(time_major)[1]
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
    states = [tf.zeros(tf.stack([batch, size]), time_major.dtype) for size in sizes]
    operator = operator_for(layer)
    if operator == "LSTM":
        step = _lstm_step(cell, time_major.dtype)
    elif operator == "GRU":
        step = _gru_step(cell, time_major.dtype)
    else:

        def step(x, states):
            return litert_step.cell_step(cell, x, states)

    return _loop(step, time_major, states, lengths)


def recurrent(layer, inputs, lengths=None):
    """What `layer` returns for `inputs` (batch-major), as a graph tf2onnx turns into ONNX's LSTM or GRU operator.

    `layer` is one of our sequence layers (`layers.LSTM`, `GRU`,
    `SimpleRNN` and the variants, which run as a `Loop`), one of Keras's
    (`keras.layers.LSTM`, `GRU`, `SimpleRNN`, as `implementation=keras`
    builds them), or a `keras.layers.Bidirectional` of one, starting from
    zero states. `lengths` (int32, `(batch,)`), if given, is the number of
    valid steps of each row, the rest being padding on the right: the
    result then equals the Keras layer's under the mask `step < length` at
    every valid step (and for `return_sequences=False`); outputs at padded
    steps are zeros.
    """
    time_major = tf.transpose(inputs, (1, 0, 2))
    if isinstance(layer, keras.layers.Bidirectional):
        serving_graph.check_bidirectional(layer)
        forward = _direction(layer.forward_layer, time_major, lengths)
        # Reversed back right after the loop: what tf2onnx takes for the backward half of a bidirectional operator.
        backward = _reverse(_direction(layer.backward_layer, _reverse(time_major, lengths), lengths), lengths)
        forward, backward = tf.transpose(forward, (1, 0, 2)), tf.transpose(backward, (1, 0, 2))
        if not layer.return_sequences:
            # The backward direction ends at each row's first step (zeros for an empty row).
            forward, backward = serving_graph.last_valid(forward, lengths), backward[:, 0]
        return serving_graph.MERGE[layer.merge_mode](forward, backward)
    if layer.go_backwards:
        raise ValueError(f"Layer {layer.name!r}: go_backwards outside Bidirectional is not supported.")
    outputs = tf.transpose(_direction(layer, time_major, lengths), (1, 0, 2))
    return outputs if layer.return_sequences else serving_graph.last_valid(outputs, lengths)


# ----------------------------------------------------------------------------- conversion and operators


def convert(serve, input_signature, weights):
    """`serve` as an ONNX `ModelProto` (opset `OPSET`), checked by `onnx.checker`.

    `serve` maps tensors of `input_signature` (whose names become the
    model's input names) to a dict of outputs (whose keys become its output
    names), calling Keras layers and `recurrent` for recurrent ones;
    `weights` (Keras variables) are read as constants while it is traced.
    """
    tf2onnx = _require("tf2onnx")
    onnx = _require("onnx")
    _require("onnxruntime")  # before the conversion: the export cannot be checked without it
    function = tf.function(serving_graph.frozen(serve, weights), input_signature=input_signature, autograph=False)
    # tf2onnx's INFO lines, and TensorFlow's warning that a Keras collection does not go into the meta graph
    # tf2onnx exports on the way, are not for the user: errors only.
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        model, _ = tf2onnx.convert.from_function(function, input_signature=input_signature, opset=OPSET)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    onnx.checker.check_model(model)
    inputs = [tensor.name for tensor in model.graph.input]
    wanted = [spec.name for spec in input_signature]
    if inputs != wanted:
        raise RuntimeError(
            f"The converted model takes the inputs {inputs}; expected {wanted}. Tensors that `serve` captures "
            "from outside become inputs: make constants while it is traced."
        )
    return model


def _nodes(graph):
    """Every node of `graph` and of the graphs inside its nodes (Loop and If bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g.node:
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def _model(model):
    """`model` as a `ModelProto`: a path, bytes or a `ModelProto`."""
    onnx = _require("onnx")
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_model_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    return model


def operators(model):
    """{operator type: count} of `model` (a path, bytes or `ModelProto`), the nodes inside loops included."""
    return dict(sorted(collections.Counter(node.op_type for node in _nodes(_model(model).graph)).items()))


def recurrent_operators(model):
    """Sorted (type, direction) of the ONNX LSTM, GRU and RNN operators of `model`."""
    found = []
    for node in _nodes(_model(model).graph):
        if node.op_type in RECURRENT:
            direction = next((a.s.decode("utf-8") for a in node.attribute if a.name == "direction"), "forward")
            found.append((node.op_type, direction))
    return sorted(found)


def check_operators(model, expected):
    """Raise unless `model`'s recurrent operators are exactly `expected` (see `expected_operators`)."""
    found = recurrent_operators(model)
    if found != expected:
        raise RuntimeError(
            f"The converted model holds the recurrent operators {found}; expected {expected} (one per recurrent "
            f"layer; tf2onnx writes a loop it does not recognise as Loop). Operators: {operators(model)}."
        )


def metadata(model):
    """The export's metadata (JSON in the model's `metadata_props` entry `METADATA_KEY`); None if absent."""
    for entry in _model(model).metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return None


# ----------------------------------------------------------------------------- running and writing


def session(model, threads=None):
    """An ONNX Runtime inference session (CPU) for `model`: a path or bytes; on `threads` threads if given."""
    onnxruntime = _require("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
    source = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_each(model, batches):
    """The model's outputs (dicts of arrays) for each input dict of `batches`."""
    runner = session(model)
    names = [output.name for output in runner.get_outputs()]
    for inputs in batches:
        yield dict(zip(names, runner.run(names, inputs)))


def run(model, inputs):
    """The model's outputs (dict of arrays) for `inputs` (dict of arrays)."""
    return next(run_each(model, [inputs]))


def compare(model, batches, expected):
    """Largest difference between the model's outputs on `batches` and `expected` (dicts of arrays).

    Relative where the expected value exceeds 1 in magnitude (see
    `serving_graph.relative_difference`). Returns (that difference, the
    largest absolute difference).
    """
    relative = absolute = 0.0
    for got, wanted in zip(run_each(model, batches), expected, strict=True):
        for name, value in wanted.items():
            if got[name].shape != np.shape(value):
                raise RuntimeError(f"The ONNX output {name!r} has shape {got[name].shape}; expected {np.shape(value)}.")
            relative = max(relative, serving_graph.relative_difference(got[name], value))
            absolute = max(absolute, float(np.max(np.abs(got[name] - value), initial=0.0)))
    return relative, absolute


def write_checked(path, model, *, batches, expected, tolerance=1e-5):
    """Write `model` (a `ModelProto`) to `path`, run that file on `batches` and check it against `expected`.

    Raises `RuntimeError` if the outputs differ by more than `tolerance`
    (see `compare`). Returns the report: path, bytes, operators, recurrent
    operators, the largest relative and absolute differences.
    """
    model_bytes = model.SerializeToString()
    with open(path, "wb") as stream:
        stream.write(model_bytes)
        stream.flush()
        os.fsync(stream.fileno())
    relative, absolute = compare(path, batches, expected)
    if not relative <= tolerance:
        raise RuntimeError(
            f"The ONNX model differs from the Keras model by {relative:.3g} (relative beyond magnitude 1); "
            f"expected at most {tolerance:g}. The export was not written."
        )
    return {
        "path": path,
        "bytes": len(model_bytes),
        "operators": operators(model),
        "recurrent_operators": recurrent_operators(model),
        "max_difference": relative,
        "max_absolute_difference": absolute,
    }


def build(serve, input_signature, weights, *, metadata, expected_recurrent):
    """Convert `serve` (see `convert`), check its recurrent operators and attach `metadata` (a JSON-able dict)."""
    model = convert(serve, input_signature, weights)
    check_operators(model, expected_recurrent)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    return model


def check_file_path(path):
    """Raise a `UserError` unless `path` could name the `.onnx` file (a directory or an empty path cannot)."""
    if not path:
        raise UserError("Received an empty value for the export path; expected a .onnx file path.")
    if os.path.isdir(path):
        raise UserIsADirectoryError(f"Received the export path {path!r}, which is a directory; expected a .onnx file.")


def export(path, serve, input_signature, weights, *, metadata, batches, expected, expected_recurrent, tolerance=1e-5):
    """Convert, check and write `serve` to the `.onnx` file `path`, atomically.

    The converted model must hold exactly `expected_recurrent` recurrent
    operators (see `expected_operators`); the file written beside `path`,
    run by ONNX Runtime on `batches` (input dicts), must then give
    `expected` (output dicts) within `tolerance` (relative beyond magnitude
    1) before it replaces whatever was at `path`. `metadata` goes into the
    model's `metadata_props` under `METADATA_KEY`. Returns the report of
    `write_checked` (with `path`).
    """
    check_file_path(path)
    model = build(serve, input_signature, weights, metadata=metadata, expected_recurrent=expected_recurrent)
    with atomic_path(path) as temporary:
        report = write_checked(temporary, model, batches=batches, expected=expected, tolerance=tolerance)
    report["path"] = path
    return report
