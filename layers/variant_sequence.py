"""Whole-sequence layers of the variant cells: `LayerNormSimpleRNN`, `LayerNormLSTM`, `LayerNormGRU`,
`PeepholeLSTM` and `ProjectionLSTM`.

Each is what `layers.sequence`'s `SimpleRNN`, `LSTM` and `GRU` are for the
plain cells: a `keras.layers.RNN` that owns one variant cell, takes the
cell's arguments and `keras.layers.RNN`'s, plus `bptt_steps`, `fused` and
`jit_compile`, and on the TensorFlow backend runs a whole sequence on the
fused path (`layers.fused`) with back-propagation through time written by
hand. On other backends (JAX included) they run the cell inside
`keras.layers.RNN`, with `fallback_reason` saying so.
"""

import keras

from layers import cells
from layers.lstm_variants import PeepholeLSTMCell, ProjectionLSTMCell
from layers.norm_cells import LayerNormGRUCell, LayerNormLSTMCell, LayerNormSimpleRNNCell
from layers.sequence import _SequenceLayer, with_shared_doc

_NORMALISED_PROJECTION = """
    The input projection of every step is normalised with one operation
    over the whole sequence before the loop (it does not depend on the
    state), so compiled loops do not join it with the recurrent product.
"""


@with_shared_doc
@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class LayerNormSimpleRNN(_SequenceLayer):
    """Elman recurrent layer with layer normalisation, over whole sequences (our `LayerNormSimpleRNNCell`).

    Takes the arguments of `LayerNormSimpleRNNCell` (TensorFlow Addons'
    `LayerNormSimpleRNNCell`'s) and of `keras.layers.RNN`, plus
    `bptt_steps`, `fused` and `jit_compile`. Weights and their order are the
    cell's.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.LayerNormSimpleRNN(4, return_sequences=True)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32"), training=True).shape), layer.last_path
    ((2, 5, 4), 'fused')
    """

    cell_class = LayerNormSimpleRNNCell


@with_shared_doc
@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class LayerNormLSTM(_SequenceLayer):
    """Layer-normalised LSTM layer over whole sequences (our `LayerNormLSTMCell`).

    Takes the arguments of `LayerNormLSTMCell` (TensorFlow Addons'
    `LayerNormLSTMCell`'s, plus `carry_normalized_state`) and of
    `keras.layers.RNN`, plus `bptt_steps`, `fused` and `jit_compile`.
    Weights and their order are the cell's, as Addons names them.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.LayerNormLSTM(4, return_state=True, bptt_steps=2)
    >>> output, h, c = layer(np.ones((2, 5, 3), "float32"), training=True)
    >>> tuple(c.shape), layer.last_path
    ((2, 4), 'fused')
    """

    cell_class = LayerNormLSTMCell


@with_shared_doc
@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class LayerNormGRU(_SequenceLayer):
    """Layer-normalised GRU layer over whole sequences (our `LayerNormGRUCell`).

    Takes the arguments of `LayerNormGRUCell` (including `reset_after`, both
    values fused) and of `keras.layers.RNN`, plus `bptt_steps`, `fused` and
    `jit_compile`. Weights and their order are the cell's.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.LayerNormGRU(4, reset_after=False)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32")).shape), layer.last_path
    ((2, 4), 'fused')
    """

    cell_class = LayerNormGRUCell


@with_shared_doc
@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class PeepholeLSTM(_SequenceLayer):
    """LSTM layer with peephole connections over whole sequences (our `PeepholeLSTMCell`).

    Takes the arguments of `PeepholeLSTMCell` (TensorFlow Addons'
    `PeepholeLSTMCell`'s) and of `keras.layers.RNN`, plus `bptt_steps`,
    `fused` and `jit_compile`. Weights and their order are the cell's.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.PeepholeLSTM(4, go_backwards=True)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32"), training=True).shape), layer.last_path
    ((2, 4), 'fused')
    """

    cell_class = PeepholeLSTMCell


@with_shared_doc
@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class ProjectionLSTM(_SequenceLayer):
    """LSTM layer with a projection (LSTMP) over whole sequences (our `ProjectionLSTMCell`).

    Takes the arguments of `ProjectionLSTMCell` (`proj_units`,
    `use_peepholes`, `coupled_input_forget_gate`, `cell_clip`, `proj_clip`,
    ...) and of `keras.layers.RNN`, plus `bptt_steps`, `fused` and
    `jit_compile`; every combination of the options runs fused. The output
    and the first state are `proj_units` wide. Weights and their order are
    the cell's.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.ProjectionLSTM(8, proj_units=3, use_peepholes=True, cell_clip=3.0, return_state=True)
    >>> output, r, c = layer(np.zeros((2, 5, 4), "float32"), training=True)
    >>> tuple(output.shape), tuple(c.shape), layer.last_path
    ((2, 3), (2, 8), 'fused')
    """

    cell_class = ProjectionLSTMCell


for _layer_class in (LayerNormSimpleRNN, LayerNormLSTM, LayerNormGRU):
    _layer_class.__doc__ = _layer_class.__doc__.replace("    Example:\n", _NORMALISED_PROJECTION + "\n    Example:\n")
del _layer_class
