"""From-scratch recurrent layers for Keras 3.

Cells (one time step, for `keras.layers.RNN`, `Bidirectional`, stacking):
`SimpleRNNCell`, `LSTMCell`, `GRUCell`; the layer-normalised
`LayerNormSimpleRNNCell`, `LayerNormLSTMCell`, `LayerNormGRUCell`; the LSTM
variants `PeepholeLSTMCell` and `ProjectionLSTMCell` (projection, peepholes,
coupled input-forget gate). `layers.migration` loads weights saved from
TensorFlow Addons' cells (and `tf.compat.v1`'s LSTM cell).

Sequence layers (whole sequences, with a fused TensorFlow path and
hand-written back-propagation through time): `SimpleRNN`, `LSTM`, `GRU`,
and of the variant cells `LayerNormSimpleRNN`, `LayerNormLSTM`,
`LayerNormGRU`, `PeepholeLSTM`, `ProjectionLSTM`.
"""

from layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from layers.lstm_variants import PeepholeLSTMCell, ProjectionLSTMCell
from layers.norm_cells import LayerNormGRUCell, LayerNormLSTMCell, LayerNormSimpleRNNCell
from layers.sequence import GRU, LSTM, SimpleRNN
from layers.variant_sequence import LayerNormGRU, LayerNormLSTM, LayerNormSimpleRNN, PeepholeLSTM, ProjectionLSTM

__all__ = [
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormSimpleRNNCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "PeepholeLSTMCell",
    "ProjectionLSTMCell",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "LayerNormSimpleRNN",
    "LayerNormLSTM",
    "LayerNormGRU",
    "PeepholeLSTM",
    "ProjectionLSTM",
]
