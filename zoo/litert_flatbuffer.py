"""The `.tflite` flatbuffer: operators and their tensor types, the fused LSTM's cell clip, the project's metadata."""

import collections
import json

import numpy as np

from zoo.errors import UserError

FUSED_LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
METADATA_NAME = "rnnzoo"  # the model's metadata entry: JSON written by the task (vocabulary, inputs, ...)
CUSTOM = "CUSTOM:"


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as error:
        raise missing_litert() from error
    return schema_py_generated


def missing_litert():
    return UserError(
        "LiteRT export needs the ai-edge-litert package; expected it installed: "
        "`pip install ai-edge-litert` (or `pip install -e '.[litert]'`)."
    )


def _operator_names(model):
    schema = _schema()
    builtin_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    names = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(CUSTOM + code.customCode.decode("utf-8"))
        else:
            names.append(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _unpack(model_bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


def finish(model_bytes, metadata, cell_clip=0.0):
    """`model_bytes` with every fused LSTM's cell clip set to `cell_clip` and `metadata` (JSON) attached."""
    import flatbuffers

    schema = _schema()
    model = _unpack(model_bytes)
    names = _operator_names(model)
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            if names[operator.opcodeIndex] == FUSED_LSTM:
                operator.builtinOptions.cellClip = float(cell_clip)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [item for item in (model.metadata or []) if item.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def operators(model_bytes):
    """How often each operator occurs in the model (all subgraphs); custom and Flex ops as `CUSTOM:<name>`."""
    model = _unpack(model_bytes)
    names = _operator_names(model)
    return collections.Counter(names[op.opcodeIndex] for subgraph in model.subgraphs for op in subgraph.operators)


def operator_types(model_bytes, name):
    """For each `name` operator (all subgraphs): (its input tensors' types, its output tensors' types), as names.

    Absent optional inputs are `None`; types are `TensorType` names
    (`FLOAT32`, `INT8`, `INT16`, `INT32`, ...).
    """
    schema = _schema()
    type_names = {
        code: type_name for type_name, code in vars(schema.TensorType).items() if not type_name.startswith("_")
    }
    model = _unpack(model_bytes)
    names = _operator_names(model)

    def types(subgraph, indices):
        return [None if index < 0 else type_names[subgraph.tensors[index].type] for index in indices]

    return [
        (types(subgraph, op.inputs), types(subgraph, op.outputs))
        for subgraph in model.subgraphs
        for op in subgraph.operators
        if names[op.opcodeIndex] == name
    ]


def cell_clips(model_bytes):
    """The cell clip of every fused LSTM op in the model."""
    model = _unpack(model_bytes)
    names = _operator_names(model)
    return [
        op.builtinOptions.cellClip
        for subgraph in model.subgraphs
        for op in subgraph.operators
        if names[op.opcodeIndex] == FUSED_LSTM
    ]


def metadata(model_bytes):
    """The JSON metadata `finish` attached."""
    model = _unpack(model_bytes)
    for entry in model.metadata or []:
        if entry.name.decode("utf-8") == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode("utf-8"))
    raise ValueError(f"The model has no {METADATA_NAME!r} metadata.")
