"""`run_recurrence`: a whole recurrence over `jax.lax.scan`, with a hand-written gradient (`jax.custom_vjp`).

Called without a gradient (inference), one scan runs the steps and saves
nothing.
Under differentiation, the forward scan also saves each step's derivative
factors (`step_saving`), and the backward pass is one reverse scan that
carries only the state gradients; the gradients of the weights and inputs
are then one matrix product each over all steps.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from layers.fused_jax.cell_maths import RecurrenceMath, Weights, dropped, flat_sum


@dataclasses.dataclass(frozen=True)
class Plan:
    """The static part of a recurrence: its math, truncation and scan unrolling.

    Attributes:
        math: A `RecurrenceMath` (see `layers.fused_jax.cell_maths`).
        truncate_every: Optional positive int k: no gradient flows into the
            states entering steps k, 2k, ... (processing order).
        unroll: Steps per iteration of each scan's loop (`jax.lax.scan`).
        project_each_step: If `True`, each step of the forward scans
            projects its own inputs (`x_t @ kernel + input_bias`); if
            `False`, the inputs of all steps are projected with one matrix
            product before the scan. (The gradients of the input weights
            and of the inputs are one product over all steps either way.)
    """

    math: RecurrenceMath
    truncate_every: int | None = None
    unroll: int = 1
    project_each_step: bool = True


class RecurrenceResult(NamedTuple):
    """The carried state `h` of every step, time-major `(time, batch, units)`, and the final states."""

    sequence: jax.Array
    final_states: tuple


def _project(inputs, weights):
    """`inputs @ kernel + input_bias` for time-major `inputs`, as one matrix product."""
    projected = inputs @ weights.kernel
    return projected if weights.input_bias is None else projected + weights.input_bias


def _masked(valid_t, new_states, states):
    """The new states where the step is valid, else the old ones (`valid_t=None`: all valid)."""
    if valid_t is None:
        return tuple(new_states)
    return tuple(jnp.where(valid_t, new, old) for new, old in zip(new_states, states))


def _scan_forward(plan, inputs, weights, initial, valid, keep, step):
    """The forward scan: `step(weights, p_t, states, keep) -> (new_states, extra)` at each step.

    Returns the final states and, stacked over the steps, `(h, extra)`.
    """
    per_step = plan.project_each_step

    def body(states, step_inputs):
        p_t, valid_t = step_inputs
        if per_step:
            p_t = _project(p_t, weights)
        new_states, extra = step(weights, p_t, states, keep)
        new_states = _masked(valid_t, new_states, states)
        return new_states, (new_states[0], extra)

    xs = inputs if per_step else _project(inputs, weights)
    return jax.lax.scan(body, tuple(initial), (xs, valid), unroll=plan.unroll)


def _forward(plan, inputs, weights, initial, valid, keep):
    def step(weights, p_t, states, keep):
        return plan.math.step(weights, p_t, states, keep), ()

    final_states, (sequence, _) = _scan_forward(plan, inputs, weights, initial, valid, keep, step)
    return RecurrenceResult(sequence, final_states)


def _forward_saving(plan, inputs, weights, initial, valid, keep):
    final_states, (sequence, records) = _scan_forward(
        plan, inputs, weights, initial, valid, keep, plan.math.step_saving
    )
    result = RecurrenceResult(sequence, final_states)
    return result, (inputs, weights, tuple(initial), valid, keep, sequence, records)


def _chunk_starts(length, truncate_every):
    """Boolean `(time,)`: whether a chunk of truncated back-propagation starts at each step."""
    if truncate_every is None:
        return None
    steps = np.arange(length)
    return (steps > 0) & (steps % truncate_every == 0)


def _backward(plan, saved, cotangents):
    math = plan.math
    inputs, weights, initial, valid, keep, sequence, records = saved
    d_sequence, d_final = cotangents

    def body(state_grads, step_inputs):
        d_h_t, records_t, valid_t, cut_t = step_inputs
        state_grads = (state_grads[0] + d_h_t, *state_grads[1:])
        if valid_t is None:
            prev_grads, writes = math.backward_step(weights, state_grads, records_t, keep)
        else:
            # Masked step: the state passed through unchanged, and so does
            # its gradient; the step itself gets none.
            through = tuple(jnp.where(valid_t, g, 0.0) for g in state_grads)
            carried = tuple(jnp.where(valid_t, 0.0, g) for g in state_grads)
            prev_grads, writes = math.backward_step(weights, through, records_t, keep)
            prev_grads = tuple(p + c for p, c in zip(prev_grads, carried))
        if cut_t is not None:
            # A chunk starts at this step: its incoming states are constants.
            prev_grads = tuple(jnp.where(cut_t, 0.0, g) for g in prev_grads)
        return prev_grads, writes

    cuts = _chunk_starts(inputs.shape[0], plan.truncate_every)
    d_initial, writes = jax.lax.scan(
        body,
        tuple(d_final),
        (d_sequence, records, valid, cuts),
        reverse=True,
        unroll=plan.unroll,
    )
    previous = dropped(jnp.concatenate([initial[0][None], sequence[:-1]], axis=0), keep)
    recurrent = math.gradients(weights, writes, previous, records)
    d_projected = recurrent.projected
    flat_inputs = inputs.reshape(-1, inputs.shape[-1])
    flat_d_projected = d_projected.reshape(-1, d_projected.shape[-1])
    d_weights = Weights(
        flat_inputs.T @ flat_d_projected,
        recurrent.recurrent_kernel,
        None if weights.input_bias is None else flat_sum(d_projected),
        recurrent.recurrent_bias,
    )
    d_inputs = d_projected @ weights.kernel.T
    return d_inputs, d_weights, tuple(d_initial), None, None


def _recurrence_primal(plan, inputs, weights, initial, valid, keep):
    return _forward(plan, inputs, weights, initial, valid, keep)


_recurrence = jax.custom_vjp(_recurrence_primal, nondiff_argnums=(0,))
_recurrence.defvjp(_forward_saving, _backward)


def run_recurrence(plan, inputs, weights, initial_states, valid=None, recurrent_keep=None):
    """Run a recurrence over time-major `inputs`, with a hand-written gradient.

    Args:
        plan: A `Plan`.
        inputs: `(time, batch, features)`, in processing order.
        weights: `Weights`.
        initial_states: List of `(batch, units)` arrays.
        valid: Optional boolean `(time, batch, 1)`, aligned with `inputs`;
            `False` carries the states over unchanged.
        recurrent_keep: Optional `(batch, units)` recurrent dropout mask
            (zeros and `1 / (1 - rate)`), the same at every step; it
            multiplies `h` where `h` enters the recurrent products. It gets
            no gradient.

    Returns:
        A `RecurrenceResult`: `h` at every step (time-major) and the final states.
    """
    return _recurrence(plan, inputs, weights, tuple(initial_states), valid, recurrent_keep)
