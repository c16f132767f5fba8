"""Activations with derivatives in terms of their output, in `jax.numpy`.

The fused JAX path supports a cell's activation only if it is in this
table: the forward scan saves derivative factors computed from each
activation's output, so the backward scan never needs the pre-activations.
The forward functions are the ones Keras's activations call on the JAX
backend, so the forward values equal the cell path's.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from keras import activations, ops


@dataclasses.dataclass(frozen=True)
class Activation:
    """An activation whose derivative is a function of its output `y`.

    `derivative` is `None` for the identity (a factor of one), so the caller
    can skip a multiplication.
    """

    name: str
    forward: Callable
    derivative: Callable | None


def _hard_sigmoid_derivative(y):
    return jnp.where((y > 0.0) & (y < 1.0), jnp.asarray(1.0 / 6.0, y.dtype), jnp.zeros((), y.dtype))


TANH = Activation("tanh", jnp.tanh, lambda y: 1.0 - y * y)
SIGMOID = Activation("sigmoid", jax.nn.sigmoid, lambda y: y * (1.0 - y))
RELU = Activation("relu", jax.nn.relu, lambda y: (y > 0.0).astype(y.dtype))
LINEAR = Activation("linear", lambda x: x, None)
HARD_SIGMOID = Activation("hard_sigmoid", jax.nn.hard_sigmoid, _hard_sigmoid_derivative)

_KNOWN = {
    activations.tanh: TANH,
    ops.tanh: TANH,
    jnp.tanh: TANH,
    activations.sigmoid: SIGMOID,
    ops.sigmoid: SIGMOID,
    jax.nn.sigmoid: SIGMOID,
    activations.relu: RELU,
    ops.relu: RELU,
    jax.nn.relu: RELU,
    activations.linear: LINEAR,
    activations.hard_sigmoid: HARD_SIGMOID,
    ops.hard_sigmoid: HARD_SIGMOID,
    jax.nn.hard_sigmoid: HARD_SIGMOID,
}


def resolve_activation(function):
    """The `Activation` for a cell's activation function, or `None` if unknown."""
    if function is None:
        return LINEAR
    try:
        return _KNOWN.get(function)
    except TypeError:  # unhashable callable
        return None


def times(x, factor):
    """`x * factor`, where `factor=None` stands for one."""
    return x if factor is None else x * factor
