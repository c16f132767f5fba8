"""Layer normalisation for the cells, with `keras.ops` only.

`layer_normalize` is the arithmetic; `NormWeights` is the small layer that
holds one normalisation's gain `gamma` and shift `beta`, so that a cell's
weights are named as TensorFlow Addons names them
(`layer_norm_lstm_cell/kernel_norm/gamma`). A cell calls `norm.normalize(x)`
inside its step rather than `norm(x)`: the step runs once per time step, and a
plain method keeps Keras's per-call work out of the loop.
"""

import keras
from keras import constraints, initializers, ops, regularizers

from layers._validation import resolve

_HALF_DTYPES = ("float16", "bfloat16")


def positive_epsilon(name, value):
    """`value` as a float if it is a positive number, else raise naming argument `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Received an invalid value for argument `{name}`, expected a positive float, got {value!r}.")
    return float(value)


def layer_normalize(x, gamma, beta, epsilon):
    """`(x - mean) / sqrt(variance + epsilon) * gamma + beta` over the last axis.

    Mean and (biased) variance are those of each row. Half-precision inputs
    are normalised in float32 and returned in their own dtype, as Keras's
    `LayerNormalization` does. `beta` may be `None` (scale only).
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _HALF_DTYPES:
        x = ops.cast(x, "float32")
    mean = ops.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    variance = ops.mean(ops.square(centred), axis=-1, keepdims=True)
    normalized = centred * ops.rsqrt(variance + epsilon) * ops.cast(gamma, x.dtype)
    if beta is not None:
        normalized = normalized + ops.cast(beta, x.dtype)
    return ops.cast(normalized, dtype) if dtype in _HALF_DTYPES else normalized


class NormWeights(keras.layers.Layer):
    """Gain `gamma` and shift `beta` of one layer normalisation inside a cell.

    Built by its cell (`build((None, width))`), never serialised on its own:
    the cell's config recreates it.
    """

    def __init__(
        self,
        epsilon,
        gamma_initializer="ones",
        beta_initializer="zeros",
        gamma_regularizer=None,
        beta_regularizer=None,
        gamma_constraint=None,
        beta_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.beta_constraint = constraints.get(beta_constraint)

    def build(self, input_shape):
        width = input_shape[-1]
        self.gamma = self.add_weight(
            shape=(width,),
            name="gamma",
            initializer=self.gamma_initializer,
            regularizer=self.gamma_regularizer,
            constraint=self.gamma_constraint,
        )
        self.beta = self.add_weight(
            shape=(width,),
            name="beta",
            initializer=self.beta_initializer,
            regularizer=self.beta_regularizer,
            constraint=self.beta_constraint,
        )
        self.built = True

    def normalize(self, x):
        return layer_normalize(x, self.gamma, self.beta, self.epsilon)


class NormArguments:
    """The normalisation arguments of the layer-normalised LSTM and GRU cells.

    `norm_gamma_initializer`, `norm_beta_initializer` and `norm_epsilon`, as
    TensorFlow Addons' `LayerNormLSTMCell` names them; `make_norm(name)` gives
    a `NormWeights` with them.
    """

    def _set_norm_arguments(self, norm_gamma_initializer, norm_beta_initializer, norm_epsilon):
        self.norm_gamma_initializer = resolve("norm_gamma_initializer", initializers.get, norm_gamma_initializer)
        self.norm_beta_initializer = resolve("norm_beta_initializer", initializers.get, norm_beta_initializer)
        self.norm_epsilon = positive_epsilon("norm_epsilon", norm_epsilon)

    def make_norm(self, name):
        return NormWeights(
            self.norm_epsilon,
            gamma_initializer=self.norm_gamma_initializer,
            beta_initializer=self.norm_beta_initializer,
            name=name,
            dtype=self.dtype_policy,
        )

    def norm_config(self):
        return {
            "norm_gamma_initializer": initializers.serialize(self.norm_gamma_initializer),
            "norm_beta_initializer": initializers.serialize(self.norm_beta_initializer),
            "norm_epsilon": self.norm_epsilon,
        }
