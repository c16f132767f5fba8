"""Recurrent cells written from scratch with `keras.ops`.

Each cell computes one time step and follows the Keras cell contract
(`state_size`, `output_size`, `call(inputs, states, training)`,
`get_initial_state(batch_size)`), so it works inside `keras.layers.RNN`,
`keras.layers.Bidirectional` and a list of stacked cells. Weight names, shapes
and gate order equal Keras's own cells, so `set_weights` moves weights between
these cells and `keras.layers.SimpleRNNCell`/`LSTMCell`/`GRUCell` (and the
`SimpleRNN`/`LSTM`/`GRU` layers) in both directions.
"""

import weakref

import keras
from keras import activations, constraints, initializers, ops, regularizers

from layers._call_context import enclosing_rnn_call, jax_draw_would_leak, tensor_usable_here, training_of_current_call
from layers._validation import positive_int, rate, resolve

PACKAGE = "rnnzoo"

try:
    # `keras.layers.RNN` asks a cell of this class (a mixin of four methods,
    # not a cell) for its dropout masks before its loop, whatever the state
    # came from; the cells below declare it and implement all four themselves.
    from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell as _DropoutProtocol
except ImportError:  # pragma: no cover - depends on the Keras version
    _DropoutProtocol = object


class _RecurrentCell(keras.layers.Layer, _DropoutProtocol):
    """Shared machinery: argument checks, weights, dropout masks, config.

    Subclasses set `_gate_count` and implement `step`.
    """

    _gate_count = 1
    # Whether the dropout seed generator is made before the initializers
    # (Keras's SimpleRNNCell) or after them (its LSTMCell and GRUCell).
    _seed_generator_first = False

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        # Accepted for config compatibility with Keras's cells; this cell
        # always computes all gates with one matrix product.
        kwargs.pop("implementation", None)
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(
                f"Received an invalid value for argument `seed`, expected an integer or None, got {seed!r}."
            )
        self.seed = seed
        # An unseeded initializer or seed generator draws its seed from the
        # global generator when it is made, so making them in the order of the
        # Keras cell of the same name gives the same initial weights for the
        # same `keras.utils.set_random_seed`.
        if self._seed_generator_first:
            self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.activation = resolve("activation", activations.get, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = resolve("kernel_initializer", initializers.get, kernel_initializer)
        self.recurrent_initializer = resolve("recurrent_initializer", initializers.get, recurrent_initializer)
        self.bias_initializer = resolve("bias_initializer", initializers.get, bias_initializer)
        self.kernel_regularizer = resolve("kernel_regularizer", regularizers.get, kernel_regularizer)
        self.recurrent_regularizer = resolve("recurrent_regularizer", regularizers.get, recurrent_regularizer)
        self.bias_regularizer = resolve("bias_regularizer", regularizers.get, bias_regularizer)
        self.kernel_constraint = resolve("kernel_constraint", constraints.get, kernel_constraint)
        self.recurrent_constraint = resolve("recurrent_constraint", constraints.get, recurrent_constraint)
        self.bias_constraint = resolve("bias_constraint", constraints.get, bias_constraint)
        self.dropout = rate("dropout", dropout)
        self.recurrent_dropout = rate("recurrent_dropout", recurrent_dropout)
        if not self._seed_generator_first:
            self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.output_size = self.units
        self.reset_dropout_masks()

    # ----------------------------------------------------------------- weights
    def _bias_shape(self):
        return (self._gate_count * self.units,)

    def _make_bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects `inputs` of rank 2 "
                f"(batch, features) at each step, got shape {input_shape}. "
                "To run over a sequence, wrap the cell in `keras.layers.RNN`."
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} needs a known last dimension of `inputs`, got shape {input_shape}."
            )
        width = self._gate_count * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self._recurrent_units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self._bias_shape(),
                name="bias",
                initializer=self._make_bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.built = True

    def set_weights(self, weights):
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} `{self.name}` has no weights yet, so "
                "argument `weights` cannot be set; build it first with "
                "`cell.build((batch, features))` or by calling it."
            )
        expected = [tuple(w.shape) for w in self.weights]
        received = [tuple(getattr(w, "shape", ())) for w in weights]
        if expected != received:
            raise ValueError(
                f"Received weights of shapes {received} for argument `weights` "
                f"of {type(self).__name__} `{self.name}`, expected shapes "
                f"{expected} ([{', '.join(self._weight_names())}]){self._layout_hint()}."
            )
        super().set_weights(weights)

    def _layout_hint(self):
        return ""

    def _weight_names(self):
        """Names of `self.weights` below the cell, in order: `kernel`, ..., `kernel_norm/gamma`."""
        marker = f"{self.name}/"
        return [w.path[w.path.rindex(marker) + len(marker) :] if marker in w.path else w.name for w in self.weights]

    # ------------------------------------------------------------------ states
    @property
    def _recurrent_units(self):
        """Width of the state fed back through `recurrent_kernel` (and of its dropout mask)."""
        return self.units

    @property
    def state_size(self):
        return self.units

    def get_initial_state(self, batch_size=None):
        # A new sequence starts here. Inside `keras.layers.RNN` in training,
        # its dropout masks are drawn now, before the loop over its steps (on
        # JAX the loop is a `lax.scan`, where no new random numbers can be
        # drawn); called directly, the next training step draws them.
        if enclosing_rnn_call() is None:
            self.reset_dropout_masks()
        elif training_of_current_call() is not False:
            self.draw_dropout_masks(batch_size)
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in sizes]

    def _check_step(self, inputs, states):
        if len(inputs.shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects `inputs` of rank 2 (batch, features), got shape {tuple(inputs.shape)}."
            )
        features = inputs.shape[-1]
        if self.built and features is not None and features != self.kernel.shape[0]:
            raise ValueError(
                f"{type(self).__name__} was built for `inputs` with "
                f"{self.kernel.shape[0]} features, got shape {tuple(inputs.shape)}."
            )
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        if len(states) != len(sizes):
            raise ValueError(
                f"{type(self).__name__} expects `states` to hold {len(sizes)} tensor(s), got {len(states)}."
            )
        for index, (state, size) in enumerate(zip(states, sizes)):
            shape = tuple(state.shape)
            if len(shape) != 2 or (shape[-1] is not None and shape[-1] != size):
                raise ValueError(
                    f"{type(self).__name__} expects `states[{index}]` of shape (batch, {size}), got shape {shape}."
                )

    # ----------------------------------------------------------------- dropout
    def reset_dropout_masks(self):
        """Forget the cached dropout masks; the next training step draws new ones."""
        object.__setattr__(self, "_input_mask", None)
        object.__setattr__(self, "_recurrent_mask", None)
        object.__setattr__(self, "_mask_owner", None)

    def _follow_sequence(self):
        """Reset the cached masks when the steps belong to a new `RNN` call.

        The masks are tied to the `keras.layers.RNN` call that drew them, so a
        new call (a new batch of sequences) always gets new masks, whether or
        not `RNN` asked this cell for its initial state. Outside any `RNN` the
        masks stay until `reset_dropout_masks()` or `get_initial_state()`.
        """
        scope = enclosing_rnn_call()
        owner = getattr(self, "_mask_owner", None)
        current = owner() if owner is not None else None
        if current is not scope or (owner is not None and current is None):
            self.reset_dropout_masks()
            if scope is not None:
                object.__setattr__(self, "_mask_owner", weakref.ref(scope))

    def _cached_mask(self, attribute, batch_size, width, dropout_rate, in_step=False):
        mask = getattr(self, attribute)
        if mask is not None and tensor_usable_here(mask):
            static_batch = batch_size if isinstance(batch_size, int) else None
            if mask.shape[0] is None or static_batch is None or mask.shape[0] == static_batch:
                return mask
        if in_step and enclosing_rnn_call() is not None and jax_draw_would_leak(self.seed_generator):
            raise ValueError(
                f"{type(self).__name__} `{self.name}` with `dropout` or "
                "`recurrent_dropout` cannot draw its dropout masks inside the "
                "JAX loop (`lax.scan`) of `keras.layers.RNN`. It draws them "
                "before the loop when `RNN` asks for them (`get_dropout_mask`) "
                "or for the initial state; this loop did neither. Use "
                "`keras.layers.RNN` itself or the sequence layer "
                "`layers.SimpleRNN`, `layers.LSTM` or `layers.GRU` (which draw "
                "them before their loop in every case), "
                "or pass `unroll=True` to `keras.layers.RNN`."
            )
        ones = ops.ones((batch_size, width), dtype=self.compute_dtype)
        mask = keras.random.dropout(ones, rate=dropout_rate, seed=self.seed_generator)
        object.__setattr__(self, attribute, mask)
        return mask

    def draw_dropout_masks(self, batch_size):
        """Draw the current sequence's dropout masks now, before its steps run.

        Keeps masks already drawn for the same sequence (the same
        `keras.layers.RNN` call). The sequence layers call this before their
        loop in training, and `get_initial_state` inside `keras.layers.RNN`;
        on JAX the loop is a `lax.scan`, where drawing is impossible. Returns
        `(input_mask, recurrent_mask)`, `None` where that dropout is 0 (and
        the input mask `None` too while the cell is not built).
        """
        self._follow_sequence()
        input_mask = recurrent_mask = None
        if self.dropout > 0.0 and self.built:
            input_mask = self._cached_mask("_input_mask", batch_size, self.kernel.shape[0], self.dropout)
        if self.recurrent_dropout > 0.0:
            recurrent_mask = self._cached_mask(
                "_recurrent_mask", batch_size, self._recurrent_units, self.recurrent_dropout
            )
        return input_mask, recurrent_mask

    # Keras's protocol for pre-drawn masks: `keras.layers.RNN` calls the two
    # getters before its loop (with the first step's inputs and the first
    # state) and the two resets after it. On JAX this is what lets a cell
    # with dropout run in `RNN` with `initial_state` or `stateful=True`,
    # where `RNN` never calls `get_initial_state`.
    def get_dropout_mask(self, step_input):
        """The input dropout mask of the current sequence, drawn now if needed (see `draw_dropout_masks`)."""
        return self._pre_drawn_masks(step_input)[0]

    def get_recurrent_dropout_mask(self, step_input):
        """The recurrent dropout mask of the current sequence, drawn now if needed."""
        return self._pre_drawn_masks(step_input)[1]

    def reset_dropout_mask(self):
        """Nothing to do: `keras.layers.RNN` calls this after its loop, and the
        masks stay until the next sequence draws its own (see `_follow_sequence`)."""

    def reset_recurrent_dropout_mask(self):
        """Nothing to do (see `reset_dropout_mask`)."""

    def _pre_drawn_masks(self, step_input):
        if enclosing_rnn_call() is None or training_of_current_call() is False:
            return None, None
        return self.draw_dropout_masks(ops.shape(step_input)[0])

    def dropout_masks(self, inputs, h_tm1, training=False):
        """The (input, recurrent) dropout masks of the current sequence.

        One mask per sequence, reused at every step: inside
        `keras.layers.RNN` (and `Bidirectional`, stacked cells) the masks are
        drawn once per `RNN` call, before the loop where `get_initial_state`
        or our sequence layers draw them (see `draw_dropout_masks`), else at
        the first training step; for a cell called directly they are drawn
        at the first training step after `reset_dropout_masks()` (which
        `get_initial_state` calls). `None` where no dropout applies.
        """
        if not training:
            return None, None
        self._follow_sequence()
        input_mask = recurrent_mask = None
        batch_size = ops.shape(inputs)[0]
        if self.dropout > 0.0:
            input_mask = self._cached_mask("_input_mask", batch_size, inputs.shape[-1], self.dropout, in_step=True)
        if self.recurrent_dropout > 0.0:
            recurrent_mask = self._cached_mask(
                "_recurrent_mask", batch_size, self._recurrent_units, self.recurrent_dropout, in_step=True
            )
        return input_mask, recurrent_mask

    # -------------------------------------------------------------------- call
    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        states = list(states) if nested else [states]
        self._check_step(inputs, states)
        input_mask, recurrent_mask = self.dropout_masks(inputs, states[0], training)
        if input_mask is not None:
            inputs = inputs * input_mask
        output, new_states = self.step(inputs, states, recurrent_mask)
        return output, (new_states if nested or len(new_states) > 1 else new_states[0])

    def step(self, inputs, states, recurrent_mask):
        raise NotImplementedError

    def get_config(self):
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SimpleRNNCell(_RecurrentCell):
    """Cell of a fully connected (Elman) recurrent network.

    Computes `h_t = activation(x_t W + h_{t-1} U + b)`; the output is the new
    state. Reference: Elman, "Finding structure in time", Cognitive Science
    14(2), 1990.

    Args:
        units: Positive integer, dimensionality of the state and output.
        activation: Activation function. Default: `"tanh"`.
        use_bias: Whether to add the bias vector `b`. Default: `True`.
        kernel_initializer: Initializer of `kernel` (input to state).
            Default: `"glorot_uniform"`.
        recurrent_initializer: Initializer of `recurrent_kernel` (state to
            state). Default: `"orthogonal"`.
        bias_initializer: Initializer of `bias`. Default: `"zeros"`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer:
            Regularizers of the three weights. Default: `None`.
        kernel_constraint, recurrent_constraint, bias_constraint:
            Constraints of the three weights. Default: `None`.
        dropout: Float in [0, 1): fraction of the inputs dropped, only in
            training. One mask per sequence, reused at every step: inside
            `keras.layers.RNN` each call of the RNN draws new masks (also
            with `initial_state` or `stateful=True`); a cell called directly
            keeps its masks until `reset_dropout_masks()` or
            `get_initial_state()`. On JAX, `keras.layers.RNN` runs its
            loop in `lax.scan`, where no masks can be drawn: the cell draws
            them before, in `get_initial_state`, which `RNN` skips when
            given `initial_state` or `stateful=True`; there, use our
            sequence layers (`layers.LSTM`, ...) or `unroll=True` (a clear
            error says so). Default: `0.0`.
        recurrent_dropout: Float in [0, 1): fraction of the previous state
            dropped before the recurrent product, with one mask per sequence
            as for `dropout`. Default: `0.0`.
        seed: Integer seed of the dropout masks, or `None`. Two cells with
            the same seed draw the same masks. Default: `None`.

    Call arguments:
        inputs: Tensor of shape `(batch, features)`, one time step.
        states: List holding the previous state, shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(output, [new_state])`, both of shape `(batch, units)` (the new
        state as a bare tensor if `states` was one).

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.SimpleRNNCell(4))
    >>> tuple(rnn(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    """

    _gate_count = 1
    _seed_generator_first = True

    def step(self, inputs, states, recurrent_mask):
        h_tm1 = states[0]
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        pre_activation = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            pre_activation = pre_activation + self.bias
        pre_activation = pre_activation + ops.matmul(h_tm1, self.recurrent_kernel)
        h = self.activation(pre_activation) if self.activation is not None else pre_activation
        return h, [h]


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTMCell(_RecurrentCell):
    """Cell of a long short-term memory network.

    With gates in the order i, f, c, o (as Keras):

        i = recurrent_activation(x W_i + h U_i + b_i)
        f = recurrent_activation(x W_f + h U_f + b_f)
        g = activation(x W_c + h U_c + b_c)
        o = recurrent_activation(x W_o + h U_o + b_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * activation(c_t)

    Reference: Hochreiter & Schmidhuber, "Long short-term memory", Neural
    Computation 9(8), 1997; the forget gate from Gers, Schmidhuber & Cummins,
    "Learning to forget", 2000.

    Args:
        units: Positive integer, dimensionality of the state and output.
        activation: Activation of the candidate and of the cell state on its
            way out. Default: `"tanh"`.
        recurrent_activation: Activation of the gates. Default: `"sigmoid"`.
        use_bias: Whether the gates have biases. Default: `True`.
        kernel_initializer, recurrent_initializer, bias_initializer: As in
            `SimpleRNNCell`.
        unit_forget_bias: If `True`, initialise the forget-gate bias to
            ones (Jozefowicz et al., 2015) and the other three gates' biases
            with `bias_initializer`, as Keras does. If `False`, the whole
            bias comes from `bias_initializer`. Default: `True`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: As in
            `SimpleRNNCell`.
        dropout, recurrent_dropout, seed: As in `SimpleRNNCell`; one input
            mask and one recurrent mask per sequence, shared by all four
            gates (Keras's `LSTMCell` draws one mask per gate when
            `recurrent_dropout > 0`, so results with dropout differ from it
            in distribution detail, not in kind).

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List `[h, c]`, each of shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h, c])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.LSTMCell(4), return_state=True)
    >>> output, h, c = rnn(np.zeros((2, 5, 3), "float32"))
    >>> tuple(c.shape)
    (2, 4)

    Weights move to Keras's own layer unchanged:

    >>> sequences = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    >>> keras_lstm = keras.layers.LSTM(4, return_state=True)
    >>> keras_lstm.build(sequences.shape)
    >>> keras_lstm.set_weights(rnn.get_weights())
    >>> ours, theirs = (keras.ops.convert_to_numpy(n(sequences)[0]) for n in (rnn, keras_lstm))
    >>> bool(np.allclose(ours, theirs, atol=1e-6))
    True
    """

    _gate_count = 4
    _forget_block = 1  # the forget gate's block in the gate order

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.recurrent_activation = resolve("recurrent_activation", activations.get, recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def _make_bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer
        before, after = self._forget_block, self._gate_count - self._forget_block - 1

        def forget_bias_initializer(shape, dtype=None):
            blocks = [base((before * units,), dtype=dtype)] if before else []
            blocks.append(ops.ones((units,), dtype=dtype))
            blocks += [base((after * units,), dtype=dtype)] if after else []
            return ops.concatenate(blocks)

        return forget_bias_initializer

    def step(self, inputs, states, recurrent_mask):
        h_tm1, c_tm1 = states
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        c, o = self._carry_and_output(z, c_tm1)
        h = o * self.activation(c)
        return h, [h, c]

    def _carry_and_output(self, z, c_tm1):
        """The new cell state and the output gate from the gates' pre-activations `z`."""
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c_tm1 + i * self.activation(z_c)
        return c, self.recurrent_activation(z_o)

    def get_config(self):
        config = {
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRUCell(_RecurrentCell):
    """Cell of a gated recurrent unit network.

    With gates in the order z, r, h (as Keras):

        z = recurrent_activation(x W_z + h U_z + b_z)
        r = recurrent_activation(x W_r + h U_r + b_r)
        reset_after=True:  n = activation(x W_h + b_h + r * (h U_h + b'_h))
        reset_after=False: n = activation(x W_h + (r * h) U_h + b_h)
        h_t = z * h_{t-1} + (1 - z) * n

    With `reset_after=True` (the default, and cuDNN's form) the bias has shape
    `(2, 3 * units)`: row 0 for the input product, row 1 for the recurrent
    product. With `reset_after=False` it has shape `(3 * units,)`.

    Reference: Cho et al., "Learning phrase representations using RNN
    encoder-decoder for statistical machine translation", EMNLP 2014.

    Args:
        units: Positive integer, dimensionality of the state and output.
        activation: Activation of the candidate state. Default: `"tanh"`.
        recurrent_activation: Activation of the gates. Default: `"sigmoid"`.
        use_bias, kernel_initializer, recurrent_initializer,
        bias_initializer, regularizers and constraints: As in `SimpleRNNCell`.
        reset_after: Apply the reset gate after the recurrent product
            (`True`, default) or before it (`False`).
        dropout, recurrent_dropout, seed: As in `SimpleRNNCell`; the
            recurrent mask applies to the state inside the recurrent
            products, not to the carried state `h_{t-1}` in the final mix.

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List holding the previous state, shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.GRUCell(4, reset_after=False))
    >>> tuple(rnn(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    >>> [tuple(w.shape) for w in rnn.weights]
    [(3, 12), (4, 12), (12,)]

    In `keras.layers.Bidirectional`, and stacked in one `keras.layers.RNN`:

    >>> both_ways = keras.layers.Bidirectional(keras.layers.RNN(layers.GRUCell(4)))
    >>> tuple(both_ways(np.zeros((2, 5, 3), "float32")).shape)
    (2, 8)
    >>> stack = keras.layers.RNN([layers.GRUCell(4), layers.LSTMCell(6)])
    >>> tuple(stack(np.zeros((2, 5, 3), "float32")).shape)
    (2, 6)
    """

    _gate_count = 3

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        reset_after=True,
        **kwargs,
    ):
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.recurrent_activation = resolve("recurrent_activation", activations.get, recurrent_activation)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        if self.reset_after:
            return (2, 3 * self.units)
        return (3 * self.units,)

    def _layout_hint(self):
        if not self.use_bias:
            return ""
        if self.reset_after:
            return (
                "; with reset_after=True the GRU bias has shape (2, 3 * units): "
                "input bias and recurrent bias. Weights from a GRU with "
                "reset_after=False need a cell built with reset_after=False"
            )
        return (
            "; with reset_after=False the GRU bias has shape (3 * units,). "
            "Weights from a GRU with reset_after=True need a cell built with "
            "reset_after=True"
        )

    def step(self, inputs, states, recurrent_mask):
        h_tm1 = states[0]
        h_dropped = h_tm1 * recurrent_mask if recurrent_mask is not None else h_tm1
        units = self.units
        x = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            x = x + (self.bias[0] if self.reset_after else self.bias)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        if self.reset_after:
            inner = ops.matmul(h_dropped, self.recurrent_kernel)
            if self.use_bias:
                inner = inner + self.bias[1]
            inner_z, inner_r, inner_h = ops.split(inner, 3, axis=-1)
            z = self.recurrent_activation(x_z + inner_z)
            r = self.recurrent_activation(x_r + inner_r)
            candidate = self.activation(x_h + r * inner_h)
        else:
            inner = ops.matmul(h_dropped, self.recurrent_kernel[:, : 2 * units])
            inner_z, inner_r = ops.split(inner, 2, axis=-1)
            z = self.recurrent_activation(x_z + inner_z)
            r = self.recurrent_activation(x_r + inner_r)
            candidate = self.activation(x_h + ops.matmul(r * h_dropped, self.recurrent_kernel[:, 2 * units :]))
        h = z * h_tm1 + (1.0 - z) * candidate
        return h, [h]

    def get_config(self):
        config = {
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
        }
        return {**super().get_config(), **config}
