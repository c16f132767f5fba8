"""The step arithmetic shared by every cell: `RecurrenceMath`, the base of each cell's math.

A math holds the recurrent weights of one call and provides:
  step(x_t, states) -> new_states
      one step before masking (inference: nothing is saved); `x_t` is
      the step's projected inputs, or with `joined` its raw inputs.
  step_saving(x_t, states) -> (new_states, records)
      the same step, also returning what back-propagation needs from it:
      the derivative factors of the step, computed while the operands are
      at hand, so the backward loop only multiplies.
  backward_step(state_grads, records_t) -> (prev_state_grads, writes)
      gradients w.r.t. the step's input states, given the gradients
      w.r.t. its (unmasked) new states; `writes` are the gate
      pre-activation gradients of the step, saved for after the loop.
  finish(writes_seq, previous) -> `RecurrentGradients`
      after the loop, as large matrix products over all steps;
      `previous` (`ShiftedStates` or `PreviousStates`) holds the states
      entering each step.
  write_widths() -> the width of each of the writes.
  sum_widths() -> the width of each further write that the backward loop
      sums over the batch and the steps instead of keeping per step (none
      unless a math says so); `finish` receives the sums after the
      per-step writes.

A math whose cell has weights besides the kernels and biases (gains,
shifts, peepholes, a projection) lists them in `extra_weights`, and
`finish` returns their gradients in `RecurrentGradients.extra`, in that
order. The maths of our cells are in `layers.fused.cell_maths`, those of the
variant cells in `layers.fused.norm_maths` and `layers.fused.gated_maths`.
"""

import copy
from typing import NamedTuple

import tensorflow as tf

from layers.fused import policy
from layers.fused.activations import resolve_activation
from layers.fused.gradients import RecurrentGradients


def cut(x):
    """`x` with no gradient flowing through it (`None` stays `None`)."""
    return None if x is None else tf.stop_gradient(x)


def times(x, factor):
    """`x * factor`, where `factor=None` stands for one."""
    return x if factor is None else x * factor


def _state_product(h, kernel, kernel_t):
    """`h @ kernel` for a step's `[batch, k]` operand; `kernel_t` is `kernel^T`.

    For a large kernel and a small batch (`policy.transposes_product`) it
    is computed as `(kernel^T @ h^T)^T`: TensorFlow's CPU matrix product is
    slower for a short result of a large kernel than for the transposed,
    tall one, by more than the two small transposes cost. The sums are the
    same; only their rounding order may differ.
    """
    if not policy.transposes_product(h.shape[0], kernel.shape[0], kernel.shape[-1]):
        return tf.matmul(h, kernel)
    return tf.transpose(tf.matmul(kernel_t, tf.transpose(h)))


class Bound(NamedTuple):
    """A math for one call of a cell, and the input tensors `run_recurrence` takes with it.

    `inputs` are the call's inputs (after input dropout); `input_bias` is
    added to their projection (`None` for cells whose biases come after a
    normalisation: those are the math's own).
    """

    math: object
    inputs: tf.Tensor
    kernel: tf.Tensor
    input_bias: tf.Tensor | None


def weight(variable):
    """A cell's weight as a tensor (`None` stays `None`)."""
    return None if variable is None else tf.convert_to_tensor(variable)


def cell_arguments(cell, recurrent_bias, recurrent_mask):
    """`RecurrenceMath`'s constructor arguments for a call of `cell`."""
    return (
        cell.units,
        weight(cell.recurrent_kernel),
        recurrent_bias,
        recurrent_mask,
        resolve_activation(cell.activation),
        resolve_activation(getattr(cell, "recurrent_activation", None)),
    )


class ResetBeforeKernels:
    """A GRU math's recurrent kernel as its gates' block and its candidate's (`reset_after=False`).

    With the reset gate applied to the state before the candidate's product,
    the two blocks multiply different operands; their transposes are made
    here, once per call.
    """

    def __init__(self, units, recurrent_kernel, *args, **kwargs):
        super().__init__(units, recurrent_kernel, *args, **kwargs)
        self.kernel_zr = recurrent_kernel[:, : 2 * units]
        self.kernel_h = recurrent_kernel[:, 2 * units :]
        self.kernel_zr_t = tf.transpose(self.kernel_zr)
        self.kernel_h_t = tf.transpose(self.kernel_h)


class RecurrenceMath:
    """The step arithmetic of one call, on its recurrent weights (see the module docstring).

    Subclasses (`layers.fused.cell_maths`) add a cell's `step`,
    `step_saving` and `backward_step`, and set how many states and records
    a step has.
    """

    state_count = 1
    record_count = 1
    # Whether the compiled inference loop may keep the states as columns (`in_columns`).
    columns_supported = True
    # Weights besides the kernels and biases, whose gradients `finish` returns.
    extra_weights = ()

    def __init__(self, units, recurrent_kernel, recurrent_bias, recurrent_mask, activation, recurrent_activation):
        self.units = units
        # The width of the first state, the output (a projection's `proj_units`).
        self.output_width = units
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
        # The compiled loops made for this math (see `BatchMajorLoops._program`).
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
            cut(self.recurrent_kernel),
            cut(self.recurrent_bias),
            cut(self.recurrent_mask),
            self.activation,
            self.recurrent_activation,
            **self.variant_arguments(cut),
        )
        if joined:
            math.joined = True
            math.join(cut(kernel), cut(input_bias))
        return math

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        """A `Bound` math of this class for a call of `cell` on `inputs` (after input dropout)."""
        input_bias, recurrent_bias = cls.split_bias(cell)
        return Bound(
            cls(*cell_arguments(cell, recurrent_bias, recurrent_mask)), inputs, weight(cell.kernel), input_bias
        )

    @staticmethod
    def split_bias(cell):
        """The cell's `(input_bias, recurrent_bias)` tensors (`None` where absent)."""
        return weight(cell.bias) if cell.use_bias else None, None

    def variant_arguments(self, transform):
        """A variant math's further constructor arguments, its weights passed through `transform`."""
        return {}

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
        (see layers/README.md#joined-input-and-recurrent-products). The joined
        kernel is made here, once per call: XLA did not hoist a
        concatenation of the weights out of the loop.
        """
        self.joint_kernel = tf.concat([kernel, self.recurrent_kernel], axis=0)
        self.joint_bias = input_bias

    def in_columns(self):
        """This joined math on states and inputs laid out as columns, `(n, batch)`.

        For the compiled inference loop of wide layers (see
        `policy.COLUMN_MIN_WIDTH`): every step product becomes
        `kernel^T @ h`, with the transposed kernels made here, once per call,
        and the gate blocks are rows. Only the step (`step`) is defined in
        this form.
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
        at every width tried (see layers/README.md#transposed-step-products).
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

    def sum_widths(self):
        """The width of each of `backward_step`'s summed writes, which follow its per-step ones."""
        return []

    def finish(self, writes_seq, previous):
        dz = writes_seq[0]
        return RecurrentGradients(dz, previous.matmul_t(dz), None)
