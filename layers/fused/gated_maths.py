"""The step arithmetic of the LSTM variants (`layers.lstm_variants`): `GatedLSTMMath`.

One math for `PeepholeLSTMCell` and `ProjectionLSTMCell` with any of their
options: peepholes, a coupled input-forget gate, clipping of the cell state,
a projection of the output and its clipping. The input and recurrent
products are those of `LSTMMath` (joined in compiled loops); the options
add to the gate arithmetic, and their weights are `extra_weights`.
"""

import tensorflow as tf

from layers.fused.gradients import RecurrentGradients, flat_matmul_t
from layers.fused.maths import Bound, RecurrenceMath, cell_arguments, times, weight


def _inside(value, limit):
    """1 where `value` is within `[-limit, limit]` (where `tf.clip_by_value` passes the gradient), else 0."""
    return tf.cast(tf.logical_and(value >= -limit, value <= limit), value.dtype)


class GatedLSTMMath(RecurrenceMath):
    """An LSTM step with optional peepholes, coupled gate, cell clip and projection (see `_GatedLSTMCell`).

    States `[r, c]`: `r` (the output, `proj_units` wide with a projection)
    is the state the recurrent product sees. The options are fixed per
    call, so each step's records are a fixed list (see `_record_names`).
    """

    state_count = 2
    # Compiled inference keeps states as rows (`in_columns` is `LSTMMath`'s form only).
    columns_supported = False

    def __init__(
        self,
        units,
        recurrent_kernel,
        recurrent_bias,
        recurrent_mask,
        activation,
        recurrent_activation,
        peepholes=None,
        projection=None,
        coupled=False,
        cell_clip=None,
        proj_clip=None,
    ):
        super().__init__(units, recurrent_kernel, recurrent_bias, recurrent_mask, activation, recurrent_activation)
        # `peepholes`: (input or None, forget, output); `projection`: (units, proj_units).
        self.peepholes = peepholes
        self.projection = projection
        self.coupled = coupled
        self.cell_clip = cell_clip
        self.proj_clip = proj_clip
        self.gate_count = 3 if coupled else 4
        if projection is not None:
            self.output_width = projection.shape[-1]
            self.projection_t = tf.transpose(projection)
        self.extra_weights = tuple(p for p in (peepholes or ()) if p is not None)
        self.peephole_count = len(self.extra_weights)
        if projection is not None:
            self.extra_weights += (projection,)
        self.record_count = len(self._record_names())

    @classmethod
    def for_cell(cls, cell, inputs, recurrent_mask):
        peepholes = None
        if cell.use_peepholes:
            input_peephole = None if cell.coupled_input_forget_gate else weight(cell.input_gate_peephole_weights)
            peepholes = (
                input_peephole,
                weight(cell.forget_gate_peephole_weights),
                weight(cell.output_gate_peephole_weights),
            )
        projection = weight(cell.projection_kernel) if cell.proj_units is not None else None
        math = cls(
            *cell_arguments(cell, None, recurrent_mask),
            peepholes=peepholes,
            projection=projection,
            coupled=cell.coupled_input_forget_gate,
            cell_clip=cell.cell_clip,
            proj_clip=cell.proj_clip,
        )
        input_bias, _ = cls.split_bias(cell)
        return Bound(math, inputs, weight(cell.kernel), input_bias)

    def variant_arguments(self, transform):
        peepholes = None if self.peepholes is None else tuple(transform(p) for p in self.peepholes)
        return dict(
            peepholes=peepholes,
            projection=transform(self.projection),
            coupled=self.coupled,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
        )

    def _record_names(self):
        names = ["to_f", "to_g", "to_o", "m_to_c", "forget"]
        if not self.coupled:
            names.insert(0, "to_i")
        if self.cell_clip is not None:
            names.append("in_cell_clip")
        if self.peepholes is not None:
            names += ["c_tm1", "c"]
        if self.projection is not None:
            names.append("m")
            if self.proj_clip is not None:
                names.append("in_proj_clip")
        return names

    def _forward(self, x_t, states):
        """Everything a step computes, by name."""
        r_tm1, c_tm1 = states
        z = self.preactivation(x_t, self.dropped(r_tm1))
        if self.coupled:
            z_f, z_c, z_o = tf.split(z, 3, axis=-1)
        else:
            z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        input_peephole, forget_peephole, output_peephole = self.peepholes or (None, None, None)
        if forget_peephole is not None:
            z_f = z_f + forget_peephole * c_tm1
        gate = self.recurrent_activation.forward
        f = gate(z_f)
        if self.coupled:
            i = 1.0 - f
        else:
            if input_peephole is not None:
                z_i = z_i + input_peephole * c_tm1
            i = gate(z_i)
        g = self.activation.forward(z_c)
        c_raw = f * c_tm1 + i * g
        c = c_raw if self.cell_clip is None else tf.clip_by_value(c_raw, -self.cell_clip, self.cell_clip)
        if output_peephole is not None:
            z_o = z_o + output_peephole * c
        o = gate(z_o)
        tanh_c = self.activation.forward(c)
        m = o * tanh_c
        r = m_projected = m
        if self.projection is not None:
            r = m_projected = self.product(m, self.projection, self.projection_t)
            if self.proj_clip is not None:
                r = tf.clip_by_value(m_projected, -self.proj_clip, self.proj_clip)
        return dict(c_tm1=c_tm1, f=f, i=i, g=g, c_raw=c_raw, c=c, o=o, tanh_c=tanh_c, m=m, m_projected=m_projected, r=r)

    def step(self, x_t, states):
        parts = self._forward(x_t, states)
        return [parts["r"], parts["c"]]

    def step_saving(self, x_t, states):
        parts = self._forward(x_t, states)
        gate_derivative = self.recurrent_activation.derivative
        f, g, c_tm1 = parts["f"], parts["g"], parts["c_tm1"]
        records = {
            "to_g": times(parts["i"], self.activation.derivative(g)),
            "to_o": times(parts["tanh_c"], gate_derivative(parts["o"])),
            "m_to_c": times(parts["o"], self.activation.derivative(parts["tanh_c"])),
            "forget": f,
            "c_tm1": c_tm1,
            "c": parts["c"],
            "m": parts["m"],
        }
        if self.coupled:
            # i = 1 - f: the forget gate's pre-activation also receives -dc * g.
            records["to_f"] = times(c_tm1 - g, gate_derivative(f))
        else:
            records["to_f"] = times(c_tm1, gate_derivative(f))
            records["to_i"] = times(g, gate_derivative(parts["i"]))
        if self.cell_clip is not None:
            records["in_cell_clip"] = _inside(parts["c_raw"], self.cell_clip)
        if self.proj_clip is not None:
            records["in_proj_clip"] = _inside(parts["m_projected"], self.proj_clip)
        return [parts["r"], parts["c"]], [records[name] for name in self._record_names()]

    def backward_step(self, state_grads, records_t):
        dr, dc = state_grads
        records = dict(zip(self._record_names(), records_t))
        writes = []
        dm = dr
        if self.projection is not None:
            if self.proj_clip is not None:
                dr = dr * records["in_proj_clip"]
            dm = self.product(dr, self.projection_t, self.projection)
        dc = dc + dm * records["m_to_c"]
        dz_o = dm * records["to_o"]
        input_peephole, forget_peephole, output_peephole = self.peepholes or (None, None, None)
        if output_peephole is not None:
            dc = dc + dz_o * output_peephole
        if self.cell_clip is not None:
            dc = dc * records["in_cell_clip"]
        dz_f = dc * records["to_f"]
        dz_c = dc * records["to_g"]
        dc_tm1 = dc * records["forget"]
        gates = [dz_f, dz_c, dz_o]
        if not self.coupled:
            dz_i = dc * records["to_i"]
            gates.insert(0, dz_i)
        if forget_peephole is not None:
            dc_tm1 = dc_tm1 + dz_f * forget_peephole
            terms = [dz_f * records["c_tm1"], dz_o * records["c"]]
            if input_peephole is not None:
                dc_tm1 = dc_tm1 + dz_i * input_peephole
                terms.insert(0, dz_i * records["c_tm1"])
            # Each peephole's gradient is its gate's gradient times the cell
            # state it sees, summed over the batch and the steps (`sum_widths`).
            summed = [tf.concat(terms, axis=-1)]
        else:
            summed = []
        if self.projection is not None:
            writes += [dr, records["m"]]
        dz = tf.concat(gates, axis=-1)
        dr_tm1 = self.dropped(self.product(dz, self.recurrent_kernel_t, self.recurrent_kernel))
        return [dr_tm1, dc_tm1], [dz, *writes, *summed]

    def write_widths(self):
        widths = [self.gate_count * self.units]
        if self.projection is not None:
            widths += [self.output_width, self.units]
        return widths

    def sum_widths(self):
        return [] if self.peepholes is None else [self.peephole_count * self.units]

    def finish(self, writes_seq, previous):
        dz, *rest = writes_seq
        extra = []
        if self.peepholes is not None:
            extra += tf.split(rest.pop(), self.peephole_count)
        if self.projection is not None:
            dr, m = rest
            extra.append(flat_matmul_t(m, dr))
        return RecurrentGradients(dz, previous.matmul_t(dz), None, tuple(extra))
