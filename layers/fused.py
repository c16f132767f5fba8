"""Fused whole-sequence recurrences with hand-written back-propagation (TensorFlow).

The sequence layers in `layers.sequence` use this module on the TensorFlow
backend. For a whole sequence it

1. in training (graph loops), projects the inputs of every time step with
   one matrix product (`[time * batch, features] @ kernel + bias`);
2. runs the recurrence in one `tf.while_loop` that does only the recurrent
   product `h @ recurrent_kernel` and the gate arithmetic; in training it
   also saves, per step, the derivative factors of the gates (computed while
   the gate activations are at hand, so nothing is recomputed later);
3. back-propagates through time by hand (`tf.custom_gradient`): the backward
   loop carries only the state gradients, multiplies them by the saved
   factors and saves the gradient of the gate pre-activations at every
   step; after the loop the gradient of `recurrent_kernel` (and of the GRU's
   recurrent bias) is one matrix product over all steps, `H_prev^T @ dZ`,
   and those of `kernel`, `bias` and the inputs are `X^T @ dZ`, a column
   sum and `dZ @ kernel^T`.

Without `training`, the forward loop saves nothing and projects each step's
inputs inside the loop (faster when nothing else needs the projected
sequence); a gradient taken anyway runs the saving forward loop once more
and then the same backward loop.

With `jit_compile`, each loop is compiled by XLA into one program: on a CPU
this removes the per-operation cost of TensorFlow's graph executor, which
dominates a loop of many small operations, and fuses the gate arithmetic.
Compiled loops differ from graph loops in two ways that measured faster
inside XLA: every step forms its input and recurrent products as one,
`[x_t, h] @ [kernel; recurrent_kernel]` (so training, too, projects the
inputs inside the loop rather than in step 1), and the loops read and write
the batch-major sequences in place instead of time-major copies. The
inference loop of a layer whose recurrent kernel is 512 columns wide or more
(a SimpleRNN of 512 units, a GRU of 171, an LSTM of 128) keeps its states as
columns, `(units, batch)`, so that each step's product is
`kernel^T @ [x_t; h]` (`COLUMN_MIN_WIDTH`). Inside a traced function,
compiled loops run the two halves of the batch as two calls that the graph
executor runs at the same time, one per core, at the sizes where that
measured faster (`splits_batch`). The weight-gradient products stay
outside, as TensorFlow's own matrix-product kernels. A compiled loop is
specialised to its input shapes: each new shape compiles once (a second or
two). Without it the loops run as graph loops.

All three cells share one driver (`run_recurrence`); each cell contributes
only its step arithmetic (`_SimpleRNNMath`, `_LSTMMath`, `_GRUMath`).

Masks follow `keras.layers.RNN`: at a masked step the states are carried
over unchanged. Truncated back-propagation through time cuts the state
gradient at the start of every chunk of `truncate_every` steps (in processing
order), so no gradient flows from a chunk into the one before it.

This module imports TensorFlow; import it only on the TensorFlow backend.
"""

import contextlib
import copy
import os

import keras
import tensorflow as tf
from keras import activations, ops
from tensorflow.compiler.tf2xla.python import xla as _xla

# Dtypes the fused path computes in. Others (float16, bfloat16 under mixed
# precision) run the cell path, whose rounding the fused path would not match.
SUPPORTED_DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------
# Activations with derivatives written in terms of their output.
# --------------------------------------------------------------------------
class _Activation:
    """An activation whose derivative is a function of its output `y`.

    `derivative(y)` returns `None` for the identity (a factor of one), so the
    caller can skip a multiplication.
    """

    def __init__(self, forward, derivative):
        self.forward = forward
        self.derivative = derivative


def _hard_sigmoid(x):
    # The same operations as `keras.ops.hard_sigmoid` on TensorFlow, so the
    # forward values are identical.
    return tf.nn.relu6(x + tf.constant(3.0, x.dtype)) / tf.constant(6.0, x.dtype)


def _hard_sigmoid_derivative(y):
    inside = tf.logical_and(y > 0.0, y < 1.0)
    return tf.cast(inside, y.dtype) * tf.constant(1.0 / 6.0, y.dtype)


_TANH = _Activation(tf.tanh, lambda y: 1.0 - y * y)
_SIGMOID = _Activation(tf.sigmoid, lambda y: y * (1.0 - y))
_RELU = _Activation(tf.nn.relu, lambda y: tf.cast(y > 0.0, y.dtype))
_LINEAR = _Activation(tf.identity, lambda y: None)
_HARD_SIGMOID = _Activation(_hard_sigmoid, _hard_sigmoid_derivative)

_KNOWN_ACTIVATIONS = {
    activations.tanh: _TANH,
    ops.tanh: _TANH,
    tf.tanh: _TANH,
    tf.nn.tanh: _TANH,
    activations.sigmoid: _SIGMOID,
    ops.sigmoid: _SIGMOID,
    tf.sigmoid: _SIGMOID,
    tf.nn.sigmoid: _SIGMOID,
    activations.relu: _RELU,
    ops.relu: _RELU,
    tf.nn.relu: _RELU,
    activations.linear: _LINEAR,
    activations.hard_sigmoid: _HARD_SIGMOID,
    ops.hard_sigmoid: _HARD_SIGMOID,
}


def resolve_activation(function):
    """The `_Activation` for a cell's activation function, or `None` if unknown."""
    if function is None:
        return _LINEAR
    try:
        return _KNOWN_ACTIVATIONS.get(function)
    except TypeError:  # unhashable callable
        return None


def _cut(x):
    """`x` with no gradient flowing through it (`None` stays `None`)."""
    return None if x is None else tf.stop_gradient(x)


def _times(x, factor):
    """`x * factor`, where `factor=None` stands for one."""
    return x if factor is None else x * factor


# Widest `[batch, n]` step product still computed directly; wider ones are
# computed transposed (see `_state_product`). Measured with TensorFlow 2.21's
# CPU kernels: the transposed form was 1.2 to 1.6 times as fast from n = 1024
# up (1024 to 4096, batch 16 to 256), while at n = 256 and 768 and for a
# narrow result of a deep product (`[64, 1024] @ [1024, 256]`) the direct
# form was as fast or faster.
TRANSPOSED_PRODUCT_WIDTH = 1024


def _state_product(h, kernel, kernel_t):
    """`h @ kernel` for a step's `[batch, k]` operand; `kernel_t` is `kernel^T`.

    For a result at least `TRANSPOSED_PRODUCT_WIDTH` wide it is computed as
    `(kernel^T @ h^T)^T`: TensorFlow's CPU matrix product is much slower for
    a short, wide result (`[batch, gates * units]` with a small batch) than
    for the transposed, tall one, by more than the two small transposes cost.
    The sums are the same; only their rounding order may differ.
    """
    width = kernel.shape[-1]
    if width is None or width < TRANSPOSED_PRODUCT_WIDTH:
        return tf.matmul(h, kernel)
    return tf.transpose(tf.matmul(kernel_t, tf.transpose(h)))


def _flat_matmul_t(a, b):
    """`sum_t a[t]^T @ b[t]` for time-major `a` (T, B, m), `b` (T, B, n), as one product.

    (Splitting `b` into column blocks, which once measured faster for 1024
    and 2048 columns, was 2 to 11% slower with TensorFlow 2.21 on the
    benchmark machine, compiled loops or not.)
    """
    a2 = tf.reshape(a, [-1, a.shape[-1] if a.shape[-1] is not None else tf.shape(a)[-1]])
    b2 = tf.reshape(b, [-1, b.shape[-1] if b.shape[-1] is not None else tf.shape(b)[-1]])
    return tf.matmul(a2, b2, transpose_a=True)


class _ShiftedStates:
    """The states entering each step of a time-major loop: `first`, then `rest[:-1]`.

    `first` is the initial state and `rest` the loop's output states (both
    after recurrent dropout); slicing along time shares memory,
    concatenating would copy.
    """

    def __init__(self, first, rest):
        self.first, self.rest = first, rest

    def matmul_t(self, b):
        """`sum_t prev[t]^T @ b[t]` for time-major `b`."""
        return tf.matmul(self.first, b[0], transpose_a=True) + _flat_matmul_t(self.rest[:-1], b[1:])


class _PreviousStates:
    """The states entering each step, written by the loop in the layout of `b`."""

    def __init__(self, sequence):
        self.sequence = sequence

    def matmul_t(self, b):
        """`sum_t prev[t]^T @ b[t]`."""
        return _flat_matmul_t(self.sequence, b)


# --------------------------------------------------------------------------
# Per-cell step arithmetic.
#
# Each class holds the recurrent weights of one call and provides:
#   step(x_t, states) -> new_states
#       one step before masking (inference: nothing is saved); `x_t` is
#       the step's projected inputs, or with `joined` its raw inputs.
#   step_saving(x_t, states) -> (new_states, records)
#       the same step, also returning what back-propagation needs from it:
#       the derivative factors of the step, computed while the operands are
#       at hand, so the backward loop only multiplies.
#   backward_step(state_grads, records_t) -> (prev_state_grads, writes)
#       gradients w.r.t. the step's input states, given the gradients
#       w.r.t. its (unmasked) new states; `writes` are the gate
#       pre-activation gradients of the step, saved for after the loop.
#   finish(writes_seq, previous)
#       -> (d_projected, d_recurrent_kernel, d_recurrent_bias or None)
#       after the loop, as large matrix products over all steps;
#       `previous` (`_ShiftedStates` or `_PreviousStates`) holds the states
#       entering each step.
#   write_widths() -> the width of each of the writes.
# --------------------------------------------------------------------------
class _RecurrenceMath:
    state_count = 1
    record_count = 1

    def __init__(self, units, recurrent_kernel, recurrent_bias, recurrent_mask,
                 activation, recurrent_activation):
        self.units = units
        self.recurrent_kernel = recurrent_kernel
        self.recurrent_kernel_t = tf.transpose(recurrent_kernel)
        self.recurrent_bias = recurrent_bias
        self.recurrent_mask = recurrent_mask
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        # Set by `detached(..., joined=True)`: steps receive raw inputs `x_t`
        # instead of projected ones (see `join`).
        self.joined = False
        # Set by `in_columns()`: states and inputs are `(n, batch)`.
        self.columns = False
        # The compiled loops made for this math (see `_BatchMajorLoops._program`).
        self.programs = {}

    def detached(self, kernel=None, input_bias=None, joined=False):
        """The same math on weights that no gradient tape follows.

        The loops run inside `tf.custom_gradient`, whose gradient is written
        by hand; a tape that recorded them anyway (as an eager tape does)
        would keep their intermediates alive for nothing, and a loop
        compiled with XLA cannot be recorded at all.

        With `joined` (for compiled loops), the steps receive each step's raw
        inputs and form the input and recurrent products as one (see
        `join`), given the input weights `kernel` and `input_bias`.
        """
        math = type(self)(
            self.units,
            _cut(self.recurrent_kernel),
            _cut(self.recurrent_bias),
            _cut(self.recurrent_mask),
            self.activation,
            self.recurrent_activation,
        )
        if joined:
            math.joined = True
            math.join(_cut(kernel), _cut(input_bias))
        return math

    def rows(self, rows):
        """This math for a part of the batch (`rows`, a slice; `None`: all of it)."""
        if rows is None or self.recurrent_mask is None:
            return self
        math = copy.copy(self)
        math.recurrent_mask = self.recurrent_mask[rows]
        math.programs = {}
        return math

    def join(self, kernel, input_bias):
        """Prepare joined steps: `z = [x_t, h] @ [kernel; recurrent_kernel] + input_bias`.

        Inside an XLA program one deeper product measured faster than two
        (LSTM forward at 256 units: 54 against 63 ms; the forward loop of a
        training step, 90 against 101 ms). The joined kernel is made here,
        once per call: XLA did not hoist a concatenation of the weights out
        of the loop.
        """
        self.joint_kernel = tf.concat([kernel, self.recurrent_kernel], axis=0)
        self.joint_bias = input_bias

    def in_columns(self):
        """This joined math on states and inputs laid out as columns, `(n, batch)`.

        For the compiled inference loop of wide layers (see
        `COLUMN_MIN_WIDTH`): every step product becomes `kernel^T @ h`, with
        the transposed kernels made here, once per call, and the gate
        blocks are rows. Only the step (`step`) is defined in this form.
        """
        math = copy.copy(self)
        math.columns = True
        math.joint_kernel_t = tf.transpose(self.joint_kernel)
        if self.recurrent_mask is not None:
            math.recurrent_mask = tf.transpose(self.recurrent_mask)
        return math

    def _split(self, z, blocks):
        """`tf.split` of a step's gate pre-activations into their blocks."""
        return tf.split(z, blocks, axis=0 if self.columns else -1)

    def _plus_bias(self, z, bias):
        if bias is None:
            return z
        return z + (bias[:, None] if self.columns else bias)

    def product(self, h, kernel, kernel_t):
        """A step's `h @ kernel`: direct in compiled loops, else `_state_product`.

        Inside an XLA program the direct product measured as fast or faster
        at every width tried (LSTM forward at 256 units: 63 against 70 ms).
        In columns (`in_columns`) it is `kernel^T @ h`.
        """
        if self.columns:
            return tf.matmul(kernel_t, h)
        return tf.matmul(h, kernel) if self.joined else _state_product(h, kernel, kernel_t)

    def preactivation(self, x_t, h_dropped):
        """`x_t @ kernel + input_bias + h_dropped @ recurrent_kernel`.

        `x_t` is the step's projected inputs, or with `joined` its raw
        inputs.
        """
        if not self.joined:
            return x_t + self.product(h_dropped, self.recurrent_kernel, self.recurrent_kernel_t)
        if self.columns:
            z = tf.matmul(self.joint_kernel_t, tf.concat([x_t, h_dropped], axis=0))
        else:
            z = tf.matmul(tf.concat([x_t, h_dropped], axis=-1), self.joint_kernel)
        return self._plus_bias(z, self.joint_bias)

    def dropped(self, h):
        return h if self.recurrent_mask is None else h * self.recurrent_mask

    def write_widths(self):
        """The width of each of `backward_step`'s writes."""
        return [self.recurrent_kernel.shape[-1]]

    def finish(self, writes_seq, previous):
        dz = writes_seq[0]
        return dz, previous.matmul_t(dz), None


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
        self.candidate_kernel = kernel[:, 2 * units:]
        self.candidate_kernel_t = None  # made by `in_columns`
        self.candidate_bias = None if input_bias is None else input_bias[2 * units:]

    def in_columns(self):
        math = super().in_columns()
        math.candidate_kernel_t = tf.transpose(self.candidate_kernel)
        return math

    def candidate_input(self, x_t):
        p = self.product(x_t, self.candidate_kernel, self.candidate_kernel_t)
        return self._plus_bias(p, self.candidate_bias)


class _SimpleRNNMath(_RecurrenceMath):
    def step(self, x_t, states):
        return [self.activation.forward(self.preactivation(x_t, self.dropped(states[0])))]

    def step_saving(self, x_t, states):
        h = self.step(x_t, states)[0]
        derivative = self.activation.derivative(h)
        return [h], [derivative if derivative is not None else tf.ones_like(h)]

    def backward_step(self, state_grads, records_t):
        dz = state_grads[0] * records_t[0]
        return [self.dropped(self.product(dz, self.recurrent_kernel_t, self.recurrent_kernel))], [dz]


class _LSTMMath(_RecurrenceMath):
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
            _times(g, gate_derivative(i)),
            _times(c_tm1, gate_derivative(f)),
            _times(i, derivative(g)),
            _times(tanh_c, gate_derivative(o)),
            _times(o, derivative(tanh_c)),
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


class _GRUMath(_GRUJoin, _RecurrenceMath):
    """GRU with `reset_after=True` (reset gate applied after the product)."""

    record_count = 5

    def join(self, kernel, input_bias):
        super().join(kernel, input_bias)
        units = self.units
        self.recurrent_kernel_h = self.recurrent_kernel[:, 2 * units:]
        self.recurrent_kernel_h_t = None  # made by `in_columns`
        self.recurrent_bias_h = None
        if self.recurrent_bias is not None:
            # (A recurrent bias comes with an input bias: both are `use_bias`.)
            self.joint_bias = self.joint_bias + self.recurrent_bias[: 2 * units]
            self.recurrent_bias_h = self.recurrent_bias[2 * units:]

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
        d_candidate = _times(1.0 - z, self.activation.derivative(candidate))
        d_zr = self.recurrent_activation.derivative(zr)
        d_z, d_r = (None, None) if d_zr is None else tf.split(d_zr, 2, axis=-1)
        # dh times these gives the gradients of the recurrent product (z, r
        # and candidate parts) and of the candidate's projected input.
        records = [
            _times(h_tm1 - candidate, d_z),
            _times(d_candidate * inner_h, d_r),
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
            d_recurrent_bias = tf.raw_ops.BiasAddGrad(
                out_backprop=tf.reshape(d_inner, [-1, d_inner.shape[-1]])
            )
        d_kernel = previous.matmul_t(d_inner)
        # The projected inputs' gradient is d_inner with its candidate part
        # replaced by `d_candidate_input`; `input_gradients` forms the input
        # weights' gradients from the two parts without joining them.
        return _SplitProjectionGradient(d_inner, d_candidate_input, 2 * self.units), d_kernel, d_recurrent_bias


class _GRUResetBeforeMath(_GRUJoin, _RecurrenceMath):
    """GRU with `reset_after=False` (reset gate applied to the state)."""

    record_count = 6

    def __init__(self, units, recurrent_kernel, *args, **kwargs):
        super().__init__(units, recurrent_kernel, *args, **kwargs)
        self.kernel_zr = recurrent_kernel[:, : 2 * units]
        self.kernel_h = recurrent_kernel[:, 2 * units:]
        self.kernel_zr_t = tf.transpose(self.kernel_zr)
        self.kernel_h_t = tf.transpose(self.kernel_h)

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
        d_candidate = _times(1.0 - z, self.activation.derivative(candidate))
        d_zr = self.recurrent_activation.derivative(zr)
        d_z, d_r = (None, None) if d_zr is None else tf.split(d_zr, 2, axis=-1)
        records = [d_candidate, _times(h_tm1 - candidate, d_z), _times(h_dropped, d_r), r, z, reset_h]
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
        d_kernel = tf.concat([previous.matmul_t(dzr), _flat_matmul_t(reset_h, dn)], axis=-1)
        return tf.concat([dzr, dn], axis=-1), d_kernel, None


class _SplitProjectionGradient:
    """The gradient of the projected inputs, given as two parts.

    Columns `[:split]` are those of `leading` (whose other columns belong to
    something else), columns `[split:]` are `trailing`. The input weights'
    gradients are formed from the parts directly, avoiding a concatenation
    of two whole sequences.
    """

    def __init__(self, leading, trailing, split):
        self.leading, self.trailing, self.split = leading, trailing, split


def _input_gradients(d_projected, inputs, kernel, with_bias):
    """(d_inputs, d_kernel, d_bias or None) from the projected inputs' gradient.

    One matrix product over all steps each; a product nobody uses is pruned
    from the graph (e.g. `d_inputs` when the inputs are data).
    """
    flat_inputs = tf.reshape(inputs, [-1, inputs.shape[-1]])

    def flat(sequence):
        return tf.reshape(sequence, [-1, sequence.shape[-1]])

    if isinstance(d_projected, _SplitProjectionGradient):
        split = d_projected.split
        leading, trailing = flat(d_projected.leading), flat(d_projected.trailing)
        head_kernel = tf.concat([kernel[:, :split], tf.zeros_like(kernel[:, split:])], axis=-1)
        d_flat_inputs = tf.matmul(leading, head_kernel, transpose_b=True) + tf.matmul(
            trailing, kernel[:, split:], transpose_b=True
        )
        d_kernel = tf.concat(
            [
                tf.matmul(flat_inputs, leading, transpose_a=True)[:, :split],
                tf.matmul(flat_inputs, trailing, transpose_a=True),
            ],
            axis=-1,
        )
        d_bias = None
        if with_bias:
            d_bias = tf.concat(
                [
                    tf.raw_ops.BiasAddGrad(out_backprop=leading)[:split],
                    tf.raw_ops.BiasAddGrad(out_backprop=trailing),
                ],
                axis=0,
            )
    else:
        d_flat = flat(d_projected)
        d_flat_inputs = tf.matmul(d_flat, kernel, transpose_b=True)
        d_kernel = tf.matmul(flat_inputs, d_flat, transpose_a=True)
        d_bias = tf.raw_ops.BiasAddGrad(out_backprop=d_flat) if with_bias else None
    return tf.reshape(d_flat_inputs, tf.shape(inputs)), d_kernel, d_bias


# --------------------------------------------------------------------------
# The shared driver.
# --------------------------------------------------------------------------
def _swap_time_batch(sequence):
    """Transpose the first two axes: time-major <-> batch-major."""
    return tf.transpose(sequence, [1, 0, 2])


class _Steps:
    """Per-step reads of a sequence, and writes of a sequence like it.

    `time_axis` 0 (time-major): `sequence[t]` slices along the first axis and
    shares the tensor's memory (`TensorArray.unstack` would copy the whole
    sequence first); outputs go to a `TensorArray`.

    `time_axis` 1 (batch-major, compiled loops only): `sequence[:, t]`, read
    from the end with `backwards`; outputs are written in place into a
    `(batch, time, n)` tensor, at the processing step `t`.
    """

    def __init__(self, sequence, time_axis=0, backwards=False):
        self.sequence = sequence
        self.time_axis = time_axis
        self.backwards = backwards
        self.length = tf.shape(sequence)[time_axis]

    def read(self, t):
        if self.time_axis == 0:
            return self.sequence[t]
        return self.sequence[:, self.length - 1 - t if self.backwards else t]

    def outputs(self, width):
        """A writer of `(batch, width)` steps, in processing order, laid out like this sequence."""
        if self.time_axis == 0:
            return _TimeMajorOutputs(self.sequence.dtype, self.length)
        return _BatchMajorOutputs(self.sequence, width)


class _TimeMajorOutputs:
    """Writes `(batch, width)` steps into a `TensorArray`, stacked time-major at the end (graph loops)."""

    def __init__(self, dtype, length):
        self.dtype, self.length = dtype, length

    def empty(self):
        return tf.TensorArray(self.dtype, size=self.length, clear_after_read=False)

    def write(self, out, t, value):
        return out.write(t, value)

    def done(self, out):
        return out.stack()


class _BatchMajorOutputs:
    """Writes `(batch, width)` steps in place into a `(batch, time, width)` tensor (compiled loops).

    Step `t` goes to time index `t`, or `time - 1 - t` with `backwards` (so
    that a sequence read backwards is written back in its own order).
    """

    def __init__(self, like, width, backwards=False):
        # Static dimensions where known (as they are in a compiled loop), so
        # that the graph around the loop knows the output's shape.
        batch, length = like.shape[0], like.shape[1]
        dynamic = tf.shape(like)
        batch = dynamic[0] if batch is None else batch
        length = dynamic[1] if length is None else length
        self.shape = [batch, length, width]
        self.length = length
        self.dtype = like.dtype
        self.backwards = backwards

    def empty(self):
        return tf.zeros(self.shape, self.dtype)

    def write(self, out, t, value):
        index = self.length - 1 - t if self.backwards else t
        return _xla.dynamic_update_slice(out, value[:, None, :], tf.stack([0, index, 0]))

    def done(self, out):
        return out


# The per-step records of the graph loops live in a TensorList: pushed by the
# forward loop and popped by the backward loop, which runs in reverse, so
# each step's records are freed as soon as the step has been
# back-propagated.
_ANY_SHAPE = -1


class _ListRecords:
    """Per-step records in a TensorList (graph loops).

    One step's records are stacked along a new first axis (a plain copy)
    and pushed as one element: every extra list would add loop variables,
    whose bookkeeping costs more per step than the copy.
    """

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        self.shape = None  # static shape of one step's stacked records, seen while tracing

    def empty(self, length):
        return tf.raw_ops.EmptyTensorList(
            element_shape=tf.constant(_ANY_SHAPE), max_num_elements=length, element_dtype=self.dtype
        )

    def save(self, store, t, records):
        stacked = records[0] if self.count == 1 else tf.stack(records, axis=0)
        self.shape = stacked.shape
        return tf.raw_ops.TensorListPushBack(input_handle=store, tensor=stacked)

    def done(self, store):
        return store

    def load(self, store, t):
        store, stacked = tf.raw_ops.TensorListPopBack(
            input_handle=store, element_shape=tf.constant(_ANY_SHAPE), element_dtype=self.dtype
        )
        stacked.set_shape(self.shape)
        return store, [stacked] if self.count == 1 else tf.unstack(stacked, num=self.count, axis=0)


class _DenseRecords:
    """Per-step records as dense tensors, one per record (XLA-compiled loops).

    A compiled loop cannot hand a TensorList to the code outside it, so the
    forward loop returns each record of all steps as one `(time, batch, n)`
    tensor, which the backward loop slices.

    One tensor per record rather than all records stacked in one: the
    memory of a large tensor comes from the system at every call (glibc
    maps allocations above 32 MiB afresh each time, see `malloc(3)`,
    M_MMAP_THRESHOLD), and the first touch of every fresh page is a page
    fault. An LSTM at (64, 100, 64, 256) records 39 MiB per call; stacked,
    that cost 9,600 page faults per call, and a training step took 210 ms
    with 12,800 faults, against 150 ms with 5,400 faults with one tensor per
    record (6.5 MiB each), memory the allocator can reuse.
    """

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count

    def empty(self, length):
        return tuple(tf.TensorArray(self.dtype, size=length) for _ in range(self.count))

    def save(self, store, t, records):
        return tuple(array.write(t, record) for array, record in zip(store, records))

    def done(self, store):
        return tuple(array.stack() for array in store)

    def load(self, store, t):
        return store, [records[t] for records in store]


def _chunk_start(t, truncate_every):
    return tf.logical_and(t > 0, tf.math.floormod(t, truncate_every) == 0)


def _project(inputs, kernel, bias):
    """`inputs @ kernel + bias` for time-major `inputs`, as one matrix product."""
    shape = tf.shape(inputs)
    projected = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel)
    if bias is not None:
        projected = tf.nn.bias_add(projected, bias)
    return tf.reshape(projected, [shape[0], shape[1], kernel.shape[-1]])


# When `jit_compile="auto"` compiles the loops (see `compiles_by_default`).
# Measured with TensorFlow 2.21 on a 2-core AMD EPYC, compiled against graph
# loops (training step; forward pass): up to 512 units compiling was faster
# at every size tried (batch 8 to 64; e.g. LSTM at 512 units, batch 64:
# 459 against 499 ms; 126 against 177 ms). At 1024 units it was faster or
# as fast with batch 64 (LSTM 999 against 993 ms; 234 against 370 ms) but
# much slower with batch 16 or 32 (LSTM, batch 32: 781 against 511 ms; 310
# against 176 ms): XLA's product of a short, wide `[batch, k] @ [k, n]` is
# slow, where the graph loops take it transposed (`_state_product`).
COMPILED_MAX_UNITS = 512
COMPILED_WIDE_MIN_BATCH = 64

# Compiled inference loops whose recurrent kernel is this wide (gate blocks
# times units) or wider keep their states as columns (see
# `_BatchMajorLoops._loop_in_columns`): `kernel^T @ h` with `h` of shape
# `(units, batch)`, whose short, wide result XLA computes faster than
# `h @ kernel`. Measured with the layers at 100 steps and 64 inputs,
# columns against rows (both with the batch split as below): LSTM 37.7
# against 50.9 ms at batch 64 and 256 units, 15.1 against 16.9 at 128
# units; GRU 25.2 against 28.6 at 256 units; SimpleRNN 13.4 against 15.7
# at batch 16 and 512 units; at 1024 units, 398 against 896 ms (LSTM,
# batch 64). Narrower kernels were faster as rows: SimpleRNN 13.7 against
# 14.6 ms at 256 units, GRU 12.4 against 13.3 at 128 units. In columns,
# compiled inference was faster than graph loops at every size tried, so
# `auto` compiles inference at any size; training keeps the rule above
# (its loops keep the states as rows).
COLUMN_MIN_WIDTH = 512

# Compiled loops run the two halves of a batch as two calls of one compiled
# program, which the graph executor runs at the same time, one per core:
# each step is too small for the matrix-product kernel to keep two threads
# busy, and the gate arithmetic runs on one thread, where two independent
# recurrences keep both cores busy. Training splits its saving forward loop
# and its backward loop, and forms the weight gradients of each half (then
# summed). Measured with the layers at 100 steps and 64 inputs (two cores,
# AMD EPYC), halves against whole:
# - inference: 1.02 to 1.64 times as fast with a batch of 16 to 128 over
#   two sweeps (every cell, 128 to 1024 units, rows or columns as above;
#   LSTM at batch 64 and 256 units 1.20 in columns, where in rows it was
#   0.89, one reason for `COLUMN_MIN_WIDTH`), except at 1024
#   units with a batch of 16 (LSTM 0.88, GRU 0.99): hence
#   `SPLIT_WIDE_MIN_BATCH`. With a batch of 8 and 32 units, 0.8 to 1.3.
# - training step (forward, backward, SGD update): 1.03 to 1.58 for every
#   cell from 32 to 512 units (batch 8 to 128; GRU at batch 8 and 32 units
#   1.00), but 0.95 (SimpleRNN), 0.69 (GRU) and 0.74 (LSTM) at 1024 units
#   with a batch of 64: hence `SPLIT_TRAINING_MAX_UNITS`.
SPLIT_MIN_BATCH = 16
SPLIT_WIDE_UNITS = 1024
SPLIT_WIDE_MIN_BATCH = 32
SPLIT_TRAINING_MIN_BATCH = 8
SPLIT_TRAINING_MAX_UNITS = 512


def _batch_parts(inputs, halves):
    """The rows of each part of the batch: `[None]` (all) or its two halves."""
    if not halves:
        return [None]
    half = inputs.shape[0] // 2
    return [slice(None, half), slice(half, None)]


def _rows_taker(rows):
    """A function that takes a part's rows of a batch-major tensor (or `None`)."""
    if rows is None:
        return lambda tensor: tensor
    return lambda tensor: None if tensor is None else tensor[rows]


def _join_rows(parts):
    """The parts' batch-major tensors joined back into the whole batch."""
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def _inside_compiled_function():
    """Whether the function being traced is compiled with XLA as a whole.

    There the two halves would be one program's two loops, run one after
    the other (measured 6 to 20% slower at 256 units). TensorFlow marks such
    a trace with an XLA context, which only its internal module reports.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without them
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


_splitting = [True]


@contextlib.contextmanager
def whole_batches():
    """Within this context, traced calls run their compiled loops on the whole batch at once.

    For comparing the two (`python -m recipes.bench --whole-batch`), or for
    a process that keeps the cores busy otherwise. The choice is made when a
    call is traced; functions traced before keep theirs.
    """
    _splitting.append(False)
    try:
        yield
    finally:
        _splitting.pop()


def splits_batch(math, inputs, training=False):
    """Whether compiled loops run the batch as two halves (see `SPLIT_MIN_BATCH`).

    Only inside a traced function that is not compiled as a whole (an eager
    call, or one program, would run the halves one after the other), with a
    known batch and a graph executor allowed to run two ops at once, and
    not within `whole_batches()`.
    `training`: the loops of a training call (the saving forward loop and
    the backward loop), else the inference loop.
    """
    batch = inputs.shape[0]
    if not _splitting[-1] or tf.executing_eagerly() or batch is None or _inside_compiled_function():
        return False
    if tf.config.threading.get_inter_op_parallelism_threads() == 1 or (os.cpu_count() or 1) < 2:
        return False
    if training:
        return batch >= SPLIT_TRAINING_MIN_BATCH and math.units <= SPLIT_TRAINING_MAX_UNITS
    return batch >= (SPLIT_WIDE_MIN_BATCH if math.units >= SPLIT_WIDE_UNITS else SPLIT_MIN_BATCH)


def keeps_columns(math):
    """Whether a compiled inference loop keeps its states as columns (`COLUMN_MIN_WIDTH`)."""
    return math.recurrent_kernel.shape[-1] >= COLUMN_MIN_WIDTH


def compiles_by_default(units, batch, training):
    """Whether `jit_compile="auto"` compiles a traced call with known shapes."""
    if not training:
        return True
    return units <= COMPILED_MAX_UNITS or batch >= COMPILED_WIDE_MIN_BATCH


def _compiled(function):
    """`function` compiled with XLA as one cluster."""
    return tf.function(function, jit_compile=True, autograph=False)


def _forward_saving_loop(math, record_store, input_steps, valid_steps, initial, h_out, prev_out=None):
    """The forward loop of training: `(h_seq, final_states, records, prev_seq)`.

    `input_steps` reads the projected inputs of each step, or with
    `math.joined` the raw inputs; `valid_steps` (optional) the mask. `h_out`
    writes the new state `h` of each step; `prev_out` (optional) the state
    entering each step, as the recurrent product sees it (after recurrent
    dropout), for the recurrent kernel's gradient (`prev_seq`, else `None`).
    """
    length = input_steps.length

    def body(t, states, out, prev, records_so_far):
        states = list(states)
        new_states, records = math.step_saving(input_steps.read(t), states)
        if prev_out is not None:
            prev = prev_out.write(prev, t, math.dropped(states[0]))
        if valid_steps is not None:
            valid_t = valid_steps.read(t)
            new_states = [tf.where(valid_t, new, old) for new, old in zip(new_states, states)]
        out = h_out.write(out, t, new_states[0])
        return t + 1, tuple(new_states), out, prev, record_store.save(records_so_far, t, records)

    _, final_states, out, prev, records = tf.while_loop(
        lambda t, *_: t < length,
        body,
        (
            tf.constant(0),
            tuple(initial),
            h_out.empty(),
            tf.zeros([0]) if prev_out is None else prev_out.empty(),
            record_store.empty(length),
        ),
    )
    prev_seq = None if prev_out is None else prev_out.done(prev)
    return h_out.done(out), tuple(final_states), record_store.done(records), prev_seq


def _backward_loop(math, record_store, d_h_steps, valid_steps, d_final, records, write_outs, truncate_every):
    """The backward loop: `(d_initial_states, writes_seq)`.

    `d_h_steps` reads the gradient of each step's output `h`, `valid_steps`
    (optional) the mask; `write_outs` write each of the step's `writes`.
    """
    length = d_h_steps.length

    def body(t, state_grads, records, write_arrays):
        state_grads = list(state_grads)
        state_grads[0] = state_grads[0] + d_h_steps.read(t)
        records, records_t = record_store.load(records, t)
        if valid_steps is not None:
            # Masked step: the state passed through unchanged, and so does
            # its gradient; the step itself gets none.
            valid_t = valid_steps.read(t)
            zero = tf.zeros_like(state_grads[0])
            through = [tf.where(valid_t, g, zero) for g in state_grads]
            carried = [tf.where(valid_t, zero, g) for g in state_grads]
            prev_grads, writes = math.backward_step(through, records_t)
            prev_grads = [p + c for p, c in zip(prev_grads, carried)]
        else:
            prev_grads, writes = math.backward_step(state_grads, records_t)
        if truncate_every is not None:
            # A chunk starts at this step: its incoming states are constants,
            # so no gradient reaches the previous chunk.
            cut = _chunk_start(t, truncate_every)
            prev_grads = [tf.where(cut, tf.zeros_like(g), g) for g in prev_grads]
        write_arrays = tuple(o.write(a, t, w) for o, a, w in zip(write_outs, write_arrays, writes))
        return t - 1, tuple(prev_grads), records, write_arrays

    _, d_initial, _, write_arrays = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (length - 1, tuple(d_final), records, tuple(o.empty() for o in write_outs)),
    )
    return tuple(d_initial), tuple(o.done(a) for o, a in zip(write_outs, write_arrays))


def run_recurrence(math, inputs, kernel, input_bias, initial_states, valid=None,
                   truncate_every=None, save_for_gradient=True, jit_compile=False, backwards=False):
    """Run a recurrence over batch-major `inputs`, with a hand-written gradient.

    Args:
        math: A `_RecurrenceMath` holding the recurrent weights (tensors).
        inputs: `(batch, time, features)` (after input dropout).
        kernel, input_bias: The input weights.
        initial_states: List of `(batch, units)` tensors.
        valid: Optional boolean `(batch, time, 1)`, aligned with `inputs`;
            `False` carries the states over unchanged.
        truncate_every: Optional positive int k: no gradient flows into the
            states entering steps k, 2k, ... (processing order).
        save_for_gradient: If `True` (training), the forward loop saves the
            per-step derivative factors for the backward loop. If `False`
            (inference), it saves nothing; a gradient taken anyway runs the
            saving forward loop again first, then the same backward loop.
        jit_compile: If `True`, each loop is compiled with XLA as one
            cluster; the weight-gradient products stay outside, as
            TensorFlow's own kernels.
        backwards: Process the steps from the last to the first.

    Returns:
        `(h_seq, final_states)`: the carried first state (`h`) at every
        step, `(batch, time, units)` in processing order, and the list of
        final states.

    Graph loops run time-major (each step's slice contiguous): `inputs`
    are transposed (and reversed, `backwards`) first and the outputs
    transposed back (`_TimeMajorLoops`). Compiled loops read and write the
    batch-major tensors in place (`_BatchMajorLoops`), which saves those
    copies: 7% of an LSTM forward pass at 256 units, 30% at 32 units.
    """
    recurrent_kernel = math.recurrent_kernel
    recurrent_bias = math.recurrent_bias
    state_count = math.state_count
    input_bias_given = input_bias is not None

    @tf.custom_gradient
    def recurrence(inputs, kernel, recurrent_kernel, *rest):
        # `rest` = initial states, then the input and recurrent biases that exist.
        initial = tuple(_cut(s) for s in rest[:state_count])
        biases = list(rest[state_count:])
        input_bias = biases.pop(0) if input_bias_given else None
        # The loops see only values that no tape follows (see `detached`).
        x, w, b = _cut(inputs), _cut(kernel), _cut(input_bias)
        # Compiled loops project each step's inputs themselves, joined with
        # the recurrent product (see `_RecurrenceMath.preactivation`).
        inner = math.detached(w, b, joined=bool(jit_compile))
        # One part (the whole batch), or its two halves (see `splits_batch`):
        # (loops, initial states, the part's rows of a batch-major tensor).
        parts = []
        for rows in _batch_parts(x, bool(jit_compile) and splits_batch(inner, x, save_for_gradient)):
            take = _rows_taker(rows)
            if jit_compile:
                loops = _BatchMajorLoops(inner.rows(rows), take(x), take(valid), backwards)
            else:
                loops = _TimeMajorLoops(inner, x, w, b, valid, backwards)
            parts.append((loops, tuple(take(s) for s in initial), take))

        if save_for_gradient:
            results = [loops.forward_saving(start) for loops, start, _ in parts]
            saved = [result[2] for result in results]
        else:
            results = [loops.forward(start) for loops, start, _ in parts]
            saved = None
        h_seq = _join_rows([result[0] for result in results])
        final_states = tuple(_join_rows(list(states)) for states in zip(*(result[1] for result in results)))

        def gradient(d_h_seq, *d_final_extra):
            # (No `nonlocal`: AutoGraph, converting a caller's code, breaks it.)
            what_was_saved = saved
            if what_was_saved is None:
                what_was_saved = [loops.forward_saving(start)[2] for loops, start, _ in parts]
            if d_h_seq is None:
                d_h_seq = tf.zeros_like(h_seq)
            d_final = [tf.zeros_like(final_states[0])]
            for index, d in enumerate(d_final_extra):
                d_final.append(tf.zeros_like(final_states[index + 1]) if d is None else d)
            # Per part: (d_inputs, d_initial..., d_kernel, d_recurrent_kernel,
            # d_input_bias, d_recurrent_bias).
            part_grads = []
            for (loops, start, take), part_saved in zip(parts, what_was_saved):
                d_initial, writes_seq = loops.backward(
                    take(d_h_seq), tuple(take(d) for d in d_final), part_saved, truncate_every
                )
                d_projected, d_recurrent_kernel, d_recurrent_bias = loops.math.finish(
                    list(writes_seq), loops.previous_states(start, part_saved)
                )
                d_inputs, d_kernel, d_input_bias = _input_gradients(
                    d_projected, loops.inputs, w, input_bias is not None
                )
                part_grads.append(
                    (loops.input_gradient(d_inputs), *d_initial, d_kernel, d_recurrent_kernel,
                     d_input_bias, d_recurrent_bias)
                )
            joined = [_join_rows(list(g)) for g in zip(*(p[: 1 + state_count] for p in part_grads))]
            summed = [None if g[0] is None else tf.add_n(list(g)) for g in zip(*(p[1 + state_count:] for p in part_grads))]
            d_inputs, d_initial = joined[0], joined[1:]
            d_kernel, d_recurrent_kernel, d_input_bias, d_recurrent_bias = summed
            grads = [d_inputs, d_kernel, d_recurrent_kernel, *d_initial]
            if input_bias is not None:
                grads.append(d_input_bias)
            if recurrent_bias is not None:
                grads.append(d_recurrent_bias)
            return grads

        return (h_seq, *final_states[1:]), gradient

    args = [inputs, kernel, recurrent_kernel, *initial_states]
    if input_bias is not None:
        args.append(input_bias)
    if recurrent_bias is not None:
        args.append(recurrent_bias)
    outputs = recurrence(*args)
    # The static shape, for graph optimisations after the layer: TensorFlow's
    # graph optimiser cannot see through the compiled loops' outputs.
    h_seq = tf.ensure_shape(outputs[0], [inputs.shape[0], inputs.shape[1], math.units])
    return h_seq, [h_seq[:, -1], *outputs[1:]]


class _TimeMajorLoops:
    """The loops of one call as graph loops over time-major sequences.

    The inputs (and mask) are transposed to time-major, and reversed when
    going backwards, once; training projects all steps' inputs with one
    product before the loop.
    """

    def __init__(self, math, x, kernel, input_bias, valid, backwards):
        self.math = math
        self.kernel, self.input_bias = kernel, input_bias
        self.backwards = backwards
        self.record_store = _ListRecords(x.dtype, math.record_count)
        self.x = x
        self.valid = None if valid is None else self._time_major(valid)
        self._x_tm = None

    def _time_major(self, sequence):
        """`(batch, time, ...)` -> `(time, batch, ...)` in processing order."""
        sequence = _swap_time_batch(sequence)
        return tf.reverse(sequence, [0]) if self.backwards else sequence

    @property
    def inputs(self):
        """The inputs in the loops' layout and order (as the weight gradients pair them with the writes)."""
        if self._x_tm is None:
            self._x_tm = self._time_major(self.x)
        return self._x_tm

    def _valid_steps(self):
        return None if self.valid is None else _Steps(self.valid)

    def forward(self, initial):
        h_seq, final_states = _forward_only(
            self.math, _Steps(self.inputs), self.kernel, self.input_bias, initial, self._valid_steps()
        )
        return _swap_time_batch(h_seq), final_states

    def forward_saving(self, initial):
        """`(h_seq, final_states, saved)`; `saved` is what `backward` needs."""
        # The projection is made here, so that it is freed after the
        # forward loop: the backward pass needs only the inputs.
        steps = _Steps(_project(self.inputs, self.kernel, self.input_bias))
        h_seq, final_states, records, _ = _forward_saving_loop(
            self.math, self.record_store, steps, self._valid_steps(), initial, steps.outputs(self.math.units)
        )
        return _swap_time_batch(h_seq), final_states, (records, h_seq)

    def backward(self, d_h_seq, d_final, saved, truncate_every):
        d_h_steps = _Steps(_swap_time_batch(d_h_seq))
        outs = [d_h_steps.outputs(width) for width in self.math.write_widths()]
        return _backward_loop(
            self.math, self.record_store, d_h_steps, self._valid_steps(), d_final, saved[0], outs, truncate_every
        )

    def previous_states(self, initial, saved):
        return _ShiftedStates(self.math.dropped(initial[0]), self.math.dropped(saved[1]))

    def input_gradient(self, d_inputs):
        """`d_inputs` (time-major, processing order) in the layout and order of the inputs."""
        return _swap_time_batch(tf.reverse(d_inputs, [0]) if self.backwards else d_inputs)


class _BatchMajorLoops:
    """The loops of one call compiled with XLA, over the batch-major sequences in place.

    A backwards recurrence reads its inputs from the end. The outputs `h`
    are written in processing order; the states entering each step and the
    backward loop's writes in the inputs' order, so that the weight
    gradients pair them with the inputs as they are.
    """

    def __init__(self, math, x, valid, backwards):
        self.math = math
        self.inputs, self.valid = x, valid  # already in the loops' layout and order
        self.backwards = backwards
        self.record_store = _DenseRecords(x.dtype, math.record_count)

    def _valid_steps(self, valid):
        return None if valid is None else _Steps(valid, 1, self.backwards)

    def _program(self, key, make_loop):
        """The loop `make_loop()` returns, compiled; shared by every part of the batch with the same math.

        The halves of a batch (`splits_batch`) then call one compiled
        program, compiled once for both when their shapes agree; a part
        with its own math (its rows of a recurrent dropout mask) has its own.
        `make_loop` runs only for the first part.
        """
        programs = self.math.programs
        key = (key, self.backwards)
        if key not in programs:
            programs[key] = _compiled(make_loop())
        return programs[key]

    def forward(self, initial):
        loop = self._loop_in_columns() if keeps_columns(self.math) else self._loop_in_rows()
        return loop(self.inputs, initial, self.valid)

    def _loop_in_rows(self):
        def loop(x, initial, valid):
            return _forward_only(self.math, _Steps(x, 1, self.backwards), None, None, initial, self._valid_steps(valid))

        return self._program("forward in rows", lambda: loop)

    def _loop_in_columns(self):
        """The compiled inference loop with states as columns, `(units, batch)` (see `COLUMN_MIN_WIDTH`)."""
        return self._program("forward in columns", self._make_loop_in_columns)

    def _make_loop_in_columns(self):
        """The inputs (and mask) are transposed to `(time, n, batch)` in processing order inside the compiled
        program, and the outputs back; the transposed kernels are made here, once for the parts that share it."""
        math = self.math.in_columns()
        backwards = self.backwards

        def columns(sequence):
            sequence = tf.transpose(sequence, [1, 2, 0])
            return tf.reverse(sequence, [0]) if backwards else sequence

        def loop(x, initial, valid):
            h_columns, final_states = _forward_only(
                math,
                _Steps(columns(x)),
                None,
                None,
                [tf.transpose(state) for state in initial],
                None if valid is None else _Steps(columns(valid)),
            )
            return tf.transpose(h_columns, [2, 0, 1]), tuple(tf.transpose(state) for state in final_states)

        return loop

    def forward_saving(self, initial):
        def loop(x, initial, valid):
            units = self.math.units
            h_seq, final_states, records, prev_seq = _forward_saving_loop(
                self.math,
                self.record_store,
                _Steps(x, 1, self.backwards),
                self._valid_steps(valid),
                initial,
                _BatchMajorOutputs(x, units),
                _BatchMajorOutputs(x, units, self.backwards),
            )
            return h_seq, final_states, (records, prev_seq)

        return self._program("saving forward", lambda: loop)(self.inputs, initial, self.valid)

    def backward(self, d_h_seq, d_final, saved, truncate_every):
        def loop(d_h_seq, d_final, records, valid):
            outs = [_BatchMajorOutputs(d_h_seq, width, self.backwards) for width in self.math.write_widths()]
            return _backward_loop(
                self.math, self.record_store, _Steps(d_h_seq, 1), self._valid_steps(valid), d_final, records, outs,
                truncate_every,
            )

        return self._program(("backward", truncate_every), lambda: loop)(d_h_seq, d_final, saved[0], self.valid)

    def previous_states(self, initial, saved):
        return _PreviousStates(saved[1])

    def input_gradient(self, d_inputs):
        return d_inputs


def _forward_only(math, input_steps, kernel, input_bias, initial_states, valid_steps):
    """The recurrence with nothing saved for the gradient: `(h_seq, final_states)`.

    `input_steps` and `valid_steps` (optional) are `_Steps`; `h_seq` has the
    layout of `input_steps`, in processing order.

    Each step projects its own inputs (`x_t @ kernel + input_bias`, a small
    product; joined with the recurrent one in compiled loops) inside the
    loop. Projecting all steps at once first, as training does, writes the
    whole projected sequence to memory and reads it back a step at a time;
    without a backward pass to share it with, the per-step product measured
    8 to 30% faster at 256 units (compiled loops or not).
    """
    length = input_steps.length

    def projected(t):
        if math.joined:
            return input_steps.read(t)  # the step projects them itself
        p_t = tf.matmul(input_steps.read(t), kernel)
        return p_t if input_bias is None else tf.nn.bias_add(p_t, input_bias)

    outputs = input_steps.outputs(math.units)

    def body(t, states, out):
        states = list(states)
        new_states = math.step(projected(t), states)
        if valid_steps is not None:
            valid_t = valid_steps.read(t)
            new_states = [tf.where(valid_t, new, old) for new, old in zip(new_states, states)]
        return t + 1, tuple(new_states), outputs.write(out, t, new_states[0])

    _, final_states, out = tf.while_loop(
        lambda t, *_: t < length,
        body,
        (tf.constant(0), tuple(initial_states), outputs.empty()),
    )
    return outputs.done(out), tuple(final_states)


# --------------------------------------------------------------------------
# Whole-layer entry point.
# --------------------------------------------------------------------------
def fallback_reason(cell, sequences, math_class):
    """Why the fused path cannot run this call (a sentence), or `None` if it can."""
    if math_class is None:
        return f"cell {type(cell).__name__} has no fused implementation"
    dtype = str(getattr(cell, "compute_dtype", None))
    if dtype not in SUPPORTED_DTYPES:
        return f"compute dtype {dtype} is not one of {SUPPORTED_DTYPES}"
    if keras.backend.standardize_dtype(sequences.dtype) != dtype:
        return f"inputs of dtype {sequences.dtype} differ from the compute dtype {dtype}"
    if len(sequences.shape) != 3:
        return f"inputs of rank {len(sequences.shape)}, expected 3"
    if resolve_activation(cell.activation) is None:
        return f"activation {cell.activation!r} has no known derivative"
    recurrent_activation = getattr(cell, "recurrent_activation", None)
    if math_class is not _SimpleRNNMath and resolve_activation(recurrent_activation) is None:
        return f"recurrent_activation {recurrent_activation!r} has no known derivative"
    return None


def fused_inner_loop(
    cell,
    math_class,
    sequences,
    initial_state,
    mask,
    training,
    go_backwards,
    return_sequences,
    zero_output_for_mask,
    truncate_every,
    jit_compile=False,
):
    """The fused equivalent of `keras.layers.RNN.inner_loop` for our cells.

    Returns `(last_output, outputs, final_states)` as `keras.layers.RNN`
    expects: `outputs` is `(batch, time, units)` in processing order when
    `return_sequences`, else `last_output` with a time axis of one.
    """
    x = tf.convert_to_tensor(sequences)
    initial_state = [tf.convert_to_tensor(s) for s in initial_state]
    units = cell.units

    # One dropout mask per sequence, drawn as the cell path draws it (input
    # mask first, then recurrent mask, from the cell's seed generator), so
    # both paths drop the same units for the same seed.
    cell.reset_dropout_masks()
    input_mask, recurrent_mask = cell.dropout_masks(x[:, 0], initial_state[0], training)
    if input_mask is not None:
        x = x * input_mask[:, None, :]

    kernel = tf.convert_to_tensor(cell.kernel)
    recurrent_kernel = tf.convert_to_tensor(cell.recurrent_kernel)
    input_bias = recurrent_bias = None
    if cell.use_bias:
        bias = tf.convert_to_tensor(cell.bias)
        if math_class is _GRUMath:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias


    valid = None
    if mask is not None:
        valid = tf.cast(mask, tf.bool)[:, :, None]

    math = math_class(
        units,
        recurrent_kernel,
        recurrent_bias,
        recurrent_mask,
        resolve_activation(cell.activation),
        resolve_activation(getattr(cell, "recurrent_activation", None)),
    )
    h_seq, final_states = run_recurrence(
        math,
        x,
        kernel,
        input_bias,
        initial_state,
        valid=valid,
        truncate_every=truncate_every,
        save_for_gradient=bool(training),
        jit_compile=jit_compile,
        backwards=go_backwards,
    )

    # Outputs at masked steps: Keras repeats the previous output (zeros
    # before the first valid step), which equals the carried state once a
    # valid step has been seen; with `zero_output_for_mask` they are zeros.
    # `h_seq` is batch-major in processing order.
    if valid is None:
        output_valid = None
    else:
        if go_backwards:
            valid = tf.reverse(valid, [1])
        if zero_output_for_mask:
            output_valid = valid
        else:
            output_valid = tf.cumsum(tf.cast(valid, tf.int32), axis=1) > 0
    if return_sequences:
        outputs = h_seq
        if output_valid is not None:
            outputs = tf.where(output_valid, outputs, tf.zeros_like(outputs))
        last_output = outputs[:, -1]
    else:
        last_output = h_seq[:, -1]
        if output_valid is not None:
            last_output = tf.where(output_valid[:, -1], last_output, tf.zeros_like(last_output))
        outputs = last_output[:, None, :]
    return last_output, outputs, final_states


def math_class_for(cell, cell_classes):
    """The `_RecurrenceMath` class of one of our cells, or `None`.

    Only the exact classes qualify: a subclass may change the step.
    """
    simple_rnn_cell, lstm_cell, gru_cell = cell_classes
    kind = type(cell)
    if kind is simple_rnn_cell:
        return _SimpleRNNMath
    if kind is lstm_cell:
        return _LSTMMath
    if kind is gru_cell:
        return _GRUMath if cell.reset_after else _GRUResetBeforeMath
    return None
