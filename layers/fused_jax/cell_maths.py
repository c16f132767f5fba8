"""The step arithmetic of each of our cells, for `jax.lax.scan`, and which cell runs which.

A math is static (hashable: it is part of the `jax.custom_vjp`'s static
arguments) and holds no arrays; every method takes the call's `Weights`.
It provides:

  step(weights, p_t, states, keep=None) -> new_states
      one step before masking; `p_t` is the step's projected inputs
      (`x_t @ kernel + input_bias`); `keep` is the recurrent dropout mask
      (`None`: no dropout), which multiplies `h` where it enters the
      recurrent products (not where the GRU's update gate mixes it in).
  step_saving(weights, p_t, states, keep=None) -> (new_states, records)
      the same step, also returning the derivative factors that
      back-propagation needs from it, so the backward scan only multiplies.
  backward_step(weights, state_grads, records_t, keep=None) -> (prev_state_grads, writes)
      the gradients of the step's input states, given those of its new
      states; `writes` are what the weight gradients need from the step.
  gradients(weights, writes, previous, records) -> RecurrentGradients
      after the backward scan, as large matrix products over all steps;
      `previous` holds the states `h` entering each step, times `keep`.

`SimpleRNNMath`, `LSTMMath`, `GRUMath` (`reset_after=True`) and
`GRUResetBeforeMath` (`reset_after=False`); `math_for` picks the one for a
cell of `layers.cells`. The arithmetic is that of `layers.fused.cell_maths`
(the TensorFlow path), in `jax.numpy`.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from layers._fused_checks import cell_kind
from layers.fused_jax.activations import Activation, resolve_activation, times


class Weights(NamedTuple):
    """The weights of one call: `input_bias` and `recurrent_bias` may be `None`."""

    kernel: jax.Array
    recurrent_kernel: jax.Array
    input_bias: jax.Array | None
    recurrent_bias: jax.Array | None


class RecurrentGradients(NamedTuple):
    """The gradients of the projected inputs (time-major) and of the recurrent weights."""

    projected: jax.Array
    recurrent_kernel: jax.Array
    recurrent_bias: jax.Array | None


def flat_matmul_t(a, b):
    """`sum_t a[t]^T @ b[t]` for `a` (T, B, m) and `b` (T, B, n), as one product."""
    return jnp.matmul(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))


def dropped(h, keep):
    """`h` times the recurrent dropout mask `keep` (`None`: `h` itself)."""
    return h if keep is None else h * keep


def flat_sum(a):
    """`a` (T, B, n) summed over its first two axes."""
    return jnp.sum(a.reshape(-1, a.shape[-1]), axis=0)


@dataclasses.dataclass(frozen=True)
class RecurrenceMath:
    """The step arithmetic shared by the cells: a pre-projected input plus `h @ recurrent_kernel`."""

    units: int
    activation: Activation
    recurrent_activation: Activation | None = None

    state_count = 1

    def gradients(self, weights, writes, previous, records):
        dz = writes
        return RecurrentGradients(dz, flat_matmul_t(previous, dz), None)


class SimpleRNNMath(RecurrenceMath):
    def step(self, weights, p_t, states, keep=None):
        return (self.activation.forward(p_t + dropped(states[0], keep) @ weights.recurrent_kernel),)

    def step_saving(self, weights, p_t, states, keep=None):
        (h,) = self.step(weights, p_t, states, keep)
        derivative = self.activation.derivative
        return (h,), (() if derivative is None else (derivative(h),))

    def backward_step(self, weights, state_grads, records_t, keep=None):
        dz = state_grads[0] * records_t[0] if records_t else state_grads[0]
        return (dropped(dz @ weights.recurrent_kernel.T, keep),), dz


class LSTMMath(RecurrenceMath):
    state_count = 2

    def _gates(self, weights, p_t, h_tm1, keep):
        z_i, z_f, z_c, z_o = jnp.split(p_t + dropped(h_tm1, keep) @ weights.recurrent_kernel, 4, axis=-1)
        gate = self.recurrent_activation.forward
        return gate(z_i), gate(z_f), self.activation.forward(z_c), gate(z_o)

    def step(self, weights, p_t, states, keep=None):
        h_tm1, c_tm1 = states
        i, f, g, o = self._gates(weights, p_t, h_tm1, keep)
        c = f * c_tm1 + i * g
        return o * self.activation.forward(c), c

    def step_saving(self, weights, p_t, states, keep=None):
        h_tm1, c_tm1 = states
        i, f, g, o = self._gates(weights, p_t, h_tm1, keep)
        c = f * c_tm1 + i * g
        tanh_c = self.activation.forward(c)
        gate_derivative = self.recurrent_activation.derivative
        derivative = self.activation.derivative
        # The gate pre-activation gradients are [dc, dc, dc, dh] times the
        # first four, where dc already includes the path through h.
        records = (
            times(g, gate_derivative(i) if gate_derivative else None),
            times(c_tm1, gate_derivative(f) if gate_derivative else None),
            times(i, derivative(g) if derivative else None),
            times(tanh_c, gate_derivative(o) if gate_derivative else None),
            times(o, derivative(tanh_c) if derivative else None),
            f,
        )
        return (o * tanh_c, c), records

    def backward_step(self, weights, state_grads, records_t, keep=None):
        dh, dc = state_grads
        to_i, to_f, to_g, to_o, h_to_c, forget = records_t
        dc = dc + dh * h_to_c
        dz = jnp.concatenate([dc * to_i, dc * to_f, dc * to_g, dh * to_o], axis=-1)
        return (dropped(dz @ weights.recurrent_kernel.T, keep), dc * forget), dz


def _derivative(activation, y):
    return None if activation.derivative is None else activation.derivative(y)


class _GRUStep:
    """`step` for both GRUs, whose `_parts` return `(z, r, the reset gate's operand, candidate)`."""

    def step(self, weights, p_t, states, keep=None):
        h_tm1 = states[0]
        z, _, _, candidate = self._parts(weights, p_t, h_tm1, keep)
        return (z * h_tm1 + (1.0 - z) * candidate,)


class GRUMath(_GRUStep, RecurrenceMath):
    """GRU with `reset_after=True` (reset gate applied after the recurrent product)."""

    def _parts(self, weights, p_t, h_tm1, keep):
        inner = dropped(h_tm1, keep) @ weights.recurrent_kernel
        if weights.recurrent_bias is not None:
            inner = inner + weights.recurrent_bias
        p_z, p_r, p_h = jnp.split(p_t, 3, axis=-1)
        inner_z, inner_r, inner_h = jnp.split(inner, 3, axis=-1)
        gate = self.recurrent_activation.forward
        z, r = gate(p_z + inner_z), gate(p_r + inner_r)
        candidate = self.activation.forward(p_h + r * inner_h)
        return z, r, inner_h, candidate

    def step_saving(self, weights, p_t, states, keep=None):
        h_tm1 = states[0]
        z, r, inner_h, candidate = self._parts(weights, p_t, h_tm1, keep)
        d_candidate = times(1.0 - z, _derivative(self.activation, candidate))
        # dh times these gives the gradients of the recurrent product (z, r
        # and candidate parts) and of the candidate's projected input.
        records = (
            times(h_tm1 - candidate, _derivative(self.recurrent_activation, z)),
            times(d_candidate * inner_h, _derivative(self.recurrent_activation, r)),
            d_candidate * r,
            d_candidate,
            z,
        )
        return (z * h_tm1 + (1.0 - z) * candidate,), records

    def backward_step(self, weights, state_grads, records_t, keep=None):
        dh = state_grads[0]
        to_z, to_r, to_inner_h, to_candidate, z = records_t
        d_inner = jnp.concatenate([dh * to_z, dh * to_r, dh * to_inner_h], axis=-1)
        return (dropped(d_inner @ weights.recurrent_kernel.T, keep) + dh * z,), (d_inner, dh * to_candidate)

    def gradients(self, weights, writes, previous, records):
        d_inner, d_candidate_input = writes
        d_projected = jnp.concatenate([d_inner[..., : 2 * self.units], d_candidate_input], axis=-1)
        d_recurrent_bias = None if weights.recurrent_bias is None else flat_sum(d_inner)
        return RecurrentGradients(d_projected, flat_matmul_t(previous, d_inner), d_recurrent_bias)


class GRUResetBeforeMath(_GRUStep, RecurrenceMath):
    """GRU with `reset_after=False` (reset gate applied to the state before its product)."""

    def _parts(self, weights, p_t, h_tm1, keep):
        units = self.units
        kernel = weights.recurrent_kernel
        h_dropped = dropped(h_tm1, keep)
        p_zr, p_h = p_t[..., : 2 * units], p_t[..., 2 * units :]
        zr = self.recurrent_activation.forward(p_zr + h_dropped @ kernel[:, : 2 * units])
        z, r = jnp.split(zr, 2, axis=-1)
        reset_h = r * h_dropped
        candidate = self.activation.forward(p_h + reset_h @ kernel[:, 2 * units :])
        return z, r, reset_h, candidate

    def step_saving(self, weights, p_t, states, keep=None):
        h_tm1 = states[0]
        z, r, reset_h, candidate = self._parts(weights, p_t, h_tm1, keep)
        records = (
            times(1.0 - z, _derivative(self.activation, candidate)),
            times(h_tm1 - candidate, _derivative(self.recurrent_activation, z)),
            times(dropped(h_tm1, keep), _derivative(self.recurrent_activation, r)),
            r,
            z,
            reset_h,
        )
        return (z * h_tm1 + (1.0 - z) * candidate,), records

    def backward_step(self, weights, state_grads, records_t, keep=None):
        units = self.units
        kernel = weights.recurrent_kernel
        dh = state_grads[0]
        d_candidate, to_z, to_r, r, z, _ = records_t
        dn = dh * d_candidate
        d_reset_h = dn @ kernel[:, 2 * units :].T
        dzr = jnp.concatenate([dh * to_z, d_reset_h * to_r], axis=-1)
        dh_tm1 = dropped(dzr @ kernel[:, : 2 * units].T + d_reset_h * r, keep) + dh * z
        return (dh_tm1,), (dzr, dn)

    def gradients(self, weights, writes, previous, records):
        dzr, dn = writes
        reset_h = records[-1]
        d_kernel = jnp.concatenate([flat_matmul_t(previous, dzr), flat_matmul_t(reset_h, dn)], axis=-1)
        return RecurrentGradients(jnp.concatenate([dzr, dn], axis=-1), d_kernel, None)


def math_class_for(cell):
    """The math class of one of our cells (`layers.cells`), or `None` (see `cell_kind`)."""
    return _MATH_CLASSES.get(cell_kind(cell))


def math_for(cell):
    """The math of one of our cells; call it only where `math_class_for(cell)` is not `None`."""
    recurrent_activation = getattr(cell, "recurrent_activation", None)
    return math_class_for(cell)(
        cell.units,
        resolve_activation(cell.activation),
        None if recurrent_activation is None else resolve_activation(recurrent_activation),
    )


_MATH_CLASSES = {
    "simple_rnn": SimpleRNNMath,
    "lstm": LSTMMath,
    "gru": GRUMath,
    "gru_reset_before": GRUResetBeforeMath,
}
