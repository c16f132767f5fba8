"""The step arithmetic of the layer-normalised cells (`layers.norm_cells`).

`LayerNormSimpleRNNMath`, `LayerNormLSTMMath`, `LayerNormGRUMath`
(`reset_after=True`) and `LayerNormGRUResetBeforeMath`. Every
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

from layers.fused.gradients import RecurrentGradients, flat_matmul_t
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


def _norm_weights(norm):
    return weight(norm.gamma), weight(norm.beta)


class _NormMath(RecurrenceMath):
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

    def _records(self, parts):
        return [parts[name] for name in self.RECORDS]

    def _named(self, records_t):
        return dict(zip(self.RECORDS, records_t))

    def _extra(self, gradients):
        """The `extra_weights`' gradients, in their order, from `{name: gradient}`."""
        return tuple(gradients[name] for name in self.WEIGHTS if getattr(self, name) is not None)


class LayerNormSimpleRNNMath(_NormMath):
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


class LayerNormLSTMMath(_NormMath):
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
        "state_normalized",
        "state_deviation",
        "recurrent_normalized",
        "recurrent_deviation",
        "kernel_normalized",
        "kernel_deviation",
    )
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
        kernel_gamma, kernel_beta = _norm_weights(cell.kernel_norm)
        recurrent_gamma, recurrent_beta = _norm_weights(cell.recurrent_norm)
        state_gamma, state_beta = _norm_weights(cell.state_norm)
        math = cls(
            *cell_arguments(cell, None, recurrent_mask),
            kernel_gamma=kernel_gamma,
            kernel_beta=kernel_beta,
            bias=weight(cell.bias) if cell.use_bias else None,
            recurrent_gamma=recurrent_gamma,
            recurrent_beta=recurrent_beta,
            state_gamma=state_gamma,
            state_beta=state_beta,
            epsilon=cell.norm_epsilon,
            carry_normalized_state=cell.carry_normalized_state,
        )
        return Bound(math, inputs, weight(cell.kernel), None)

    def _forward(self, x_t, states):
        h_tm1, c_tm1 = states
        y_k, kernel_normalized, kernel_deviation = normalize(
            self._projected(x_t), self.kernel_gamma, self.kernel_beta, self.epsilon
        )
        v = self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
        y_r, recurrent_normalized, recurrent_deviation = normalize(
            v, self.recurrent_gamma, self.recurrent_beta, self.epsilon
        )
        z = y_k + y_r
        if self.bias is not None:
            z = z + self.bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        gate = self.recurrent_activation.forward
        i, f, g, o = gate(z_i), gate(z_f), self.activation.forward(z_c), gate(z_o)
        c_raw = f * c_tm1 + i * g
        state, state_normalized, state_deviation = normalize(c_raw, self.state_gamma, self.state_beta, self.epsilon)
        tanh_state = self.activation.forward(state)
        return dict(
            h=o * tanh_state,
            carried=state if self.carry_normalized_state else c_raw,
            c_tm1=c_tm1,
            i=i,
            f=f,
            g=g,
            o=o,
            tanh_state=tanh_state,
            state_normalized=state_normalized,
            state_deviation=state_deviation,
            recurrent_normalized=recurrent_normalized,
            recurrent_deviation=recurrent_deviation,
            kernel_normalized=kernel_normalized,
            kernel_deviation=kernel_deviation,
        )

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


class _LayerNormGRUBase(_NormMath):
    """What both layer-normalised GRUs share: their weights, how a call binds them, the gate records.

    `[a_z, a_r, a_h] = LN_kernel(x W) + b`; `recurrent_bias` is `b'` (`reset_after` only).
    """

    VARIANT = (
        "kernel_gamma",
        "kernel_beta",
        "input_bias",
        "recurrent_gamma",
        "recurrent_beta",
        "candidate_gamma",
        "candidate_beta",
        "epsilon",
    )
    WEIGHTS = VARIANT[:7]

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        input_bias = recurrent_bias = None
        if cell.use_bias:
            bias = weight(cell.bias)
            input_bias, recurrent_bias = (bias[0], bias[1]) if cell.reset_after else (bias, None)
        kernel_gamma, kernel_beta = _norm_weights(cell.kernel_norm)
        recurrent_gamma, recurrent_beta = _norm_weights(cell.recurrent_norm)
        candidate_gamma, candidate_beta = _norm_weights(cell.candidate_norm)
        math = cls(
            *cell_arguments(cell, recurrent_bias, recurrent_mask),
            kernel_gamma=kernel_gamma,
            kernel_beta=kernel_beta,
            input_bias=input_bias,
            recurrent_gamma=recurrent_gamma,
            recurrent_beta=recurrent_beta,
            candidate_gamma=candidate_gamma,
            candidate_beta=candidate_beta,
            epsilon=cell.norm_epsilon,
        )
        return Bound(math, inputs, weight(cell.kernel), None)

    def _inputs(self, x_t):
        """`(a_zr, a_h, kernel_normalized, kernel_deviation)` of a step."""
        a, kernel_normalized, kernel_deviation = normalize(
            self._projected(x_t), self.kernel_gamma, self.kernel_beta, self.epsilon
        )
        if self.input_bias is not None:
            a = a + self.input_bias
        a_zr, a_h = tf.split(a, [2 * self.units, self.units], axis=-1)
        return a_zr, a_h, kernel_normalized, kernel_deviation

    def _gate_records(self, h_tm1, candidate, zr):
        """The records of the update gate, the candidate and the reset gate's derivative."""
        z, r = tf.split(zr, 2, axis=-1)
        d_zr = self.recurrent_activation.derivative(zr)
        d_z, d_r = (None, None) if d_zr is None else tf.split(d_zr, 2, axis=-1)
        return dict(
            z=z,
            r=r,
            d_r=d_r,
            to_z=times(h_tm1 - candidate, d_z),
            to_candidate=times(1.0 - z, self.activation.derivative(candidate)),
        )

    def _projected_and_terms(self, records, d_gates, d_candidate, d_inner):
        """The projected inputs' gradient, and the terms whose sums are the gains' and shifts' gradients."""
        d_a = tf.concat([d_gates, d_candidate], axis=-1)
        d_projected = normalize_backward(
            d_a, self.kernel_gamma, records["kernel_normalized"], records["kernel_deviation"]
        )
        terms = [
            d_a * records["kernel_normalized"],
            d_a,
            d_gates * records["gates_normalized"],
            d_gates,
            d_inner * records["candidate_normalized"],
            d_inner,
        ]
        return d_projected, tf.concat(terms, axis=-1)

    def sum_widths(self):
        return [12 * self.units]

    def _sum_gradients(self, sums):
        """`{weight name: gradient}` from the summed terms (see `_projected_and_terms`)."""
        units = self.units
        names = (
            "kernel_gamma",
            "kernel_beta",
            "recurrent_gamma",
            "recurrent_beta",
            "candidate_gamma",
            "candidate_beta",
        )
        gradients = dict(zip(names, tf.split(sums, [3 * units, 3 * units, 2 * units, 2 * units, units, units])))
        gradients["input_bias"] = gradients["kernel_beta"]
        return gradients


class LayerNormGRUMath(_LayerNormGRUBase):
    """`reset_after=True`: `n = act(a_h + r (LN_candidate(s U_h) + b'_h))`, gates `LN_recurrent(s U_zr) + b'_zr`."""

    RECORDS = (
        "to_z",
        "to_candidate",
        "to_r",
        "r",
        "z",
        "gates_normalized",
        "gates_deviation",
        "candidate_normalized",
        "candidate_deviation",
        "kernel_normalized",
        "kernel_deviation",
    )

    def _forward(self, x_t, h_tm1):
        units = self.units
        a_zr, a_h, kernel_normalized, kernel_deviation = self._inputs(x_t)
        v = self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
        v_zr, v_h = tf.split(v, [2 * units, units], axis=-1)
        gates, gates_normalized, gates_deviation = normalize(
            v_zr, self.recurrent_gamma, self.recurrent_beta, self.epsilon
        )
        inner, candidate_normalized, candidate_deviation = normalize(
            v_h, self.candidate_gamma, self.candidate_beta, self.epsilon
        )
        if self.recurrent_bias is not None:
            gates = gates + self.recurrent_bias[: 2 * units]
            inner = inner + self.recurrent_bias[2 * units :]
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        candidate = self.activation.forward(a_h + r * inner)
        return dict(
            h=z * h_tm1 + (1.0 - z) * candidate,
            zr=zr,
            candidate=candidate,
            inner=inner,
            gates_normalized=gates_normalized,
            gates_deviation=gates_deviation,
            candidate_normalized=candidate_normalized,
            candidate_deviation=candidate_deviation,
            kernel_normalized=kernel_normalized,
            kernel_deviation=kernel_deviation,
        )

    def step(self, x_t, states):
        return [self._forward(x_t, states[0])["h"]]

    def step_saving(self, x_t, states):
        parts = self._forward(x_t, states[0])
        parts.update(self._gate_records(states[0], parts["candidate"], parts["zr"]))
        parts["to_r"] = times(parts["inner"], parts["d_r"])
        return [parts["h"]], self._records(parts)

    def backward_step(self, state_grads, records_t):
        dh = state_grads[0]
        r = self._named(records_t)
        d_candidate = dh * r["to_candidate"]
        d_inner = d_candidate * r["r"]
        d_gates = tf.concat([dh * r["to_z"], d_candidate * r["to_r"]], axis=-1)
        dv = tf.concat(
            [
                normalize_backward(d_gates, self.recurrent_gamma, r["gates_normalized"], r["gates_deviation"]),
                normalize_backward(d_inner, self.candidate_gamma, r["candidate_normalized"], r["candidate_deviation"]),
            ],
            axis=-1,
        )
        dh_tm1 = self.dropped(self.product(dv, self.recurrent_kernel_t, self.recurrent_kernel)) + dh * r["z"]
        d_projected, terms = self._projected_and_terms(r, d_gates, d_candidate, d_inner)
        return [dh_tm1], [d_projected, dv, terms]

    def write_widths(self):
        return [3 * self.units, 3 * self.units]

    def finish(self, writes_seq, previous):
        d_projected, dv, sums = writes_seq
        gradients = self._sum_gradients(sums)
        d_recurrent_bias = None
        if self.recurrent_bias is not None:
            # `b'` is added after each recurrent normalisation, as its shift is: the same gradient.
            d_recurrent_bias = tf.concat([gradients["recurrent_beta"], gradients["candidate_beta"]], axis=0)
        return RecurrentGradients(d_projected, previous.matmul_t(dv), d_recurrent_bias, self._extra(gradients))


class LayerNormGRUResetBeforeMath(_LayerNormGRUBase):
    """`reset_after=False`: `n = act(a_h + LN_candidate((r s) U_h))`, gates `LN_recurrent(s U_zr)`."""

    RECORDS = (
        "to_z",
        "to_candidate",
        "s_to_r",
        "r",
        "z",
        "reset_state",
        "gates_normalized",
        "gates_deviation",
        "candidate_normalized",
        "candidate_deviation",
        "kernel_normalized",
        "kernel_deviation",
    )

    def __init__(self, units, recurrent_kernel, *args, **kwargs):
        super().__init__(units, recurrent_kernel, *args, **kwargs)
        self.kernel_zr = recurrent_kernel[:, : 2 * units]
        self.kernel_h = recurrent_kernel[:, 2 * units :]
        self.kernel_zr_t = tf.transpose(self.kernel_zr)
        self.kernel_h_t = tf.transpose(self.kernel_h)

    def _forward(self, x_t, h_tm1):
        a_zr, a_h, kernel_normalized, kernel_deviation = self._inputs(x_t)
        s = self.dropped(h_tm1)
        gates, gates_normalized, gates_deviation = normalize(
            self.product(s, self.kernel_zr, self.kernel_zr_t), self.recurrent_gamma, self.recurrent_beta, self.epsilon
        )
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        reset_state = r * s
        inner, candidate_normalized, candidate_deviation = normalize(
            self.product(reset_state, self.kernel_h, self.kernel_h_t),
            self.candidate_gamma,
            self.candidate_beta,
            self.epsilon,
        )
        candidate = self.activation.forward(a_h + inner)
        return dict(
            h=z * h_tm1 + (1.0 - z) * candidate,
            s=s,
            zr=zr,
            candidate=candidate,
            reset_state=reset_state,
            gates_normalized=gates_normalized,
            gates_deviation=gates_deviation,
            candidate_normalized=candidate_normalized,
            candidate_deviation=candidate_deviation,
            kernel_normalized=kernel_normalized,
            kernel_deviation=kernel_deviation,
        )

    def step(self, x_t, states):
        return [self._forward(x_t, states[0])["h"]]

    def step_saving(self, x_t, states):
        parts = self._forward(x_t, states[0])
        parts.update(self._gate_records(states[0], parts["candidate"], parts["zr"]))
        parts["s_to_r"] = times(parts["s"], parts["d_r"])
        return [parts["h"]], self._records(parts)

    def backward_step(self, state_grads, records_t):
        dh = state_grads[0]
        r = self._named(records_t)
        d_candidate = dh * r["to_candidate"]
        dv_h = normalize_backward(
            d_candidate, self.candidate_gamma, r["candidate_normalized"], r["candidate_deviation"]
        )
        d_reset_state = self.product(dv_h, self.kernel_h_t, self.kernel_h)
        d_gates = tf.concat([dh * r["to_z"], d_reset_state * r["s_to_r"]], axis=-1)
        dv_zr = normalize_backward(d_gates, self.recurrent_gamma, r["gates_normalized"], r["gates_deviation"])
        ds = self.product(dv_zr, self.kernel_zr_t, self.kernel_zr) + d_reset_state * r["r"]
        dh_tm1 = self.dropped(ds) + dh * r["z"]
        d_projected, terms = self._projected_and_terms(r, d_gates, d_candidate, d_candidate)
        # The reset-gated state passes through to the candidate kernel's gradient.
        return [dh_tm1], [d_projected, dv_zr, dv_h, r["reset_state"], terms]

    def write_widths(self):
        units = self.units
        return [3 * units, 2 * units, units, units]

    def finish(self, writes_seq, previous):
        d_projected, dv_zr, dv_h, reset_state, sums = writes_seq
        d_kernel = tf.concat([previous.matmul_t(dv_zr), flat_matmul_t(reset_state, dv_h)], axis=-1)
        return RecurrentGradients(d_projected, d_kernel, None, self._extra(self._sum_gradients(sums)))
