"""The step arithmetic of the layer-normalised cells (`layers.norm_cells`).

`LayerNormSimpleRNNMath`, `LayerNormLSTMMath`, `LayerNormGRUMath`
(`reset_after=True`) and `LayerNormGRUResetBeforeMath` (those two in
`layers.fused.norm_gru_maths`). Every
normalisation runs inside the step, on the step's products (normalising the
whole sequence's input projection at once before the loop measured slower:
it reads and writes the whole projected sequence several times more, where
a step's slice stays in the cache). Each saves its normalised values and
inverse standard deviation per step, so the backward loop differentiates it
with a few elementwise operations (`normalize_backward`); the gradients of
the gains, shifts and biases added after a normalisation need only sums
over the batch and the steps, which the backward loop accumulates
(`sum_widths`).

The input and recurrent products are normalised apart (except the simple
RNN's, whose sum is normalised), so compiled loops, whose steps receive the
raw inputs (`joined`), form them as two products.
"""

import tensorflow as tf

from layers.fused.gradients import RecurrentGradients
from layers.fused.maths import Bound, RecurrenceMath, cell_arguments, times, weight


def normalize(v, gamma, beta, epsilon):
    """`(y, normalized, inverse_deviation)`: layer normalisation of `v` over its last axis.

    `y = normalized * gamma + beta` with `normalized = (v - mean) *
    inverse_deviation`, the operations of `layers._layer_norm.layer_normalize`.
    """
    centred = v - tf.reduce_mean(v, axis=-1, keepdims=True)
    inverse_deviation = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True) + epsilon)
    normalized = centred * inverse_deviation
    y = normalized * gamma
    return (y if beta is None else y + beta), normalized, inverse_deviation


def normalize_backward(dy, gamma, normalized, inverse_deviation):
    """The gradient of `normalize`'s input `v`, given that of its output `y`."""
    dn = dy * gamma
    mean_dn = tf.reduce_mean(dn, axis=-1, keepdims=True)
    mean_dn_n = tf.reduce_mean(dn * normalized, axis=-1, keepdims=True)
    return inverse_deviation * (dn - mean_dn - normalized * mean_dn_n)


def norm_arguments(cell, **norms):
    """The gains and shifts of a cell's normalisations as constructor arguments: `{key}_gamma`, `{key}_beta`.

    `norms` maps each argument prefix to the name of the cell's `NormWeights`.
    """
    arguments = {}
    for key, name in norms.items():
        norm = getattr(cell, name)
        arguments.update({f"{key}_gamma": weight(norm.gamma), f"{key}_beta": weight(norm.beta)})
    return arguments


def normalization_records(*names):
    """The record names of normalisations `names`: each one's normalised values and inverse deviation."""
    return tuple(f"{name}_{part}" for name in names for part in ("normalized", "deviation"))


class NormMath(RecurrenceMath):
    """What the layer-normalised maths share: named records and weights, rows only.

    Subclasses list `RECORDS` (their records' names, in order) and the
    constructor arguments `VARIANT` (weights or settings besides
    `RecurrenceMath`'s, each stored under its name); `WEIGHTS` names those
    that are weights, in the order of `extra_weights` (one that is `None`,
    a bias without `use_bias`, is left out).
    """

    columns_supported = False
    RECORDS = ()
    VARIANT = ()
    WEIGHTS = ()

    def __init__(
        self, units, recurrent_kernel, recurrent_bias, recurrent_mask, activation, recurrent_activation, **variant
    ):
        super().__init__(units, recurrent_kernel, recurrent_bias, recurrent_mask, activation, recurrent_activation)
        for name in self.VARIANT:
            setattr(self, name, variant.get(name))
        self.extra_weights = tuple(getattr(self, name) for name in self.WEIGHTS if getattr(self, name) is not None)
        self.record_count = len(self.RECORDS)

    def variant_arguments(self, transform):
        arguments = {name: getattr(self, name) for name in self.VARIANT}
        for name in self.WEIGHTS:
            arguments[name] = transform(arguments[name])
        return arguments

    def join(self, kernel, input_bias):
        # Joined steps project their raw inputs themselves, apart from the
        # recurrent product (the two are normalised apart).
        self.input_kernel = kernel

    def _projected(self, x_t):
        return tf.matmul(x_t, self.input_kernel) if self.joined else x_t

    def _normalize_into(self, parts, name, v, gamma, beta):
        """`normalize(v, ...)`'s output; its factors go into `parts` as `{name}_normalized` and `{name}_deviation`."""
        y, parts[f"{name}_normalized"], parts[f"{name}_deviation"] = normalize(v, gamma, beta, self.epsilon)
        return y

    def _records(self, parts):
        return [parts[name] for name in self.RECORDS]

    def _named(self, records_t):
        return dict(zip(self.RECORDS, records_t))

    def _extra(self, gradients):
        """The `extra_weights`' gradients, in their order, from `{name: gradient}`."""
        return tuple(gradients[name] for name in self.WEIGHTS if getattr(self, name) is not None)


class LayerNormSimpleRNNMath(NormMath):
    """`h = activation(LN_scale(x W + h U) + b)`: the bias comes after the normalisation (an extra weight).

    The sum is normalised, so compiled loops join the two products as the
    plain cells' do.
    """

    RECORDS = ("d_activation", "normalized", "inverse_deviation")
    VARIANT = ("gamma", "bias", "epsilon")
    WEIGHTS = ("gamma", "bias")

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        bias = weight(cell.bias) if cell.use_bias else None
        math = cls(
            *cell_arguments(cell, None, recurrent_mask),
            gamma=weight(cell.gamma),
            bias=bias,
            epsilon=cell.layernorm_epsilon,
        )
        return Bound(math, inputs, weight(cell.kernel), None)

    join = RecurrenceMath.join

    def _forward(self, x_t, h_tm1):
        v = self.preactivation(x_t, self.dropped(h_tm1))
        net, normalized, inverse_deviation = normalize(v, self.gamma, None, self.epsilon)
        if self.bias is not None:
            net = net + self.bias
        return self.activation.forward(net), normalized, inverse_deviation

    def step(self, x_t, states):
        return [self._forward(x_t, states[0])[0]]

    def step_saving(self, x_t, states):
        h, normalized, inverse_deviation = self._forward(x_t, states[0])
        derivative = self.activation.derivative(h)
        d_activation = tf.ones_like(h) if derivative is None else derivative
        return [h], [d_activation, normalized, inverse_deviation]

    def backward_step(self, state_grads, records_t):
        d_activation, normalized, inverse_deviation = records_t
        d_net = state_grads[0] * d_activation
        dv = normalize_backward(d_net, self.gamma, normalized, inverse_deviation)
        dh_tm1 = self.dropped(self.product(dv, self.recurrent_kernel_t, self.recurrent_kernel))
        return [dh_tm1], [dv, tf.concat([d_net * normalized, d_net], axis=-1)]

    def sum_widths(self):
        return [2 * self.units]

    def finish(self, writes_seq, previous):
        dv, sums = writes_seq
        d_gamma, d_bias = tf.split(sums, 2)
        return RecurrentGradients(dv, previous.matmul_t(dv), None, self._extra({"gamma": d_gamma, "bias": d_bias}))


class LayerNormLSTMMath(NormMath):
    """`z = LN_kernel(x W) + LN_recurrent(h U) + b`; `c' = f c + i g`; `h = o act(LN_state(c'))`.

    The state carried is `LN_state(c')` or, without `carry_normalized_state`, `c'`.
    """

    state_count = 2
    RECORDS = (
        "to_i",
        "to_f",
        "to_g",
        "to_o",
        "h_to_state",
        "forget",
    ) + normalization_records("state", "recurrent", "kernel")
    VARIANT = (
        "kernel_gamma",
        "kernel_beta",
        "bias",
        "recurrent_gamma",
        "recurrent_beta",
        "state_gamma",
        "state_beta",
        "epsilon",
        "carry_normalized_state",
    )
    WEIGHTS = VARIANT[:7]

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        math = cls(
            *cell_arguments(cell, None, recurrent_mask),
            **norm_arguments(cell, kernel="kernel_norm", recurrent="recurrent_norm", state="state_norm"),
            bias=weight(cell.bias) if cell.use_bias else None,
            epsilon=cell.norm_epsilon,
            carry_normalized_state=cell.carry_normalized_state,
        )
        return Bound(math, inputs, weight(cell.kernel), None)

    def _forward(self, x_t, states):
        h_tm1, c_tm1 = states
        parts = {"c_tm1": c_tm1}
        z = self._normalize_into(parts, "kernel", self._projected(x_t), self.kernel_gamma, self.kernel_beta)
        v = self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
        z = z + self._normalize_into(parts, "recurrent", v, self.recurrent_gamma, self.recurrent_beta)
        if self.bias is not None:
            z = z + self.bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        gate = self.recurrent_activation.forward
        i, f, g, o = gate(z_i), gate(z_f), self.activation.forward(z_c), gate(z_o)
        c_raw = f * c_tm1 + i * g
        state = self._normalize_into(parts, "state", c_raw, self.state_gamma, self.state_beta)
        tanh_state = self.activation.forward(state)
        carried = state if self.carry_normalized_state else c_raw
        parts.update(h=o * tanh_state, carried=carried, i=i, f=f, g=g, o=o, tanh_state=tanh_state)
        return parts

    def step(self, x_t, states):
        parts = self._forward(x_t, states)
        return [parts["h"], parts["carried"]]

    def step_saving(self, x_t, states):
        parts = self._forward(x_t, states)
        gate_derivative, derivative = self.recurrent_activation.derivative, self.activation.derivative
        parts.update(
            to_i=times(parts["g"], gate_derivative(parts["i"])),
            to_f=times(parts["c_tm1"], gate_derivative(parts["f"])),
            to_g=times(parts["i"], derivative(parts["g"])),
            to_o=times(parts["tanh_state"], gate_derivative(parts["o"])),
            h_to_state=times(parts["o"], derivative(parts["tanh_state"])),
            forget=parts["f"],
        )
        return [parts["h"], parts["carried"]], self._records(parts)

    def backward_step(self, state_grads, records_t):
        dh, dc = state_grads
        r = self._named(records_t)
        d_state = dh * r["h_to_state"]
        if self.carry_normalized_state:
            d_state = d_state + dc
        d_raw = normalize_backward(d_state, self.state_gamma, r["state_normalized"], r["state_deviation"])
        if not self.carry_normalized_state:
            d_raw = d_raw + dc
        dz = tf.concat([d_raw * r["to_i"], d_raw * r["to_f"], d_raw * r["to_g"], dh * r["to_o"]], axis=-1)
        d_projected = normalize_backward(dz, self.kernel_gamma, r["kernel_normalized"], r["kernel_deviation"])
        dv = normalize_backward(dz, self.recurrent_gamma, r["recurrent_normalized"], r["recurrent_deviation"])
        dh_tm1 = self.dropped(self.product(dv, self.recurrent_kernel_t, self.recurrent_kernel))
        terms = [
            dz * r["kernel_normalized"],
            dz * r["recurrent_normalized"],
            dz,
            d_state * r["state_normalized"],
            d_state,
        ]
        return [dh_tm1, d_raw * r["forget"]], [d_projected, dv, tf.concat(terms, axis=-1)]

    def write_widths(self):
        return [4 * self.units, 4 * self.units]

    def sum_widths(self):
        return [14 * self.units]

    def finish(self, writes_seq, previous):
        d_projected, dv, sums = writes_seq
        units = self.units
        kernel_gamma, recurrent_gamma, dz, state_gamma, state_beta = tf.split(
            sums, [4 * units, 4 * units, 4 * units, units, units]
        )
        # The bias and both shifts are added to `z` alike: one gradient.
        gradients = dict(
            kernel_gamma=kernel_gamma,
            kernel_beta=dz,
            bias=dz,
            recurrent_gamma=recurrent_gamma,
            recurrent_beta=dz,
            state_gamma=state_gamma,
            state_beta=state_beta,
        )
        return RecurrentGradients(d_projected, previous.matmul_t(dv), None, self._extra(gradients))
