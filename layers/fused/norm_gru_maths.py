"""The step arithmetic of the layer-normalised GRU (`LayerNormGRUCell`): `LayerNormGRUMath`
(`reset_after=True`) and `LayerNormGRUResetBeforeMath`.

Built as `layers.fused.norm_maths` builds the other layer-normalised maths:
every normalisation inside the step, the gains' and shifts' gradients summed
by the backward loop.
"""

import tensorflow as tf

from layers.fused.gradients import RecurrentGradients, flat_matmul_t
from layers.fused.maths import Bound, ResetBeforeKernels, cell_arguments, times, weight
from layers.fused.norm_maths import NormMath, norm_arguments, normalization_records, normalize_backward


class _LayerNormGRUBase(NormMath):
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
        math = cls(
            *cell_arguments(cell, recurrent_bias, recurrent_mask),
            **norm_arguments(cell, kernel="kernel_norm", recurrent="recurrent_norm", candidate="candidate_norm"),
            input_bias=input_bias,
            epsilon=cell.norm_epsilon,
        )
        return Bound(math, inputs, weight(cell.kernel), None)

    def _inputs(self, x_t, parts):
        """A step's `(a_zr, a_h)`: its normalised input projection plus the input bias, split."""
        a = self._normalize_into(parts, "kernel", self._projected(x_t), self.kernel_gamma, self.kernel_beta)
        if self.input_bias is not None:
            a = a + self.input_bias
        return tf.split(a, [2 * self.units, self.units], axis=-1)

    def step(self, x_t, states):
        return [self._forward(x_t, states[0])["h"]]

    def step_saving(self, x_t, states):
        parts = self._forward(x_t, states[0])
        parts.update(self._gate_records(states[0], parts["candidate"], parts["zr"]))
        # The reset gate's factor: what it multiplies, times its derivative.
        name, multiplied = self.RESET_RECORD
        parts[name] = times(parts[multiplied], parts["d_r"])
        return [parts["h"]], self._records(parts)

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
    ) + normalization_records("gates", "candidate", "kernel")

    RESET_RECORD = ("to_r", "inner")

    def _forward(self, x_t, h_tm1):
        units = self.units
        parts = {}
        a_zr, a_h = self._inputs(x_t, parts)
        v = self.product(self.dropped(h_tm1), self.recurrent_kernel, self.recurrent_kernel_t)
        v_zr, v_h = tf.split(v, [2 * units, units], axis=-1)
        gates = self._normalize_into(parts, "gates", v_zr, self.recurrent_gamma, self.recurrent_beta)
        inner = self._normalize_into(parts, "candidate", v_h, self.candidate_gamma, self.candidate_beta)
        if self.recurrent_bias is not None:
            gates = gates + self.recurrent_bias[: 2 * units]
            inner = inner + self.recurrent_bias[2 * units :]
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        candidate = self.activation.forward(a_h + r * inner)
        parts.update(h=z * h_tm1 + (1.0 - z) * candidate, zr=zr, candidate=candidate, inner=inner)
        return parts

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


class LayerNormGRUResetBeforeMath(ResetBeforeKernels, _LayerNormGRUBase):
    """`reset_after=False`: `n = act(a_h + LN_candidate((r s) U_h))`, gates `LN_recurrent(s U_zr)`."""

    RECORDS = (
        "to_z",
        "to_candidate",
        "s_to_r",
        "r",
        "z",
        "reset_state",
    ) + normalization_records("gates", "candidate", "kernel")

    RESET_RECORD = ("s_to_r", "s")

    def _forward(self, x_t, h_tm1):
        parts = {}
        a_zr, a_h = self._inputs(x_t, parts)
        s = self.dropped(h_tm1)
        v_zr = self.product(s, self.kernel_zr, self.kernel_zr_t)
        gates = self._normalize_into(parts, "gates", v_zr, self.recurrent_gamma, self.recurrent_beta)
        zr = self.recurrent_activation.forward(a_zr + gates)
        z, r = tf.split(zr, 2, axis=-1)
        reset_state = r * s
        v_h = self.product(reset_state, self.kernel_h, self.kernel_h_t)
        inner = self._normalize_into(parts, "candidate", v_h, self.candidate_gamma, self.candidate_beta)
        candidate = self.activation.forward(a_h + inner)
        parts.update(h=z * h_tm1 + (1.0 - z) * candidate, s=s, zr=zr, candidate=candidate, reset_state=reset_state)
        return parts

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
