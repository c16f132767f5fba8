"""From-scratch recurrent layers for Keras 3.

Cells (one time step, for `keras.layers.RNN`, `Bidirectional`, stacking):
`SimpleRNNCell`, `LSTMCell`, `GRUCell`.

Sequence layers (whole sequences, with a fused TensorFlow path and
hand-written back-propagation through time): `SimpleRNN`, `LSTM`, `GRU`.
"""

from layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from layers.sequence import GRU, LSTM, SimpleRNN

__all__ = ["SimpleRNNCell", "LSTMCell", "GRUCell", "SimpleRNN", "LSTM", "GRU"]
