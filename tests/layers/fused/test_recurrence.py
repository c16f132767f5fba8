"""`layers.fused.run_recurrence` called directly: its hand-written gradient inside a caller's `tf.function`."""

import numpy as np
import pytest
import tensorflow as tf

from layers import fused
from layers.fused import activations, cell_maths


@pytest.mark.parametrize("jit_compile", [False, True])
def test_recurrence_gradient_survives_autograph(jit_compile):
    # A caller's `tf.function` converts what it calls with AutoGraph, which
    # must leave the hand-written gradient's closure intact.
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(2, 4, 3)).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(3, 5)).astype("float32"))
    recurrent_kernel = tf.Variable(rng.normal(size=(5, 5)).astype("float32"))
    initial = [tf.zeros((2, 5))]

    def gradients(training):
        with tf.GradientTape() as tape:
            math = cell_maths.SimpleRNNMath(
                5, tf.convert_to_tensor(recurrent_kernel), None, None, activations.TANH, None
            )
            h_seq, _, _ = fused.run_recurrence(
                math,
                inputs,
                tf.convert_to_tensor(kernel),
                None,
                initial,
                options=fused.RecurrenceOptions(save_for_gradient=training, jit_compile=jit_compile),
            )
            loss = tf.reduce_sum(h_seq * h_seq)
        return tape.gradient(loss, [kernel, recurrent_kernel])

    for training in (True, False):
        expected = gradients(training)
        traced = tf.function(gradients, autograph=True)(training)
        for a, b in zip(traced, expected):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
            assert float(tf.reduce_max(tf.abs(a))) > 0
