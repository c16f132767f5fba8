"""The sequence layers' entry point: whether a call can run fused, and `fused_inner_loop` if it can."""

import dataclasses
from typing import NamedTuple

import tensorflow as tf

from layers._fused_checks import unsupported_reason
from layers.fused.activations import resolve_activation
from layers.fused.cell_maths import FUSED_KINDS, math_class_for
from layers.fused.recurrence import RecurrenceOptions, run_recurrence


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """What a layer call asks of `fused_inner_loop` besides its tensors.

    Attributes:
        training: The call's `training` argument (dropout, and whether the
            forward loop saves what the backward loop needs).
        go_backwards, return_sequences, zero_output_for_mask: As in
            `keras.layers.RNN`.
        truncate_every: Truncated back-propagation through time: no gradient
            flows into the states entering every `truncate_every`-th step
            (processing order); `None` for full back-propagation.
        jit_compile: Whether the loops are compiled with XLA (a bool; the
            layer resolves `"auto"`).
    """

    training: object = False
    go_backwards: bool = False
    return_sequences: bool = False
    zero_output_for_mask: bool = False
    truncate_every: int | None = None
    jit_compile: bool = False


class InnerLoopResult(NamedTuple):
    """`(last_output, outputs, final_states)`, as `keras.layers.RNN.inner_loop` returns them, and `loops`.

    `loops` says which loops ran (see `RecurrenceResult`).
    """

    last_output: tf.Tensor
    outputs: tf.Tensor
    final_states: list
    loops: str


def fallback_reason(cell, sequences):
    """Why the fused path cannot run this call (a sentence), or `None` if it can."""
    return unsupported_reason(cell, sequences, resolve_activation, FUSED_KINDS)


def fused_inner_loop(cell, sequences, initial_state, mask, options):
    """The fused equivalent of `keras.layers.RNN.inner_loop` for our cells.

    `options` is a `CallOptions`. Returns an `InnerLoopResult`:
    `outputs` is `(batch, time, units)` in processing order when
    `return_sequences`, else `last_output` with a time axis of one. Call
    it only where `fallback_reason` is `None`.
    """
    x = tf.convert_to_tensor(sequences)
    initial_state = [tf.convert_to_tensor(s) for s in initial_state]

    # One dropout mask per sequence, the masks the layer drew for this call
    # before its loop (input mask first, then recurrent mask, from the cell's
    # seed generator), so both paths drop the same units for the same seed.
    input_mask, recurrent_mask = cell.dropout_masks(x[:, 0], initial_state[0], options.training)
    if input_mask is not None:
        x = x * input_mask[:, None, :]

    valid = None
    if mask is not None:
        valid = tf.cast(mask, tf.bool)[:, :, None]

    bound = math_class_for(cell).for_cell(cell, x, recurrent_mask)
    h_seq, final_states, loops = run_recurrence(
        bound.math,
        bound.inputs,
        bound.kernel,
        bound.input_bias,
        initial_state,
        valid=valid,
        options=RecurrenceOptions(
            truncate_every=options.truncate_every,
            save_for_gradient=bool(options.training),
            jit_compile=options.jit_compile,
            backwards=options.go_backwards,
            # Inference of a layer that returns its last output only needs
            # no step's output: the loops write none.
            sequence=bool(options.return_sequences),
        ),
    )

    # Outputs at masked steps: Keras repeats the previous output (zeros
    # before the first valid step), which equals the carried state once a
    # valid step has been seen; with `zero_output_for_mask` they are zeros.
    # `h_seq` is batch-major in processing order; the last output is the
    # final `h` (also where no sequence was written).
    if valid is not None and options.go_backwards:
        valid = tf.reverse(valid, [1])
    if options.return_sequences:
        outputs = h_seq
        if valid is not None:
            if options.zero_output_for_mask:
                output_valid = valid
            else:
                output_valid = tf.cumsum(tf.cast(valid, tf.int32), axis=1) > 0
            outputs = tf.where(output_valid, outputs, tf.zeros_like(outputs))
        last_output = outputs[:, -1]
    else:
        last_output = final_states[0]
        if valid is not None:
            last_valid = valid[:, -1] if options.zero_output_for_mask else tf.reduce_any(valid, axis=1)
            last_output = tf.where(last_valid, last_output, tf.zeros_like(last_output))
        outputs = last_output[:, None, :]
    return InnerLoopResult(last_output, outputs, final_states, loops)
