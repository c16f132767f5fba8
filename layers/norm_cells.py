"""Layer-normalised recurrent cells: `LayerNormSimpleRNNCell`, `LayerNormLSTMCell`, `LayerNormGRUCell`.

The first two compute what TensorFlow Addons' cells of the same names compute
and name their weights as Addons does, so weights saved from an Addons model
load unchanged (see `layers.migration`); Addons never had a GRU, and
`LayerNormGRUCell` defines one in the same style. Like the plain cells they
use `keras.ops` only and work in `keras.layers.RNN`, `Bidirectional` and
stacked cells on every backend, with the same dropout masks.

`LN(v)` below is layer normalisation over the last axis of `v`:
`(v - mean(v)) / sqrt(var(v) + epsilon) * gamma + beta` (Ba, Kiros & Hinton,
"Layer normalization", 2016).
"""

import keras
from keras import constraints, initializers, ops, regularizers

from layers._layer_norm import NormArguments, layer_normalize, positive_epsilon
from layers._validation import resolve
from layers.cells import PACKAGE, GRUCell, LSTMCell, SimpleRNNCell


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormSimpleRNNCell(SimpleRNNCell):
    """Cell of an Elman network with layer normalisation of its pre-activation.

    As TensorFlow Addons' `LayerNormSimpleRNNCell`:

        h_t = activation(LN_scale(x_t W + h_{t-1} U) + b)

    where `LN_scale` is layer normalisation with a gain `gamma` and no shift
    (the bias `b` plays that part). Weights, in order: `kernel`,
    `recurrent_kernel`, `bias` (if `use_bias`), `gamma` (shape `(units,)`).

    Reference: Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450, 2016.

    Args:
        units, activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, regularizers, constraints,
        dropout, recurrent_dropout, seed: As in `SimpleRNNCell`.
        layernorm_epsilon: Positive float added to the variance. Default:
            `1e-5` (Addons' default).
        gamma_initializer, gamma_regularizer, gamma_constraint: Of the gain.
            Default: `"ones"`, `None`, `None`.

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List holding the previous state, shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.LayerNormSimpleRNNCell(4))
    >>> tuple(rnn(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    >>> [w.path.split("/", 2)[2] for w in rnn.weights]
    ['kernel', 'recurrent_kernel', 'bias', 'gamma']
    """

    def __init__(
        self,
        units,
        *,
        layernorm_epsilon=1e-5,
        gamma_initializer="ones",
        gamma_regularizer=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.layernorm_epsilon = positive_epsilon("layernorm_epsilon", layernorm_epsilon)
        self.gamma_initializer = resolve("gamma_initializer", initializers.get, gamma_initializer)
        self.gamma_regularizer = resolve("gamma_regularizer", regularizers.get, gamma_regularizer)
        self.gamma_constraint = resolve("gamma_constraint", constraints.get, gamma_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        self.gamma = self.add_weight(
            shape=(self.units,),
            name="gamma",
            initializer=self.gamma_initializer,
            regularizer=self.gamma_regularizer,
            constraint=self.gamma_constraint,
        )

    def step(self, inputs, states, recurrent_mask):
        h_tm1 = states[0]
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        net = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, self.recurrent_kernel)
        net = layer_normalize(net, self.gamma, None, self.layernorm_epsilon)
        if self.use_bias:
            net = net + self.bias
        h = self.activation(net) if self.activation is not None else net
        return h, [h]

    def get_config(self):
        config = {
            "layernorm_epsilon": self.layernorm_epsilon,
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormLSTMCell(NormArguments, LSTMCell):
    """Cell of an LSTM with layer normalisation, as TensorFlow Addons' `LayerNormLSTMCell`.

    With gates in the order i, f, c, o (as `LSTMCell`), each `LN` with its
    own gain and shift:

        z = LN_kernel(x W) + LN_recurrent(h_{t-1} U) + b      (4 * units wide)
        i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
        c' = f * c_{t-1} + i * activation(z_c)
        c_t = LN_state(c')
        h_t = o * activation(c_t)

    The two projections are normalised whole (all four gates together),
    separately, and the bias is added after. With `carry_normalized_state=True`
    (the default, Addons' choice) the normalised `c_t` is the cell state
    carried to the next step. Ba et al. (2016, eq. 20) instead normalise the
    cell state only on its way out and carry the raw one: with
    `carry_normalized_state=False`, `h_t = o * activation(LN_state(c'))` and
    `c_t = c'`.

    Weights, in Addons' order and names: `kernel`, `recurrent_kernel`, `bias`
    (if `use_bias`), `kernel_norm/gamma`, `kernel_norm/beta` (`4 * units`),
    `recurrent_norm/gamma`, `recurrent_norm/beta` (`4 * units`),
    `state_norm/gamma`, `state_norm/beta` (`units`).

    Reference: Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450, 2016.

    Args:
        units, activation, recurrent_activation, use_bias, initializers,
        unit_forget_bias, regularizers, constraints, dropout,
        recurrent_dropout, seed: As in `LSTMCell`.
        norm_gamma_initializer: Initializer of the three gains. Default: `"ones"`.
        norm_beta_initializer: Initializer of the three shifts. Default: `"zeros"`.
        norm_epsilon: Positive float added to the variances. Default: `1e-3`
            (Addons' default).
        carry_normalized_state: Carry the normalised cell state (`True`,
            Addons) or the raw one (`False`, Ba et al.). Default: `True`.

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List `[h, c]`, each of shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h, c])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.LayerNormLSTMCell(4), return_state=True)
    >>> output, h, c = rnn(np.ones((2, 5, 3), "float32"))
    >>> [w.path.split("/", 2)[2] for w in rnn.weights][2:5]
    ['bias', 'kernel_norm/gamma', 'kernel_norm/beta']

    The carried state is normalised: each row has mean 0 (with `beta` zero).

    >>> bool(np.allclose(keras.ops.convert_to_numpy(c).mean(axis=-1), 0.0, atol=1e-5))
    True
    """

    def __init__(
        self,
        units,
        *,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        norm_epsilon=1e-3,
        carry_normalized_state=True,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self._set_norm_arguments(norm_gamma_initializer, norm_beta_initializer, norm_epsilon)
        self.carry_normalized_state = bool(carry_normalized_state)
        self.kernel_norm = self.make_norm("kernel_norm")
        self.recurrent_norm = self.make_norm("recurrent_norm")
        self.state_norm = self.make_norm("state_norm")

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_norm.build((None, 4 * self.units))
        self.recurrent_norm.build((None, 4 * self.units))
        self.state_norm.build((None, self.units))

    def step(self, inputs, states, recurrent_mask):
        h_tm1, c_tm1 = states
        if recurrent_mask is not None:
            h_tm1 = h_tm1 * recurrent_mask
        z = self.kernel_norm.normalize(ops.matmul(inputs, self.kernel))
        z = z + self.recurrent_norm.normalize(ops.matmul(h_tm1, self.recurrent_kernel))
        if self.use_bias:
            z = z + self.bias
        c, o = self._carry_and_output(z, c_tm1)
        normalized = self.state_norm.normalize(c)
        h = o * self.activation(normalized)
        return h, [h, normalized if self.carry_normalized_state else c]

    def get_config(self):
        config = {**self.norm_config(), "carry_normalized_state": self.carry_normalized_state}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormGRUCell(NormArguments, GRUCell):
    """Cell of a GRU with layer normalisation (no Addons counterpart; defined here).

    In the style of `LayerNormLSTMCell`: the input projection is normalised
    whole, the recurrent projection of the two gates together, the
    candidate's recurrent term alone, and biases are added after. With gates
    in the order z, r, h (as `GRUCell`) and `s = h_{t-1}`:

        [a_z, a_r, a_h] = LN_kernel(x W)                       (3 * units wide)
        [g_z, g_r]      = LN_recurrent(s [U_z, U_r])            (2 * units wide)
        z = recurrent_activation(a_z + b_z + g_z + b'_z)
        r = recurrent_activation(a_r + b_r + g_r + b'_r)
        reset_after=True:  n = activation(a_h + b_h + r * (LN_candidate(s U_h) + b'_h))
        reset_after=False: n = activation(a_h + b_h + LN_candidate((r * s) U_h))
        h_t = z * h_{t-1} + (1 - z) * n

    The bias is that of `GRUCell`: shape `(2, 3 * units)` with
    `reset_after=True` (row 0: `b`, row 1: `b'`), `(3 * units,)` without
    (`b` only). The recurrent dropout mask applies to `s` inside the products,
    not to `h_{t-1}` in the last line.

    Weights, in order: `kernel`, `recurrent_kernel`, `bias` (if `use_bias`),
    `kernel_norm/gamma`, `kernel_norm/beta` (`3 * units`),
    `recurrent_norm/gamma`, `recurrent_norm/beta` (`2 * units`),
    `candidate_norm/gamma`, `candidate_norm/beta` (`units`).

    Reference: Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450,
    2016 (whose code normalises a GRU's gate and candidate products
    separately, as here); Cho et al., EMNLP 2014 (the GRU).

    Args:
        units, activation, recurrent_activation, use_bias, initializers,
        regularizers, constraints, reset_after, dropout, recurrent_dropout,
        seed: As in `GRUCell`.
        norm_gamma_initializer, norm_beta_initializer, norm_epsilon: As in
            `LayerNormLSTMCell` (default epsilon `1e-3`).

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List holding the previous state, shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> both_ways = keras.layers.Bidirectional(keras.layers.RNN(layers.LayerNormGRUCell(4, reset_after=False)))
    >>> tuple(both_ways(np.zeros((2, 5, 3), "float32")).shape)
    (2, 8)
    """

    def __init__(
        self, units, *, norm_gamma_initializer="ones", norm_beta_initializer="zeros", norm_epsilon=1e-3, **kwargs
    ):
        super().__init__(units, **kwargs)
        self._set_norm_arguments(norm_gamma_initializer, norm_beta_initializer, norm_epsilon)
        self.kernel_norm = self.make_norm("kernel_norm")
        self.recurrent_norm = self.make_norm("recurrent_norm")
        self.candidate_norm = self.make_norm("candidate_norm")

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_norm.build((None, 3 * self.units))
        self.recurrent_norm.build((None, 2 * self.units))
        self.candidate_norm.build((None, self.units))

    def step(self, inputs, states, recurrent_mask):
        h_tm1 = states[0]
        s = h_tm1 * recurrent_mask if recurrent_mask is not None else h_tm1
        units = self.units
        recurrent_bias = self.bias[1] if self.use_bias and self.reset_after else None
        x = self.kernel_norm.normalize(ops.matmul(inputs, self.kernel))
        if self.use_bias:
            x = x + (self.bias[0] if self.reset_after else self.bias)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        gates = self.recurrent_norm.normalize(ops.matmul(s, self.recurrent_kernel[:, : 2 * units]))
        if recurrent_bias is not None:
            gates = gates + recurrent_bias[: 2 * units]
        g_z, g_r = ops.split(gates, 2, axis=-1)
        z = self.recurrent_activation(x_z + g_z)
        r = self.recurrent_activation(x_r + g_r)
        candidate_kernel = self.recurrent_kernel[:, 2 * units :]
        if self.reset_after:
            inner = self.candidate_norm.normalize(ops.matmul(s, candidate_kernel))
            if recurrent_bias is not None:
                inner = inner + recurrent_bias[2 * units :]
            n = self.activation(x_h + r * inner)
        else:
            n = self.activation(x_h + self.candidate_norm.normalize(ops.matmul(r * s, candidate_kernel)))
        h = z * h_tm1 + (1.0 - z) * n
        return h, [h]

    def get_config(self):
        return {**super().get_config(), **self.norm_config()}
