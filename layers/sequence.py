"""Whole-sequence layers `SimpleRNN`, `LSTM`, `GRU` built on our cells.

Each layer is a `keras.layers.RNN` that owns one of our cells and takes the
same arguments as the Keras layer of the same name, plus `bptt_steps` for
truncated back-propagation through time, `fused` and `jit_compile`. On the
TensorFlow backend a whole sequence runs on a fused path (`layers.fused`):
the recurrence in one `tf.while_loop` (compiled with XLA where `jit_compile`
says so), and, in training, back-propagation through time written by hand.
On the JAX backend a path of the same design runs (`layers.fused_jax`: a
`jax.lax.scan` with a hand-written `jax.custom_vjp`). Anything the fused
paths do not support runs the cell inside `keras.layers.RNN` instead.
The variant cells' layers (`layers.variant_sequence`) share this code.
"""

import inspect

import keras
from keras import ops, tree

from layers import cells
from layers._validation import positive_int


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
        fused=True,
        jit_compile="auto",
        activity_regularizer=None,
        **kwargs,
    ):
        # The arguments of the cell class and of every cell class it extends
        # (a variant cell passes its base cell's on in `**kwargs`).
        cell_parameters = set()
        for cell_base in self.cell_class.__mro__:
            if issubclass(cell_base, cells._RecurrentCell) and "__init__" in vars(cell_base):
                cell_parameters |= set(inspect.signature(cell_base.__init__).parameters)
        cell_parameters -= {"self", "kwargs", "units"}
        # Accepted as Keras's layers accept them: one computation mode here.
        cell_parameters.add("implementation")
        cell_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in cell_parameters}
        # The cell's dtype policy follows the layer's.
        if "dtype" in kwargs:
            cell_kwargs["dtype"] = kwargs["dtype"]
        use_cudnn = kwargs.pop("use_cudnn", "auto")
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                "Received an invalid value for argument `use_cudnn`, expected "
                f"'auto', True or False, got {use_cudnn!r}."
            )
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
        if not isinstance(fused, bool):
            raise TypeError(
                "Received an invalid value for argument `fused`, expected a bool, "
                f"got {type(fused).__name__} {fused!r}."
            )
        self.fused = fused
        if not (isinstance(jit_compile, bool) or jit_compile == "auto"):
            raise TypeError(
                "Received an invalid value for argument `jit_compile`, expected True, False or 'auto', "
                f"got {type(jit_compile).__name__} {jit_compile!r}."
            )
        self.jit_compile = jit_compile
        # As in Keras, not saved in the config (`Bidirectional` copies it).
        self.use_cudnn = use_cudnn
        # Which path the last call (or trace, inside `tf.function`) took,
        # "fused" or "cell", and why the cell path was taken; on the fused
        # TensorFlow path, which loops ran ("graph", "compiled" or
        # "compiled halves"; else `None`).
        self.last_path = None
        self.fallback_reason = None
        self.last_loops = None

    def __getattr__(self, name):
        # On PyTorch a layer is a `torch.nn.Module`, which keeps sublayers
        # (the cell) out of `__dict__` and finds them in its own `__getattr__`.
        parent = getattr(super(), "__getattr__", None)
        if parent is not None:
            try:
                return parent(name)
            except AttributeError:
                pass
        # Expose the cell's hyper-parameters (`units`, `dropout`, ...) as Keras's
        # LSTM/GRU/SimpleRNN layers do.
        if name != "cell":
            try:
                cell = self.cell
            except AttributeError:
                cell = None
            if cell is not None and name in cell.get_config():
                return getattr(cell, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.cell.reset_dropout_masks()
        if training:
            # As Keras's RNN does for its own cells: the masks are drawn
            # before the loop, which on JAX is a `lax.scan` where no random
            # numbers can be drawn.
            self.cell.draw_dropout_masks(ops.shape(sequences)[0])
        outputs = super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        self.cell.reset_dropout_masks()
        return outputs

    def _fallback_reason(self, sequences, training=False):
        """Why this call cannot take the fused path, or `None` if it can."""
        if not self.fused:
            return "fused=False"
        if keras.backend.backend() == "jax":
            from layers import fused_jax

            return fused_jax.fallback_reason(self.cell, sequences)
        if keras.backend.backend() != "tensorflow":
            return f"backend {keras.backend.backend()!r} is not tensorflow"
        from layers import fused

        return fused.fallback_reason(self.cell, sequences)

    def _compiles_loops(self, sequences, training):
        """Whether this call's fused loops are compiled with XLA (see `jit_compile`)."""
        if self.jit_compile != "auto":
            return self.jit_compile
        import tensorflow as tf

        from layers import fused

        # Compiled code is specialised to its shapes: XLA compiles it for
        # each new shape a traced call runs on, and caches it. An eager call
        # would compile anew every time, and an unknown time dimension
        # (sequences padded to the longest in each batch) suggests a new
        # length at every call. An unknown batch is a dataset's batch
        # without `drop_remainder` (or arrays with a partial last batch):
        # one or two sizes, so it compiles (see `compiles_by_default`).
        if tf.executing_eagerly() or sequences.shape[1] is None:
            return False
        return fused.compiles_by_default(self.cell.units, sequences.shape[0], bool(training))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if tree.is_nested(mask):
            mask = mask[0]
        if not tree.is_nested(initial_state):
            initial_state = [initial_state]
        if self.use_cudnn is True:
            raise ValueError(
                "Received `use_cudnn=True`, but this layer has no cuDNN path "
                "(as Keras's layers where cuDNN is unavailable); expected 'auto' or False."
            )
        reason = self._fallback_reason(sequences, training)
        self.fallback_reason = reason
        self.last_loops = None
        if reason is None and keras.backend.backend() == "jax":
            from layers import fused_jax

            self.last_path = "fused"
            options = fused_jax.CallOptions(
                training=bool(training),
                go_backwards=self.go_backwards,
                return_sequences=self.return_sequences,
                zero_output_for_mask=self.zero_output_for_mask,
                truncate_every=self.bptt_steps,
            )
            return fused_jax.fused_inner_loop(self.cell, sequences, list(initial_state), mask, options)
        if reason is None:
            from layers import fused

            self.last_path = "fused"
            options = fused.CallOptions(
                training=training,
                go_backwards=self.go_backwards,
                return_sequences=self.return_sequences,
                zero_output_for_mask=self.zero_output_for_mask,
                truncate_every=self.bptt_steps,
                jit_compile=self._compiles_loops(sequences, training),
            )
            result = fused.fused_inner_loop(self.cell, sequences, list(initial_state), mask, options)
            self.last_loops = result.loops
            return result.last_output, result.outputs, result.final_states
        self.last_path = "cell"
        if self.bptt_steps is None:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        return self._truncated_cell_loop(sequences, list(initial_state), mask, training)

    def _truncated_cell_loop(self, sequences, initial_state, mask, training):
        """The cell path with truncated back-propagation through time.

        A `keras.ops.scan` over (inputs, chunk start, valid) that does the
        masking itself: the states entering a chunk are wrapped in
        `stop_gradient` *before* masking, so a masked step at the start of a
        chunk also carries a constant. The previous output travels in the
        carry (Keras repeats it at masked steps).
        """
        x = ops.transpose(sequences, (1, 0, 2))  # time-major
        length, batch = ops.shape(x)[0], ops.shape(x)[1]
        if mask is None:
            valid = ops.ones((length, batch, 1), dtype="bool")
        else:
            valid = ops.transpose(ops.cast(mask, "bool"))[:, :, None]
        if self.go_backwards:
            x = ops.flip(x, axis=0)
            valid = ops.flip(valid, axis=0)
        steps = ops.arange(length)
        chunk_start = ops.logical_and(steps > 0, ops.mod(steps, self.bptt_steps) == 0)
        chunk_start = ops.broadcast_to(chunk_start[:, None, None], (length, batch, 1))
        cell_kwargs = {"training": training} if self.cell._call_has_training_arg else {}
        zero_output_for_mask = self.zero_output_for_mask

        def step(carry, inputs):
            x_t, chunk_start_t, valid_t = inputs
            carry = [ops.where(chunk_start_t, ops.stop_gradient(c), c) for c in carry]
            previous_output, states = carry[0], carry[1:]
            output, new_states = self.cell(x_t, states, **cell_kwargs)
            if not tree.is_nested(new_states):
                new_states = [new_states]
            new_states = [ops.where(valid_t, n, s) for n, s in zip(new_states, states)]
            fill = ops.zeros_like(output) if zero_output_for_mask else previous_output
            output = ops.where(valid_t, output, fill)
            new_carry = [output, *new_states]
            # `scan` on TensorFlow requires the per-step output to match the carry.
            return new_carry, new_carry

        initial_output = ops.zeros((batch, self.cell.output_size), dtype=self.cell.compute_dtype)
        initial_carry = [initial_output, *initial_state]
        # As `keras.layers.RNN` does, run the first step once outside the loop
        # so that per-sequence state of the cell (dropout masks) is created
        # in the enclosing graph and shared by every step.
        step(initial_carry, (x[0], chunk_start[0], valid[0]))
        final_carry, per_step = ops.scan(step, initial_carry, (x, chunk_start, valid))
        last_output = final_carry[0]
        if self.return_sequences:
            outputs = ops.transpose(per_step[0], (1, 0, 2))
        else:
            outputs = last_output[:, None, :]
        return last_output, outputs, list(final_carry[1:])

    def get_config(self):
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config = super().get_config()
        config.pop("cell", None)
        config.pop("zero_output_for_mask", None)
        return {
            **config,
            **cell_config,
            "bptt_steps": self.bptt_steps,
            "fused": self.fused,
            "jit_compile": self.jit_compile,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


_SHARED_DOC = """
    Fused path. On the TensorFlow backend, with a float32 or float64 compute
    dtype and activations among tanh, sigmoid, relu, hard_sigmoid and linear,
    a call runs fused: the recurrence runs in one `tf.while_loop` that only
    forms the step products and applies the gates (graph loops in training
    project the inputs of all steps with one matrix product first; compiled
    loops join each step's input and recurrent products into one), and with
    `training=True` back-propagation through time is written by hand: the
    backward loop carries only the state gradients, and the weight gradients
    are single matrix products over all steps after it. With `training=False` nothing
    is saved for back-propagation (fast inference); a gradient taken anyway
    runs the saving forward loop again, then the same backward loop. Inside
    a `tf.function` with a known time dimension (as in Keras's `fit`,
    `evaluate` and `predict` on sequences of a fixed length), the loops are
    compiled with XLA at the sizes where that pays (see `jit_compile`); the
    model itself needs no XLA.
    The fused path supports `return_sequences`, `return_state`,
    `go_backwards`, `initial_state` (with its gradient), `stateful`, masks
    (left- or right-padded or with holes: at a masked step the states and
    the output carry over, and outputs before the first valid step are
    zeros, as in `keras.layers.RNN`), `dropout` and `recurrent_dropout` (one
    mask per sequence, drawn from the cell's seed generator as the cell path
    draws it), `bptt_steps`, `unroll` (ignored: same numbers), XLA,
    `Bidirectional` and dynamic batch and time dimensions.

    Fallback. Other backends, other dtypes (float16 and bfloat16 under mixed
    precision), other activations, a subclassed cell, or `fused=False` run
    the cell inside `keras.layers.RNN`, with results identical to
    `keras.layers.RNN(cell)` (with `bptt_steps`, the cell path cuts the
    gradients as described below). `last_path` ("fused" or "cell") and
    `fallback_reason` record what the last call (or trace) did, and
    `last_loops` which loops the fused TensorFlow path ran ("graph",
    "compiled", or "compiled halves": the batch's two halves at once).

    Truncated back-propagation through time. With `bptt_steps=k` the
    sequence is cut, in processing order (reversed with `go_backwards`),
    into consecutive chunks of k steps, and the states carried from one
    chunk into the next are treated as constants when differentiating: no
    gradient flows from a chunk into the chunk before it. Outputs are
    unchanged. The initial state receives gradient only through the first
    chunk; outputs at masked steps that repeat a state carried across a
    chunk boundary carry no gradient across it either. Both paths implement
    it, with the same numbers.

    Args:
        units: Positive integer, dimensionality of the output space.
        return_sequences, return_state, go_backwards, stateful, unroll: As in
            `keras.layers.RNN`.
        bptt_steps: `None` (full back-propagation through time) or a positive
            integer k, the chunk length of truncated back-propagation.
        fused: `True` (default) to use the fused path where it applies,
            `False` to always run the cell path.
        jit_compile: Whether the fused path's loops are compiled with XLA,
            which makes them faster on a CPU (see layers/README.md#speed)
            but costs a compilation (a second or two) for every new input
            shape. `"auto"` (default): compiled when the layer is called
            inside a `tf.function`, the time dimension is known there, and
            the size is one where compiling was measured to pay (inference
            at any size; training up to 512 units, or more with a known
            batch of 64 or more; see `layers.fused.compiles_by_default` and
            layers/README.md#compiling-the-loops). An unknown batch (a
            dataset's batches without `drop_remainder`) compiles once per
            batch size met. An eager call, or a traced one with the time
            dimension unknown (say, texts padded to the longest in each
            batch), runs graph loops.
            `True`: always compiled (an eager call compiles every time).
            `False`: never.
        **kwargs: Cell arguments ({cell}: activation, dropout, ...) and base
            layer arguments. Keras's `implementation` (one mode here) and
            `use_cudnn` (kept as an attribute, as Keras keeps it; there is
            no cuDNN path, so `True` raises at the first call) are accepted.

    Call arguments:
        sequences: Tensor of shape `(batch, timesteps, features)`.
        initial_state: Optional list of initial state tensors.
        mask: Optional boolean tensor of shape `(batch, timesteps)`.
        training: Whether dropout applies, and (fused path) whether
            back-propagation uses the hand-written loop.
"""


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class SimpleRNN(_SequenceLayer):
    """Fully connected recurrent layer over whole sequences (our `SimpleRNNCell`).

    Takes the arguments of `keras.layers.SimpleRNN` with the same meaning, plus
    `bptt_steps`, `fused` and `jit_compile`. Weights are interchangeable with
    Keras's layer.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> layer = layers.SimpleRNN(4, bptt_steps=2)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32"), training=True).shape), layer.last_path
    ((2, 4), 'fused')
    """

    cell_class = cells.SimpleRNNCell


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class LSTM(_SequenceLayer):
    """Long short-term memory layer over whole sequences (our `LSTMCell`).

    Takes the arguments of `keras.layers.LSTM` with the same meaning, plus
    `bptt_steps`, `fused` and `jit_compile`. Weights are interchangeable with
    Keras's layer.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> output, h, c = layers.LSTM(4, return_state=True)(np.zeros((2, 5, 3), "float32"))
    >>> tuple(c.shape)
    (2, 4)
    >>> slow = layers.LSTM(4, activation="softsign")
    >>> _ = slow(np.zeros((2, 5, 3), "float32"))
    >>> slow.last_path, slow.fallback_reason.startswith("activation")
    ('cell', True)
    """

    cell_class = cells.LSTMCell


@keras.saving.register_keras_serializable(package=cells.PACKAGE)
class GRU(_SequenceLayer):
    """Gated recurrent unit layer over whole sequences (our `GRUCell`).

    Takes the arguments of `keras.layers.GRU` with the same meaning (including
    `reset_after`, both values fused), plus `bptt_steps`, `fused` and
    `jit_compile`. Weights are interchangeable with Keras's layer.
    {shared}
    Example:

    >>> import numpy as np, layers
    >>> tuple(layers.GRU(4, return_sequences=True)(np.zeros((2, 5, 3), "float32")).shape)
    (2, 5, 4)
    """

    cell_class = cells.GRUCell


def with_shared_doc(layer_class):
    """`layer_class`, its docstring's `{shared}` replaced by the sequence layers' shared text."""
    layer_class.__doc__ = layer_class.__doc__.replace(
        "{shared}", _SHARED_DOC.replace("{cell}", f"see `{layer_class.cell_class.__name__}`")
    )
    return layer_class


for _layer_class in (SimpleRNN, LSTM, GRU):
    with_shared_doc(_layer_class)
del _layer_class
