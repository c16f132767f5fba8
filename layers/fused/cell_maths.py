"""The step arithmetic of each of our cells, and which cell runs which.

`SimpleRNNMath`, `LSTMMath`, `GRUMath` (`reset_after=True`) and
`GRUResetBeforeMath` (`reset_after=False`) each add a cell's gate
arithmetic to `RecurrenceMath` (see `layers.fused.maths` for what a math
provides); `math_class_for` picks the one for a cell of `layers.cells`, or
of the variant cells, whose maths are in `layers.fused.gated_maths` and
`layers.fused.norm_maths` and `layers.fused.norm_gru_maths`.
"""

import tensorflow as tf

from layers._fused_checks import cell_kind
from layers.fused.gated_maths import GatedLSTMMath
from layers.fused.gradients import (
    RecurrentGradients,
    SplitProjectionGradient,
    flat_matmul_t,
)
from layers.fused.maths import RecurrenceMath, ResetBeforeKernels, times, weight
from layers.fused.norm_gru_maths import LayerNormGRUMath, LayerNormGRUResetBeforeMath
from layers.fused.norm_maths import LayerNormLSTMMath, LayerNormSimpleRNNMath


class _GRUJoin:
    """`join` for both GRUs: only the update and reset gates are joined.

    The candidate's input product stays apart (`candidate_input`): the
    reset gate multiplies the candidate's recurrent part (`reset_after`) or
    the state before its product (`reset_after=False`), not the inputs'.
    """

    def join(self, kernel, input_bias):
        units = self.units
        self.joint_kernel = tf.concat([kernel[:, : 2 * units], self.recurrent_kernel[:, : 2 * units]], axis=0)
        self.joint_bias = None if input_bias is None else input_bias[: 2 * units]
        self.candidate_kernel = kernel[:, 2 * units :]
        self.candidate_kernel_t = None  # made by `in_columns`
        self.candidate_bias = None if input_bias is None else input_bias[2 * units :]

    def in_columns(self):
        math = super().in_columns()
        math.candidate_kernel_t = tf.transpose(self.candidate_kernel)
        return math

    def candidate_input(self, x_t):
        p = self.product(x_t, self.candidate_kernel, self.candidate_kernel_t)
        return self._plus_bias(p, self.candidate_bias)


class SimpleRNNMath(RecurrenceMath):
    def step(self, x_t, states):
        return [self.activation.forward(self.preactivation(x_t, self.dropped(states[0])))]

    def step_saving(self, x_t, states):
        h = self.step(x_t, states)[0]
        derivative = self.activation.derivative(h)
        return [h], [derivative if derivative is not None else tf.ones_like(h)]

    def backward_step(self, state_grads, records_t):
        dz = state_grads[0] * records_t[0]
        return [self.dropped(self.product(dz, self.recurrent_kernel_t, self.recurrent_kernel))], [dz]


class LSTMMath(RecurrenceMath):
    state_count = 2
    record_count = 6

    def _gates(self, x_t, h_tm1):
        z = self.preactivation(x_t, self.dropped(h_tm1))
        z_i, z_f, z_c, z_o = self._split(z, 4)
        gate = self.recurrent_activation.forward
        return gate(z_i), gate(z_f), self.activation.forward(z_c), gate(z_o)

    def step(self, x_t, states):
        h_tm1, c_tm1 = states
        i, f, g, o = self._gates(x_t, h_tm1)
        c = f * c_tm1 + i * g
        return [o * self.activation.forward(c), c]

    def step_saving(self, x_t, states):
        h_tm1, c_tm1 = states
        i, f, g, o = self._gates(x_t, h_tm1)
        c = f * c_tm1 + i * g
        tanh_c = self.activation.forward(c)
        h = o * tanh_c
        gate_derivative = self.recurrent_activation.derivative
        derivative = self.activation.derivative
        # The gate pre-activation gradients are [dc, dc, dc, dh] times the
        # first four, where dc already includes the path through h. All
        # records are (batch, units), so the driver can stack them along a
        # new first axis (a plain copy, unlike joining along the last axis).
        records = [
            times(g, gate_derivative(i)),
            times(c_tm1, gate_derivative(f)),
            times(i, derivative(g)),
            times(tanh_c, gate_derivative(o)),
            times(o, derivative(tanh_c)),
            f,
        ]
        return [h, c], records

    def backward_step(self, state_grads, records_t):
        dh, dc = state_grads
        to_i, to_f, to_g, to_o, h_to_c, forget = records_t
        dc = dc + dh * h_to_c
        dz = tf.concat([dc * to_i, dc * to_f, dc * to_g, dh * to_o], axis=-1)
        dh_tm1 = self.dropped(self.product(dz, self.recurrent_kernel_t, self.recurrent_kernel))
        return [dh_tm1, dc * forget], [dz]


class GRUMath(_GRUJoin, RecurrenceMath):
    """GRU with `reset_after=True` (reset gate applied after the product)."""

    record_count = 5

    @staticmethod
    def split_bias(cell):
        if not cell.use_bias:
            return None, None
        bias = weight(cell.bias)
        return bias[0], bias[1]

    def join(self, kernel, input_bias):
        super().join(kernel, input_bias)
        units = self.units
        self.recurrent_kernel_h = self.recurrent_kernel[:, 2 * units :]
        self.recurrent_kernel_h_t = None  # made by `in_columns`
        self.recurrent_bias_h = None
        if self.recurrent_bias is not None:
            # (A recurrent bias comes with an input bias: both are `use_bias`.)
            self.joint_bias = self.joint_bias + self.recurrent_bias[: 2 * units]
            self.recurrent_bias_h = self.recurrent_bias[2 * units :]

    def in_columns(self):
        math = super().in_columns()
        math.recurrent_kernel_h_t = tf.transpose(self.recurrent_kernel_h)
        return math

    def _parts(self, x_t, h_tm1):
        units = self.units
        h_dropped = self.dropped(h_tm1)
        if self.joined:
            zr = self.preactivation(x_t, h_dropped)
            inner_h = self._plus_bias(
                self.product(h_dropped, self.recurrent_kernel_h, self.recurrent_kernel_h_t),
                self.recurrent_bias_h,
            )
            p_h = self.candidate_input(x_t)
        else:
            inner = self.product(h_dropped, self.recurrent_kernel, self.recurrent_kernel_t)
            if self.recurrent_bias is not None:
                inner = inner + self.recurrent_bias
            p_zr, p_h = tf.split(x_t, [2 * units, units], axis=-1)
            inner_zr, inner_h = tf.split(inner, [2 * units, units], axis=-1)
            zr = p_zr + inner_zr
        zr = self.recurrent_activation.forward(zr)
        z, r = self._split(zr, 2)
        candidate = self.activation.forward(p_h + r * inner_h)
        return zr, z, r, inner_h, candidate

    def step(self, x_t, states):
        h_tm1 = states[0]
        _, z, _, _, candidate = self._parts(x_t, h_tm1)
        return [candidate + z * (h_tm1 - candidate)]

    def step_saving(self, x_t, states):
        h_tm1 = states[0]
        zr, z, r, inner_h, candidate = self._parts(x_t, h_tm1)
        h = candidate + z * (h_tm1 - candidate)
        d_candidate = times(1.0 - z, self.activation.derivative(candidate))
        d_zr = self.recurrent_activation.derivative(zr)
        d_z, d_r = (None, None) if d_zr is None else tf.split(d_zr, 2, axis=-1)
        # dh times these gives the gradients of the recurrent product (z, r
        # and candidate parts) and of the candidate's projected input.
        records = [
            times(h_tm1 - candidate, d_z),
            times(d_candidate * inner_h, d_r),
            d_candidate * r,
            d_candidate,
            z,
        ]
        return [h], records

    def backward_step(self, state_grads, records_t):
        dh = state_grads[0]
        to_z, to_r, to_inner_h, to_candidate, z = records_t
        d_inner = tf.concat([dh * to_z, dh * to_r, dh * to_inner_h], axis=-1)
        dh_tm1 = self.dropped(self.product(d_inner, self.recurrent_kernel_t, self.recurrent_kernel)) + dh * z
        return [dh_tm1], [d_inner, dh * to_candidate]

    def write_widths(self):
        return [3 * self.units, self.units]

    def finish(self, writes_seq, previous):
        d_inner, d_candidate_input = writes_seq
        d_recurrent_bias = None
        if self.recurrent_bias is not None:
            d_recurrent_bias = tf.raw_ops.BiasAddGrad(out_backprop=tf.reshape(d_inner, [-1, d_inner.shape[-1]]))
        d_kernel = previous.matmul_t(d_inner)
        # The projected inputs' gradient is d_inner with its candidate part
        # replaced by `d_candidate_input`; `input_gradients` forms the input
        # weights' gradients from the two parts without joining them.
        return RecurrentGradients(
            SplitProjectionGradient(d_inner, d_candidate_input, 2 * self.units), d_kernel, d_recurrent_bias
        )


class GRUResetBeforeMath(_GRUJoin, ResetBeforeKernels, RecurrenceMath):
    """GRU with `reset_after=False` (reset gate applied to the state)."""

    record_count = 6

    def _parts(self, x_t, h_tm1):
        units = self.units
        h_dropped = self.dropped(h_tm1)
        if self.joined:
            zr = self.preactivation(x_t, h_dropped)
            p_h = self.candidate_input(x_t)
        else:
            p_zr, p_h = tf.split(x_t, [2 * units, units], axis=-1)
            zr = p_zr + self.product(h_dropped, self.kernel_zr, self.kernel_zr_t)
        zr = self.recurrent_activation.forward(zr)
        z, r = self._split(zr, 2)
        reset_h = r * h_dropped
        candidate = self.activation.forward(p_h + self.product(reset_h, self.kernel_h, self.kernel_h_t))
        return h_dropped, zr, z, r, reset_h, candidate

    def step(self, x_t, states):
        h_tm1 = states[0]
        _, _, z, _, _, candidate = self._parts(x_t, h_tm1)
        return [candidate + z * (h_tm1 - candidate)]

    def step_saving(self, x_t, states):
        h_tm1 = states[0]
        h_dropped, zr, z, r, reset_h, candidate = self._parts(x_t, h_tm1)
        h = candidate + z * (h_tm1 - candidate)
        d_candidate = times(1.0 - z, self.activation.derivative(candidate))
        d_zr = self.recurrent_activation.derivative(zr)
        d_z, d_r = (None, None) if d_zr is None else tf.split(d_zr, 2, axis=-1)
        records = [d_candidate, times(h_tm1 - candidate, d_z), times(h_dropped, d_r), r, z, reset_h]
        return [h], records

    def backward_step(self, state_grads, records_t):
        dh = state_grads[0]
        d_candidate, to_z, to_r, r, z, reset_h = records_t
        dn = dh * d_candidate
        d_reset_h = self.product(dn, self.kernel_h_t, self.kernel_h)
        dzr = tf.concat([dh * to_z, d_reset_h * to_r], axis=-1)
        d_dropped = self.product(dzr, self.kernel_zr_t, self.kernel_zr) + d_reset_h * r
        dh_tm1 = self.dropped(d_dropped) + dh * z
        # The reset-gated state passes through to the weight gradient.
        return [dh_tm1], [dzr, dn, reset_h]

    def write_widths(self):
        return [2 * self.units, self.units, self.units]

    def finish(self, writes_seq, previous):
        dzr, dn, reset_h = writes_seq
        d_kernel = tf.concat([previous.matmul_t(dzr), flat_matmul_t(reset_h, dn)], axis=-1)
        return RecurrentGradients(tf.concat([dzr, dn], axis=-1), d_kernel, None)


def math_class_for(cell):
    """The `RecurrenceMath` class of one of our cells, or `None` (see `cell_kind`)."""
    return _MATH_CLASSES.get(cell_kind(cell))


_MATH_CLASSES = {
    "simple_rnn": SimpleRNNMath,
    "lstm": LSTMMath,
    "gru": GRUMath,
    "gru_reset_before": GRUResetBeforeMath,
    "gated_lstm": GatedLSTMMath,
    "layer_norm_simple_rnn": LayerNormSimpleRNNMath,
    "layer_norm_lstm": LayerNormLSTMMath,
    "layer_norm_gru": LayerNormGRUMath,
    "layer_norm_gru_reset_before": LayerNormGRUResetBeforeMath,
}
# The `cell_kind`s this path runs fused.
FUSED_KINDS = tuple(_MATH_CLASSES)
