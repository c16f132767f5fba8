"""Activations whose derivative is written in terms of their output.

The fused path supports a cell's activation only if it is in this table:
the forward loop saves derivative factors computed from each activation's
output, so the backward loop never needs the pre-activations.
"""

import tensorflow as tf
from keras import activations, ops


class Activation:
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


TANH = Activation(tf.tanh, lambda y: 1.0 - y * y)
SIGMOID = Activation(tf.sigmoid, lambda y: y * (1.0 - y))
RELU = Activation(tf.nn.relu, lambda y: tf.cast(y > 0.0, y.dtype))
LINEAR = Activation(tf.identity, lambda y: None)
HARD_SIGMOID = Activation(_hard_sigmoid, _hard_sigmoid_derivative)

_KNOWN_ACTIVATIONS = {
    activations.tanh: TANH,
    ops.tanh: TANH,
    tf.tanh: TANH,
    tf.nn.tanh: TANH,
    activations.sigmoid: SIGMOID,
    ops.sigmoid: SIGMOID,
    tf.sigmoid: SIGMOID,
    tf.nn.sigmoid: SIGMOID,
    activations.relu: RELU,
    ops.relu: RELU,
    tf.nn.relu: RELU,
    activations.linear: LINEAR,
    activations.hard_sigmoid: HARD_SIGMOID,
    ops.hard_sigmoid: HARD_SIGMOID,
}


def resolve_activation(function):
    """The `Activation` for a cell's activation function, or `None` if unknown."""
    if function is None:
        return LINEAR
    try:
        return _KNOWN_ACTIVATIONS.get(function)
    except TypeError:  # unhashable callable
        return None
