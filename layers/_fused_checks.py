"""What both fused paths (`layers.fused` on TensorFlow, `layers.fused_jax` on JAX) support, without a backend.

`cell_kind` names the step arithmetic a cell needs; `unsupported_reason`
says why a call cannot run fused for reasons common to both paths.
"""

import keras

from layers import cells

# Dtypes the fused paths compute in. Others (float16, bfloat16 under mixed
# precision) run the cell path, whose rounding a fused path would not match.
SUPPORTED_DTYPES = ("float32", "float64")


def cell_kind(cell):
    """`"simple_rnn"`, `"lstm"`, `"gru"` or `"gru_reset_before"` for one of our cells, else `None`.

    Only the exact classes qualify: a subclass may change the step.
    """
    kind = type(cell)
    if kind is cells.SimpleRNNCell:
        return "simple_rnn"
    if kind is cells.LSTMCell:
        return "lstm"
    if kind is cells.GRUCell:
        return "gru" if cell.reset_after else "gru_reset_before"
    return None


def unsupported_reason(cell, sequences, resolve_activation):
    """Why a fused path cannot run this call (a sentence), or `None`.

    `resolve_activation` is the path's table of activations with known
    derivatives (it returns `None` for an unknown one).
    """
    if cell_kind(cell) is None:
        return f"cell {type(cell).__name__} has no fused implementation"
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
