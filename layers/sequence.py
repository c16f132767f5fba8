"""Whole-sequence layers `SimpleRNN`, `LSTM`, `GRU` built on our cells.

Each layer is a `keras.layers.RNN` that owns one of our cells and takes the
same arguments as the Keras layer of the same name, plus `bptt_steps` for
truncated back-propagation through time.
"""

import inspect

import keras

from layers import cells
from layers._validation import positive_int

_RNN_ARGUMENTS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll")


class _SequenceLayer(keras.layers.RNN):
    """A `keras.layers.RNN` around one of our cells.

    Subclasses set `cell_class`.
    """

    cell_class = None

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        bptt_steps=None,
        activity_regularizer=None,
        **kwargs,
    ):
        cell_parameters = set(inspect.signature(self.cell_class.__init__).parameters)
        cell_parameters |= set(inspect.signature(cells._RecurrentCell.__init__).parameters)
        cell_parameters -= {"self", "kwargs", "units"}
        cell_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in cell_parameters}
        # The cell's dtype policy follows the layer's.
        if "dtype" in kwargs:
            cell_kwargs["dtype"] = kwargs["dtype"]
        kwargs.pop("use_cudnn", None)  # accepted for compatibility with Keras; no GPU path here
        cell = self.cell_class(units, name=f"{self.cell_class.__name__.lower()}", **cell_kwargs)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.bptt_steps = None if bptt_steps is None else positive_int("bptt_steps", bptt_steps)

    def __getattr__(self, name):
        # Expose the cell's hyper-parameters (`units`, `dropout`, ...) as Keras's
        # LSTM/GRU/SimpleRNN layers do.
        if name != "cell" and "cell" in self.__dict__ and name in self.__dict__["cell"].get_config():
            return getattr(self.__dict__["cell"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.cell.reset_dropout_masks()
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def get_config(self):
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config = super().get_config()
        config.pop("cell", None)
        config.pop("zero_output_for_mask", None)
        return {**config, **cell_config, "bptt_steps": self.bptt_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class SimpleRNN(_SequenceLayer):
    """Fully connected recurrent layer over whole sequences (our `SimpleRNNCell`).

    Takes the arguments of `keras.layers.SimpleRNN` with the same meaning, and
    `bptt_steps` (see below). Weights are interchangeable with Keras's layer.

    Args:
        units: Positive integer, dimensionality of the output space.
        return_sequences, return_state, go_backwards, stateful, unroll: As in
            `keras.layers.RNN`.
        bptt_steps: `None` (full back-propagation through time) or a positive
            integer k: the sequence is cut into consecutive chunks of k steps
            and gradients do not flow from one chunk into the one before it.
        **kwargs: Cell arguments (see `SimpleRNNCell`) and base layer
            arguments.

    Call arguments:
        sequences: Tensor of shape `(batch, timesteps, features)`.
        initial_state: Optional list of initial state tensors.
        mask: Optional boolean tensor of shape `(batch, timesteps)`.
        training: Whether dropout applies.

    Example:

    >>> import numpy as np, layers
    >>> layers.SimpleRNN(4)(np.zeros((2, 5, 3), "float32")).shape
    (2, 4)
    """

    cell_class = cells.SimpleRNNCell


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class LSTM(_SequenceLayer):
    """Long short-term memory layer over whole sequences (our `LSTMCell`).

    Takes the arguments of `keras.layers.LSTM` with the same meaning, and
    `bptt_steps` as in `SimpleRNN`. Weights are interchangeable with Keras's
    layer.

    Example:

    >>> import numpy as np, layers
    >>> output, h, c = layers.LSTM(4, return_state=True)(np.zeros((2, 5, 3), "float32"))
    >>> c.shape
    (2, 4)
    """

    cell_class = cells.LSTMCell


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class GRU(_SequenceLayer):
    """Gated recurrent unit layer over whole sequences (our `GRUCell`).

    Takes the arguments of `keras.layers.GRU` with the same meaning (including
    `reset_after`), and `bptt_steps` as in `SimpleRNN`. Weights are
    interchangeable with Keras's layer.

    Example:

    >>> import numpy as np, layers
    >>> layers.GRU(4, return_sequences=True)(np.zeros((2, 5, 3), "float32")).shape
    (2, 5, 4)
    """

    cell_class = cells.GRUCell
