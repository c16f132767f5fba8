"""LSTM variants: `PeepholeLSTMCell` and `ProjectionLSTMCell`.

The optional parts of the LSTM that the fused TFLite kernel
(`UNIDIRECTIONAL_SEQUENCE_LSTM`) implements: diagonal peephole connections,
a coupled input-forget gate (CIFG), a projection of the output (LSTMP), and
clipping of the cell state and of the projection. `PeepholeLSTMCell` computes
what TensorFlow Addons' cell of that name computes, with its weight names.
Both follow `LSTMCell`'s contract and dropout, with `keras.ops` only.
"""

import keras
from keras import constraints, initializers, ops, regularizers

from layers._validation import positive_int, resolve
from layers.cells import PACKAGE, LSTMCell


def _clip_value(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a positive float or None, got {value!r}."
        )
    return float(value)


class _GatedLSTMCell(LSTMCell):
    """`LSTMCell` with optional peepholes, coupled input-forget gate, clipping and projection."""

    def __init__(
        self,
        units,
        use_peepholes=False,
        coupled_input_forget_gate=False,
        proj_units=None,
        cell_clip=None,
        proj_clip=None,
        projection_initializer="glorot_uniform",
        projection_regularizer=None,
        projection_constraint=None,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.use_peepholes = bool(use_peepholes)
        self.coupled_input_forget_gate = bool(coupled_input_forget_gate)
        self.proj_units = None if proj_units is None else positive_int("proj_units", proj_units)
        self.cell_clip = _clip_value("cell_clip", cell_clip)
        self.proj_clip = _clip_value("proj_clip", proj_clip)
        if self.proj_clip is not None and self.proj_units is None:
            raise ValueError(
                f"Received `proj_clip={proj_clip!r}` without `proj_units`; the clip applies to the "
                "projection, so pass `proj_units` too or leave `proj_clip=None`."
            )
        self.projection_initializer = resolve("projection_initializer", initializers.get, projection_initializer)
        self.projection_regularizer = resolve("projection_regularizer", regularizers.get, projection_regularizer)
        self.projection_constraint = resolve("projection_constraint", constraints.get, projection_constraint)
        if self.coupled_input_forget_gate:  # gates f, c, o
            self._gate_count, self._forget_block = 3, 0
        self.output_size = self._recurrent_units

    @property
    def _recurrent_units(self):
        return self.units if self.proj_units is None else self.proj_units

    @property
    def state_size(self):
        return [self._recurrent_units, self.units]

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_peepholes:
            gates = ("forget", "output") if self.coupled_input_forget_gate else ("input", "forget", "output")
            for gate in gates:
                weight = self.add_weight(
                    shape=(self.units,), name=f"{gate}_gate_peephole_weights", initializer=self.kernel_initializer
                )
                setattr(self, f"{gate}_gate_peephole_weights", weight)
        if self.proj_units is not None:
            self.projection_kernel = self.add_weight(
                shape=(self.units, self.proj_units),
                name="projection_kernel",
                initializer=self.projection_initializer,
                regularizer=self.projection_regularizer,
                constraint=self.projection_constraint,
            )

    def _carry_and_output(self, z, c_tm1):
        if self.coupled_input_forget_gate:
            z_f, z_c, z_o = ops.split(z, 3, axis=-1)
        else:
            z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        if self.use_peepholes:
            z_f = z_f + self.forget_gate_peephole_weights * c_tm1
        f = self.recurrent_activation(z_f)
        if self.coupled_input_forget_gate:
            i = 1.0 - f
        else:
            if self.use_peepholes:
                z_i = z_i + self.input_gate_peephole_weights * c_tm1
            i = self.recurrent_activation(z_i)
        c = f * c_tm1 + i * self.activation(z_c)
        if self.cell_clip is not None:
            c = ops.clip(c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            z_o = z_o + self.output_gate_peephole_weights * c
        return c, self.recurrent_activation(z_o)

    def step(self, inputs, states, recurrent_mask):
        h, (_, c) = super().step(inputs, states, recurrent_mask)
        if self.proj_units is not None:
            h = ops.matmul(h, self.projection_kernel)
            if self.proj_clip is not None:
                h = ops.clip(h, -self.proj_clip, self.proj_clip)
        return h, [h, c]


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeepholeLSTMCell(_GatedLSTMCell):
    """Cell of an LSTM with diagonal peephole connections, as TensorFlow Addons' `PeepholeLSTMCell`.

    With gates in the order i, f, c, o (as `LSTMCell`) and peephole weight
    vectors `p_i`, `p_f`, `p_o` (elementwise products):

        i = recurrent_activation(x W_i + h U_i + b_i + p_i * c_{t-1})
        f = recurrent_activation(x W_f + h U_f + b_f + p_f * c_{t-1})
        c_t = f * c_{t-1} + i * activation(x W_c + h U_c + b_c)
        o = recurrent_activation(x W_o + h U_o + b_o + p_o * c_t)
        h_t = o * activation(c_t)

    The output gate peeks at the new cell state `c_t`, the other two at the
    previous one. With the peephole weights zero it is `LSTMCell`. Weights, in
    Addons' order and names: `kernel`, `recurrent_kernel`, `bias` (if
    `use_bias`), `input_gate_peephole_weights`, `forget_gate_peephole_weights`,
    `output_gate_peephole_weights` (each `(units,)`, initialised with
    `kernel_initializer` as in Addons).

    Reference: Gers & Schmidhuber, "Recurrent nets that time and count",
    IJCNN 2000; Sak, Senior & Beaufays, "Long short-term memory recurrent
    neural network architectures for large scale acoustic modeling",
    Interspeech 2014.

    Args:
        units, activation, recurrent_activation, use_bias, initializers,
        unit_forget_bias, regularizers, constraints, dropout,
        recurrent_dropout, seed: As in `LSTMCell`.

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List `[h, c]`, each of shape `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(h, [h, c])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> rnn = keras.layers.RNN(layers.PeepholeLSTMCell(4))
    >>> tuple(rnn(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    >>> [w.name for w in rnn.weights][3:]
    ['input_gate_peephole_weights', 'forget_gate_peephole_weights', 'output_gate_peephole_weights']
    """

    def __init__(self, units, **kwargs):
        # Saved configs of this class carry none of the options it fixes.
        for fixed in ProjectionLSTMCell.OPTIONS:
            if fixed in kwargs:
                raise TypeError(
                    f"PeepholeLSTMCell got argument `{fixed}`; it always has peepholes and no other option. "
                    "Use `layers.ProjectionLSTMCell` for a projection, a coupled input-forget gate or clipping."
                )
        super().__init__(units, use_peepholes=True, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ProjectionLSTMCell(_GatedLSTMCell):
    """Cell of an LSTM with a projection layer (LSTMP), optional peepholes and a coupled input-forget gate.

    The optional parts of TFLite's fused LSTM kernel. With gates i, f, c, o,
    `r_{t-1}` the previous output and optional peephole vectors `p_i`, `p_f`,
    `p_o` (as `PeepholeLSTMCell`; absent unless `use_peepholes`):

        i = recurrent_activation(x W_i + r_{t-1} U_i + b_i + p_i * c_{t-1})
            (with coupled_input_forget_gate: i = 1 - f, and no W_i, U_i, b_i, p_i)
        f = recurrent_activation(x W_f + r_{t-1} U_f + b_f + p_f * c_{t-1})
        c_t = clip(f * c_{t-1} + i * activation(x W_c + r_{t-1} U_c + b_c), cell_clip)
        o = recurrent_activation(x W_o + r_{t-1} U_o + b_o + p_o * c_t)
        m_t = o * activation(c_t)
        r_t = clip(m_t P, proj_clip)     (r_t = m_t without proj_units)

    The output and the state fed back is `r_t`, of width `proj_units`, so
    the recurrent kernel `U` is `(proj_units, gates * units)` instead of
    `(units, gates * units)`: the projection cuts the recurrent weights (Sak et
    al. 2014). States are `[r, c]` of widths `[proj_units, units]`.

    Weights, in order: `kernel (features, g * units)`, `recurrent_kernel
    (proj_units, g * units)`, `bias (g * units,)`, with `g = 4` gates i, f, c,
    o, or `g = 3` gates f, c, o with `coupled_input_forget_gate`; then with
    `use_peepholes` `input_gate_peephole_weights` (not with the coupled gate),
    `forget_gate_peephole_weights`, `output_gate_peephole_weights`; then
    `projection_kernel (units, proj_units)`. With `proj_units=None`, no
    peepholes and no coupled gate it is `LSTMCell`.

    `tf.compat.v1.nn.rnn_cell.LSTMCell(num_units, num_proj=..., use_peepholes=...,
    cell_clip=..., proj_clip=...)` computes the same with its weights laid out
    otherwise; `layers.migration.weights_from_tf1_lstm_cell` converts them.

    Reference: Sak, Senior & Beaufays, "Long short-term memory recurrent
    neural network architectures for large scale acoustic modeling",
    Interspeech 2014 (projection, peepholes); Greff et al., "LSTM: a search
    space odyssey", 2017 (the coupled input-forget gate).

    Args:
        units: Positive integer, width of the cell state `c`.
        proj_units: Positive integer, width of the projection (the output and
            recurrent state), or `None` for no projection. Default: `None`.
        use_peepholes: Whether the gates see the cell state. Default: `False`.
        coupled_input_forget_gate: Whether the input gate is `1 - f` (CIFG).
            Default: `False`.
        cell_clip: Positive float: `c_t` is clipped to `[-cell_clip,
            cell_clip]`; `None` for no clipping. Default: `None`.
        proj_clip: Positive float, the same for the projection (needs
            `proj_units`). Default: `None`.
        projection_initializer, projection_regularizer, projection_constraint:
            Of `projection_kernel`. Default: `"glorot_uniform"`, `None`, `None`.
        activation, recurrent_activation, use_bias, initializers,
        unit_forget_bias, regularizers, constraints, dropout,
        recurrent_dropout, seed: As in `LSTMCell` (the recurrent dropout mask
        has width `proj_units`).

    Call arguments:
        inputs: Tensor of shape `(batch, features)`.
        states: List `[r, c]`, of shapes `(batch, proj_units)` and `(batch, units)`.
        training: Whether dropout applies.

    Returns:
        `(r, [r, c])`.

    Example:

    >>> import numpy as np, keras, layers
    >>> cell = layers.ProjectionLSTMCell(8, proj_units=3, use_peepholes=True, coupled_input_forget_gate=True)
    >>> output, r, c = keras.layers.RNN(cell, return_state=True)(np.zeros((2, 5, 4), "float32"))
    >>> tuple(output.shape), tuple(c.shape)
    ((2, 3), (2, 8))
    >>> [(w.name, tuple(w.shape)) for w in cell.weights]  # doctest: +NORMALIZE_WHITESPACE
    [('kernel', (4, 24)), ('recurrent_kernel', (3, 24)), ('bias', (24,)),
     ('forget_gate_peephole_weights', (8,)), ('output_gate_peephole_weights', (8,)),
     ('projection_kernel', (8, 3))]
    """

    # The arguments this class adds to `LSTMCell`'s.
    OPTIONS = (
        "proj_units",
        "use_peepholes",
        "coupled_input_forget_gate",
        "cell_clip",
        "proj_clip",
        "projection_initializer",
        "projection_regularizer",
        "projection_constraint",
    )

    def __init__(
        self,
        units,
        proj_units=None,
        use_peepholes=False,
        coupled_input_forget_gate=False,
        cell_clip=None,
        proj_clip=None,
        **kwargs,
    ):
        super().__init__(
            units,
            use_peepholes=use_peepholes,
            coupled_input_forget_gate=coupled_input_forget_gate,
            proj_units=proj_units,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            **kwargs,
        )

    def get_config(self):
        config = {
            "proj_units": self.proj_units,
            "use_peepholes": self.use_peepholes,
            "coupled_input_forget_gate": self.coupled_input_forget_gate,
            "cell_clip": self.cell_clip,
            "proj_clip": self.proj_clip,
            "projection_initializer": initializers.serialize(self.projection_initializer),
            "projection_regularizer": regularizers.serialize(self.projection_regularizer),
            "projection_constraint": constraints.serialize(self.projection_constraint),
        }
        return {**super().get_config(), **config}
