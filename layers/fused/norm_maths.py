"""The step arithmetic of the layer-normalised cells (`layers.norm_cells`).

`LayerNormSimpleRNNMath`, `LayerNormLSTMMath`, `LayerNormGRUMath`
(`reset_after=True`) and `LayerNormGRUResetBeforeMath`. Where a cell
normalises its input projection on its own (the LSTM's and the GRU's
`kernel_norm`), that normalisation does not depend on the state: `for_cell`
applies it to every step at once before the loop, with TensorFlow's own
gradient, and the loops receive the projected inputs (`Bound.kernel` is
`None`). Each normalisation inside the recurrence saves its normalised
values and inverse standard deviation per step, so the backward loop
differentiates it with a few elementwise operations (`normalize_backward`);
the gradients of the gains and shifts are summed over all steps after the
loop (`finish`).
"""

import tensorflow as tf

from layers._layer_norm import layer_normalize
from layers.fused.gradients import RecurrentGradients, flat_matmul_t, sum_over_steps
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


def _project(inputs, kernel):
    """`inputs @ kernel` for `(batch, time, features)` inputs, as one matrix product."""
    shape = tf.shape(inputs)
    flat = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel)
    return tf.reshape(flat, [shape[0], shape[1], kernel.shape[-1]])


def _norm_weights(norm):
    return weight(norm.gamma), weight(norm.beta)


class _NormMath(RecurrenceMath):
    """What the layer-normalised maths share: named records, unjoined products, rows only.

    Subclasses list `RECORDS` (their records' names, in order) and the
    constructor arguments `VARIANT` (weights or settings besides
    `RecurrenceMath`'s), all of them stored under their own names;
    `WEIGHTS` names those that are weights, in the order of `extra_weights`.
    """

    joins = False
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

    def _records(self, parts):
        return [parts[name] for name in self.RECORDS]

    def _named(self, records_t):
        return dict(zip(self.RECORDS, records_t))


class LayerNormSimpleRNNMath(_NormMath):
    """`h = activation(LN_scale(x W + h U) + b)`: the bias comes after the normalisation (an extra weight)."""

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
        return Bound(math, _project(inputs, weight(cell.kernel)), None, None)

    def _forward(self, x_t, h_tm1):
        v = x_t + self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
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

    def write_widths(self):
        return [self.units, 2 * self.units]

    def finish(self, writes_seq, previous):
        dv, terms = writes_seq
        d_gamma, d_bias = tf.split(sum_over_steps(terms), 2)
        extra = (d_gamma,) if self.bias is None else (d_gamma, d_bias)
        return RecurrentGradients(dv, previous.matmul_t(dv), None, extra)


def _normalized_inputs(cell, inputs, bias):
    """`LN_kernel(inputs @ kernel) + bias` for all steps at once (TensorFlow differentiates it)."""
    gamma, beta = _norm_weights(cell.kernel_norm)
    projected = layer_normalize(_project(inputs, weight(cell.kernel)), gamma, beta, cell.norm_epsilon)
    return projected if bias is None else projected + bias


class LayerNormLSTMMath(_NormMath):
    """`z = LN_kernel(x W) + b + LN_recurrent(h U)`; `c' = f c + i g`; `h = o act(LN_state(c'))`.

    The normalised input projection plus the bias arrives projected; the
    state carried is `LN_state(c')` or, without `carry_normalized_state`, `c'`.
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
    )
    VARIANT = (
        "recurrent_gamma",
        "recurrent_beta",
        "state_gamma",
        "state_beta",
        "epsilon",
        "carry_normalized_state",
    )
    WEIGHTS = ("recurrent_gamma", "recurrent_beta", "state_gamma", "state_beta")

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        input_bias, _ = cls.split_bias(cell)
        recurrent_gamma, recurrent_beta = _norm_weights(cell.recurrent_norm)
        state_gamma, state_beta = _norm_weights(cell.state_norm)
        math = cls(
            *cell_arguments(cell, None, recurrent_mask),
            recurrent_gamma=recurrent_gamma,
            recurrent_beta=recurrent_beta,
            state_gamma=state_gamma,
            state_beta=state_beta,
            epsilon=cell.norm_epsilon,
            carry_normalized_state=cell.carry_normalized_state,
        )
        return Bound(math, _normalized_inputs(cell, inputs, input_bias), None, None)

    def _forward(self, x_t, states):
        h_tm1, c_tm1 = states
        v = self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
        y, recurrent_normalized, recurrent_deviation = normalize(
            v, self.recurrent_gamma, self.recurrent_beta, self.epsilon
        )
        z_i, z_f, z_c, z_o = tf.split(x_t + y, 4, axis=-1)
        gate = self.recurrent_activation.forward
        i, f, g, o = gate(z_i), gate(z_f), self.activation.forward(z_c), gate(z_o)
        c_raw = f * c_tm1 + i * g
        state, state_normalized, state_deviation = normalize(c_raw, self.state_gamma, self.state_beta, self.epsilon)
        tanh_state = self.activation.forward(state)
        h = o * tanh_state
        carried = state if self.carry_normalized_state else c_raw
        return dict(
            h=h,
            carried=carried,
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
        dv = normalize_backward(dz, self.recurrent_gamma, r["recurrent_normalized"], r["recurrent_deviation"])
        dh_tm1 = self.dropped(self.product(dv, self.recurrent_kernel_t, self.recurrent_kernel))
        state_terms = tf.concat([d_state * r["state_normalized"], d_state], axis=-1)
        return [dh_tm1, d_raw * r["forget"]], [dz, dv, dz * r["recurrent_normalized"], state_terms]

    def write_widths(self):
        return [4 * self.units, 4 * self.units, 4 * self.units, 2 * self.units]

    def finish(self, writes_seq, previous):
        dz, dv, recurrent_terms, state_terms = writes_seq
        d_state_gamma, d_state_beta = tf.split(sum_over_steps(state_terms), 2)
        extra = (sum_over_steps(recurrent_terms), sum_over_steps(dz), d_state_gamma, d_state_beta)
        return RecurrentGradients(dz, previous.matmul_t(dv), None, extra)


class _LayerNormGRUBase(_NormMath):
    """What both layer-normalised GRUs share: their weights and how a call binds them.

    The normalised input projection plus the input bias arrives projected
    (`[a_z, a_r, a_h]`); `recurrent_bias` is `b'` (`reset_after` only).
    """

    VARIANT = ("recurrent_gamma", "recurrent_beta", "candidate_gamma", "candidate_beta", "epsilon")
    WEIGHTS = ("recurrent_gamma", "recurrent_beta", "candidate_gamma", "candidate_beta")

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        input_bias = recurrent_bias = None
        if cell.use_bias:
            bias = weight(cell.bias)
            input_bias, recurrent_bias = (bias[0], bias[1]) if cell.reset_after else (bias, None)
        recurrent_gamma, recurrent_beta = _norm_weights(cell.recurrent_norm)
        candidate_gamma, candidate_beta = _norm_weights(cell.candidate_norm)
        math = cls(
            *cell_arguments(cell, recurrent_bias, recurrent_mask),
            recurrent_gamma=recurrent_gamma,
            recurrent_beta=recurrent_beta,
            candidate_gamma=candidate_gamma,
            candidate_beta=candidate_beta,
            epsilon=cell.norm_epsilon,
        )
        return Bound(math, _normalized_inputs(cell, inputs, input_bias), None, None)

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

    def _norm_terms(self, d_gates, gates_normalized, d_candidate, candidate_normalized):
        return tf.concat([d_gates * gates_normalized, d_gates, d_candidate * candidate_normalized, d_candidate], -1)

    def _norm_gradients(self, terms):
        """The gains' and shifts' gradients `(recurrent gamma, beta, candidate gamma, beta)` from the terms."""
        units = self.units
        return tuple(tf.split(sum_over_steps(terms), [2 * units, 2 * units, units, units]))


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
    )

    def _forward(self, x_t, h_tm1):
        units = self.units
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
        a_zr, a_h = tf.split(x_t, [2 * units, units], axis=-1)
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        candidate = self.activation.forward(a_h + r * inner)
        h = z * h_tm1 + (1.0 - z) * candidate
        return dict(
            h=h,
            zr=zr,
            candidate=candidate,
            inner=inner,
            gates_normalized=gates_normalized,
            gates_deviation=gates_deviation,
            candidate_normalized=candidate_normalized,
            candidate_deviation=candidate_deviation,
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
        terms = self._norm_terms(d_gates, r["gates_normalized"], d_inner, r["candidate_normalized"])
        return [dh_tm1], [tf.concat([d_gates, d_candidate], axis=-1), dv, terms]

    def write_widths(self):
        return [3 * self.units, 3 * self.units, 6 * self.units]

    def finish(self, writes_seq, previous):
        d_projected, dv, terms = writes_seq
        extra = self._norm_gradients(terms)
        # `b'` is added after each normalisation, as its shift is: the same gradient.
        d_recurrent_bias = None if self.recurrent_bias is None else tf.concat([extra[1], extra[3]], axis=0)
        return RecurrentGradients(d_projected, previous.matmul_t(dv), d_recurrent_bias, extra)


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
    )

    def __init__(self, units, recurrent_kernel, *args, **kwargs):
        super().__init__(units, recurrent_kernel, *args, **kwargs)
        self.kernel_zr = recurrent_kernel[:, : 2 * units]
        self.kernel_h = recurrent_kernel[:, 2 * units :]
        self.kernel_zr_t = tf.transpose(self.kernel_zr)
        self.kernel_h_t = tf.transpose(self.kernel_h)

    def _forward(self, x_t, h_tm1):
        units = self.units
        s = self.dropped(h_tm1)
        v_zr = self.product(s, self.kernel_zr, self.kernel_zr_t)
        gates, gates_normalized, gates_deviation = normalize(
            v_zr, self.recurrent_gamma, self.recurrent_beta, self.epsilon
        )
        a_zr, a_h = tf.split(x_t, [2 * units, units], axis=-1)
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        reset_state = r * s
        v_h = self.product(reset_state, self.kernel_h, self.kernel_h_t)
        inner, candidate_normalized, candidate_deviation = normalize(
            v_h, self.candidate_gamma, self.candidate_beta, self.epsilon
        )
        candidate = self.activation.forward(a_h + inner)
        h = z * h_tm1 + (1.0 - z) * candidate
        return dict(
            h=h,
            s=s,
            zr=zr,
            candidate=candidate,
            reset_state=reset_state,
            gates_normalized=gates_normalized,
            gates_deviation=gates_deviation,
            candidate_normalized=candidate_normalized,
            candidate_deviation=candidate_deviation,
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
        terms = self._norm_terms(d_gates, r["gates_normalized"], d_candidate, r["candidate_normalized"])
        d_projected = tf.concat([d_gates, d_candidate], axis=-1)
        # The reset-gated state passes through to the candidate kernel's gradient.
        return [dh_tm1], [d_projected, dv_zr, dv_h, r["reset_state"], terms]

    def write_widths(self):
        units = self.units
        return [3 * units, 2 * units, units, units, 6 * units]

    def finish(self, writes_seq, previous):
        d_projected, dv_zr, dv_h, reset_state, terms = writes_seq
        d_kernel = tf.concat([previous.matmul_t(dv_zr), flat_matmul_t(reset_state, dv_h)], axis=-1)
        return RecurrentGradients(d_projected, d_kernel, None, self._norm_gradients(terms))
