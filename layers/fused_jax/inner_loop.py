"""The sequence layers' entry point on JAX: whether a call can run fused, and `fused_inner_loop` if it can."""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import keras

from layers._fused_checks import unsupported_reason
from layers.fused_jax.activations import resolve_activation
from layers.fused_jax.cell_maths import GRUMath, Weights, math_class_for, math_for
from layers.fused_jax.recurrence import Plan, run_recurrence

# How the scans run (see `Plan`). Each step projecting its own inputs
# inside the scan measured faster than projecting all steps with one
# product before it, in training and in inference (`fused` against
# `fused-projected` in `python -m recipes.bench_jax`; see
# layers/README.md#the-fast-path-on-jax). The code reads these at every
# call, so the benchmark or a test can change them here.
UNROLL = 1
PROJECT_EACH_STEP = True


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """What a layer call asks of `fused_inner_loop` besides its arrays.

    Attributes:
        training: Whether dropout applies: the cell's masks of the current
            sequence (drawn before the loop) multiply the inputs and the
            recurrent state.
        go_backwards, return_sequences, zero_output_for_mask: As in
            `keras.layers.RNN`.
        truncate_every: Truncated back-propagation through time: no gradient
            flows into the states entering every `truncate_every`-th step
            (processing order); `None` for full back-propagation.
    """

    training: bool = False
    go_backwards: bool = False
    return_sequences: bool = False
    zero_output_for_mask: bool = False
    truncate_every: int | None = None


class InnerLoopResult(NamedTuple):
    """`(last_output, outputs, final_states)`, as `keras.layers.RNN.inner_loop` returns them."""

    last_output: jax.Array
    outputs: jax.Array
    final_states: list


def fallback_reason(cell, sequences):
    """Why the fused JAX path cannot run this call (a sentence), or `None` if it can."""
    return unsupported_reason(cell, sequences, resolve_activation)


def _weights(cell):
    """The cell's weights as arrays, split into input and recurrent biases."""

    def value(variable):
        return keras.ops.convert_to_tensor(variable)

    input_bias = recurrent_bias = None
    if cell.use_bias:
        bias = value(cell.bias)
        if math_class_for(cell) is GRUMath:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias
    return Weights(value(cell.kernel), value(cell.recurrent_kernel), input_bias, recurrent_bias)


def fused_inner_loop(cell, sequences, initial_state, mask, options=CallOptions()):
    """The fused equivalent of `keras.layers.RNN.inner_loop` for our cells, on JAX.

    `options` is a `CallOptions`. Returns an `InnerLoopResult`: `outputs`
    is `(batch, time, units)` in processing order when `return_sequences`,
    else `last_output` with a time axis of one. Call it only where
    `fallback_reason` is `None`.
    """
    input_keep = recurrent_keep = None
    if options.training:
        input_keep, recurrent_keep = cell.draw_dropout_masks(sequences.shape[0])
    sequences = jnp.asarray(sequences)
    if input_keep is not None:
        sequences = sequences * jnp.asarray(input_keep)[:, None, :]
    x = jnp.swapaxes(sequences, 0, 1)  # time-major
    valid = None
    if mask is not None:
        valid = jnp.swapaxes(jnp.asarray(mask).astype(bool), 0, 1)[:, :, None]
    if options.go_backwards:
        x = jnp.flip(x, axis=0)
        valid = None if valid is None else jnp.flip(valid, axis=0)
    plan = Plan(math_for(cell), options.truncate_every, UNROLL, PROJECT_EACH_STEP)
    h_seq, final_states = run_recurrence(
        plan,
        x,
        _weights(cell),
        [jnp.asarray(s) for s in initial_state],
        valid,
        None if recurrent_keep is None else jnp.asarray(recurrent_keep),
    )

    # Outputs at masked steps: Keras's loop on JAX repeats the carried state
    # `h` there (the initial state before the first valid step), which is
    # `h_seq`; with `zero_output_for_mask` they are zeros.
    output_valid = valid if options.zero_output_for_mask else None
    if options.return_sequences:
        outputs = h_seq if output_valid is None else jnp.where(output_valid, h_seq, 0.0)
        last_output = outputs[-1]
        outputs = jnp.swapaxes(outputs, 0, 1)
    else:
        last_output = h_seq[-1]
        if output_valid is not None:
            last_output = jnp.where(output_valid[-1], last_output, 0.0)
        outputs = last_output[:, None, :]
    return InnerLoopResult(last_output, outputs, list(final_states))
