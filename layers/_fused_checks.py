"""What both fused paths (`layers.fused` on TensorFlow, `layers.fused_jax` on JAX) support, without a backend.

`cell_kind` names the step arithmetic a cell needs; `unsupported_reason`
says why a call cannot run fused for reasons common to both paths.
"""

import keras

from layers import cells, lstm_variants, norm_cells

# Dtypes the fused paths compute in. Others (float16, bfloat16 under mixed
# precision) run the cell path, whose rounding a fused path would not match.
SUPPORTED_DTYPES = ("float32", "float64")


# The plain cells' kinds, which both fused paths implement.
PLAIN_KINDS = ("simple_rnn", "lstm", "gru", "gru_reset_before")


def cell_kind(cell):
    """The step arithmetic one of our cells needs, by name, else `None`.

    `"simple_rnn"`, `"lstm"`, `"gru"` or `"gru_reset_before"` for the plain
    cells (`PLAIN_KINDS`); `"layer_norm_simple_rnn"`, `"layer_norm_lstm"`,
    `"layer_norm_gru"`, `"layer_norm_gru_reset_before"` and `"gated_lstm"`
    (peepholes, projection, coupled gate, clipping) for the variant cells.
    Only the exact classes qualify: a subclass may change the step.
    """
    kind = type(cell)
    reset_suffix = "" if getattr(cell, "reset_after", True) else "_reset_before"
    return {
        cells.SimpleRNNCell: "simple_rnn",
        cells.LSTMCell: "lstm",
        cells.GRUCell: "gru" + reset_suffix,
        norm_cells.LayerNormSimpleRNNCell: "layer_norm_simple_rnn",
        norm_cells.LayerNormLSTMCell: "layer_norm_lstm",
        norm_cells.LayerNormGRUCell: "layer_norm_gru" + reset_suffix,
        lstm_variants.PeepholeLSTMCell: "gated_lstm",
        lstm_variants.ProjectionLSTMCell: "gated_lstm",
    }.get(kind)


def unsupported_reason(cell, sequences, resolve_activation, kinds=PLAIN_KINDS):
    """Why a fused path cannot run this call (a sentence), or `None`.

    `resolve_activation` is the path's table of activations with known
    derivatives (it returns `None` for an unknown one); `kinds` are the
    `cell_kind`s the path implements.
    """
    if cell_kind(cell) not in kinds:
        return f"cell {type(cell).__name__} has no fused implementation on the {keras.backend.backend()} backend"
    dtype = str(getattr(cell, "compute_dtype", None))
    if dtype not in SUPPORTED_DTYPES:
        return f"compute dtype {dtype} is not one of {SUPPORTED_DTYPES}"
    if keras.backend.standardize_dtype(sequences.dtype) != dtype:
        return f"inputs of dtype {sequences.dtype} differ from the compute dtype {dtype}"
    if len(sequences.shape) != 3:
        return f"inputs of rank {len(sequences.shape)}, expected 3"
    if resolve_activation(cell.activation) is None:
        return f"activation {cell.activation!r} has no known derivative"
    # (A SimpleRNN cell has none, which resolves to the identity.)
    recurrent_activation = getattr(cell, "recurrent_activation", None)
    if resolve_activation(recurrent_activation) is None:
        return f"recurrent_activation {recurrent_activation!r} has no known derivative"
    return None
