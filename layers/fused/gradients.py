"""The weight and input gradients, formed after the backward loop as large products over all steps.

The backward loop saves the gradient of the gate pre-activations of every
step; the gradients of the weights are then one matrix product each over
all steps (`H_prev^T @ dZ`, `X^T @ dZ`), and that of the inputs
`dZ @ kernel^T`.
"""

from typing import NamedTuple

import tensorflow as tf


class RecurrentGradients(NamedTuple):
    """What a step math's `finish` returns.

    `projected`: the gradient of the projected inputs (a tensor, or a
    `SplitProjectionGradient`); `recurrent_kernel` and `recurrent_bias`
    (`None` for cells without a separate recurrent bias): those weights';
    `extra`: those of the math's `extra_weights`, in their order.
    """

    projected: object
    recurrent_kernel: tf.Tensor
    recurrent_bias: tf.Tensor | None
    extra: tuple = ()


class InputGradients(NamedTuple):
    """The gradients of the inputs, the kernel and the input bias (`None` without one)."""

    inputs: tf.Tensor
    kernel: tf.Tensor
    bias: tf.Tensor | None


def flat_matmul_t(a, b):
    """`sum_t a[t]^T @ b[t]` for time-major `a` (T, B, m), `b` (T, B, n), as one product.

    (Splitting `b` into column blocks was slower with TensorFlow 2.21; see
    layers/README.md#weight-gradient-products.)
    """
    a2 = tf.reshape(a, [-1, a.shape[-1] if a.shape[-1] is not None else tf.shape(a)[-1]])
    b2 = tf.reshape(b, [-1, b.shape[-1] if b.shape[-1] is not None else tf.shape(b)[-1]])
    return tf.matmul(a2, b2, transpose_a=True)


class ShiftedStates:
    """The states entering each step of a time-major loop: `first`, then `rest[:-1]`.

    `first` is the initial state and `rest` the loop's output states (both
    after recurrent dropout); slicing along time shares memory,
    concatenating would copy.
    """

    def __init__(self, first, rest):
        self.first, self.rest = first, rest

    def matmul_t(self, b):
        """`sum_t prev[t]^T @ b[t]` for time-major `b`."""
        return tf.matmul(self.first, b[0], transpose_a=True) + flat_matmul_t(self.rest[:-1], b[1:])


class PreviousStates:
    """The states entering each step, written by the loop in the layout of `b`."""

    def __init__(self, sequence):
        self.sequence = sequence

    def matmul_t(self, b):
        """`sum_t prev[t]^T @ b[t]`."""
        return flat_matmul_t(self.sequence, b)


class SplitProjectionGradient:
    """The gradient of the projected inputs, given as two parts.

    Columns `[:split]` are those of `leading` (whose other columns belong to
    something else), columns `[split:]` are `trailing`. The input weights'
    gradients are formed from the parts directly, avoiding a concatenation
    of two whole sequences.
    """

    def __init__(self, leading, trailing, split):
        self.leading, self.trailing, self.split = leading, trailing, split


def input_gradients(d_projected, inputs, kernel, with_bias):
    """`InputGradients` from the projected inputs' gradient.

    One matrix product over all steps each; a product nobody uses is pruned
    from the graph (e.g. `d_inputs` when the inputs are data).
    """
    flat_inputs = tf.reshape(inputs, [-1, inputs.shape[-1]])

    def flat(sequence):
        return tf.reshape(sequence, [-1, sequence.shape[-1]])

    if isinstance(d_projected, SplitProjectionGradient):
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
    return InputGradients(tf.reshape(d_flat_inputs, tf.shape(inputs)), d_kernel, d_bias)
