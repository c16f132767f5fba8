"""`run_recurrence`: a whole recurrence with its hand-written gradient (`tf.custom_gradient`)."""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from layers.fused import policy
from layers.fused.gradients import input_gradients
from layers.fused.layouts import BatchMajorLoops, TimeMajorLoops
from layers.fused.maths import cut


@dataclasses.dataclass(frozen=True)
class RecurrenceOptions:
    """How `run_recurrence` runs a recurrence.

    Attributes:
        truncate_every: Optional positive int k: no gradient flows into the
            states entering steps k, 2k, ... (processing order).
        save_for_gradient: If `True` (training), the forward loop saves the
            per-step derivative factors for the backward loop. If `False`
            (inference), it saves nothing; a gradient taken anyway runs the
            saving forward loop again first, then the same backward loop.
        jit_compile: If `True`, each loop is compiled with XLA as one
            cluster; the weight-gradient products stay outside, as
            TensorFlow's own kernels.
        backwards: Process the steps from the last to the first.
        sequence: If `False` (inference of a layer that returns its last
            output only), the forward loop writes no step's output and
            `RecurrenceResult.sequence` is `None`. Training always writes
            them (graph loops' weight gradients read them).
    """

    truncate_every: int | None = None
    save_for_gradient: bool = True
    jit_compile: bool = False
    backwards: bool = False
    sequence: bool = True


class RecurrenceResult(NamedTuple):
    """`run_recurrence`'s results.

    `sequence`: the carried first state (`h`) at every step,
    `(batch, time, units)` in processing order (`None` without
    `RecurrenceOptions.sequence`); `final_states`: the list of final states; `loops`: which loops ran, "graph", "compiled" or
    "compiled halves" (the batch's two halves at once, see
    `policy.splits_batch`).
    """

    sequence: tf.Tensor
    final_states: list
    loops: str


class _BatchPart(NamedTuple):
    """One part of the batch: its loops, its initial states, and `take`, which takes its rows of a batch tensor."""

    loops: TimeMajorLoops | BatchMajorLoops
    initial: tuple
    take: Callable


class _PartGradients(NamedTuple):
    """The gradients of one part of the batch (the weights' summed over the parts afterwards)."""

    inputs: tf.Tensor
    initial: tuple
    kernel: tf.Tensor
    recurrent_kernel: tf.Tensor
    input_bias: tf.Tensor | None
    recurrent_bias: tf.Tensor | None
    extra: tuple


def _batch_parts(inputs, halves):
    """The rows of each part of the batch: `[None]` (all) or its two halves.

    With an unknown batch the halves are cut where the running batch's
    middle is (one compiled program runs each new shape).
    """
    if not halves:
        return [None]
    half = inputs.shape[0] // 2 if inputs.shape[0] is not None else tf.shape(inputs)[0] // 2
    return [slice(None, half), slice(half, None)]


def _rows_taker(rows):
    """A function that takes a part's rows of a batch-major tensor (or `None`)."""
    if rows is None:
        return lambda tensor: tensor
    return lambda tensor: None if tensor is None else tensor[rows]


def _join_rows(parts):
    """The parts' batch-major tensors joined back into the whole batch."""
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def _sum_parts(gradients):
    """The parts' gradients of one weight, summed (`None` for a weight that does not exist)."""
    return None if gradients[0] is None else tf.add_n(list(gradients))


class _Arguments:
    """The tensors `run_recurrence` differentiates, as one flat list and back.

    In order: the inputs, the kernel, the recurrent kernel, the initial
    states, then those of the input bias and the recurrent bias that exist,
    then the math's `extra_weights`.
    """

    OPTIONAL = ("input_bias", "recurrent_bias")

    def __init__(self, state_count, present, extra_count):
        self.state_count = state_count
        self.present = present  # the `OPTIONAL` names given
        self.extra_count = extra_count

    @classmethod
    def of(cls, inputs, kernel, recurrent_kernel, initial_states, optional, extra):
        present = tuple(name for name in cls.OPTIONAL if optional[name] is not None)
        flat = [inputs, kernel, recurrent_kernel, *initial_states, *(optional[name] for name in present), *extra]
        return cls(len(initial_states), present, len(extra)), flat

    def unpack(self, flat):
        """`(inputs, kernel, recurrent_kernel, initial, optional, extra)`; `optional` maps every `OPTIONAL` name."""
        initial = tuple(flat[3 : 3 + self.state_count])
        rest = flat[3 + self.state_count :]
        optional = dict.fromkeys(self.OPTIONAL)
        optional.update(zip(self.present, rest))
        return flat[0], flat[1], flat[2], initial, optional, tuple(rest[len(self.present) :])

    def pack(self, inputs, kernel, recurrent_kernel, initial, optional, extra):
        """The gradients in the flat order (see `of`)."""
        return [inputs, kernel, recurrent_kernel, *initial, *(optional[name] for name in self.present), *extra]


def run_recurrence(math, inputs, kernel, input_bias, initial_states, valid=None, options=RecurrenceOptions()):
    """Run a recurrence over batch-major `inputs`, with a hand-written gradient.

    Args:
        math: A `RecurrenceMath` holding the recurrent weights (tensors).
        inputs: `(batch, time, features)` (after input dropout).
        kernel, input_bias: The input weights (`input_bias` `None` for none).
        initial_states: List of `(batch, width)` tensors.
        valid: Optional boolean `(batch, time, 1)`, aligned with `inputs`;
            `False` carries the states over unchanged.
        options: `RecurrenceOptions`.

    Returns:
        A `RecurrenceResult`: `(sequence, final_states, loops)`.

    Graph loops run time-major (each step's slice contiguous): `inputs`
    are transposed (and reversed, `backwards`) first and the outputs
    transposed back (`TimeMajorLoops`). Compiled loops read and write the
    batch-major tensors in place (`BatchMajorLoops`), which saves those
    copies (see layers/README.md#batch-major-sequences-in-compiled-loops).
    """
    jit_compile = options.jit_compile
    # Without the sequence, the custom gradient's first output is the final `h`.
    sequence = options.sequence or options.save_for_gradient
    layout, flat = _Arguments.of(
        inputs,
        kernel,
        math.recurrent_kernel,
        initial_states,
        {"input_bias": input_bias, "recurrent_bias": math.recurrent_bias},
        math.extra_weights,
    )

    # One part (the whole batch), or its two halves (see `policy.splits_batch`).
    halves = bool(jit_compile) and policy.splits_batch(math, inputs, options.save_for_gradient)

    @tf.custom_gradient
    def recurrence(*flat):
        inputs, kernel, _, initial, optional, _ = layout.unpack(flat)
        initial = tuple(cut(s) for s in initial)
        # The loops see only values that no tape follows (see `detached`).
        x, w, b = cut(inputs), cut(kernel), cut(optional["input_bias"])
        # Compiled loops project each step's inputs themselves, joined with
        # the recurrent product (see `RecurrenceMath.preactivation`).
        inner = math.detached(w, b, joined=bool(jit_compile))
        parts = []
        for rows in _batch_parts(x, halves):
            take = _rows_taker(rows)
            if jit_compile:
                loops = BatchMajorLoops(inner.rows(rows), take(x), take(valid), options.backwards)
            else:
                loops = TimeMajorLoops(inner, x, w, b, valid, options.backwards)
            parts.append(_BatchPart(loops, tuple(take(s) for s in initial), take))

        if options.save_for_gradient:
            results = [part.loops.forward_saving(part.initial) for part in parts]
            saved = [result.saved for result in results]
        else:
            results = [part.loops.forward(part.initial, sequence) for part in parts]
            saved = None
        h_seq = _join_rows([result.outputs for result in results]) if sequence else None
        final_states = tuple(_join_rows(list(states)) for states in zip(*(result.final_states for result in results)))

        def gradient(d_first, *d_final_extra):
            # (No `nonlocal`: AutoGraph, converting a caller's code, breaks it.)
            what_was_saved = saved
            if what_was_saved is None:
                what_was_saved = [part.loops.forward_saving(part.initial).saved for part in parts]
            if h_seq is not None:
                d_h_seq = tf.zeros_like(h_seq) if d_first is None else d_first
                d_final = [tf.zeros_like(final_states[0])]
            else:
                # Only the final `h` was returned: its gradient enters the backward loop as the final state's.
                shape = tf.concat([tf.shape(x)[:2], [math.output_width]], axis=0)
                d_h_seq = tf.zeros(shape, final_states[0].dtype)
                d_final = [tf.zeros_like(final_states[0]) if d_first is None else d_first]
            for index, d in enumerate(d_final_extra):
                d_final.append(tf.zeros_like(final_states[index + 1]) if d is None else d)
            part_grads = []
            for part, part_saved in zip(parts, what_was_saved):
                loops, take = part.loops, part.take
                backward = loops.backward(
                    take(d_h_seq), tuple(take(d) for d in d_final), part_saved, options.truncate_every
                )
                recurrent = loops.math.finish(list(backward.writes), loops.previous_states(part.initial, part_saved))
                projected = input_gradients(recurrent.projected, loops.inputs, w, b is not None)
                part_grads.append(
                    _PartGradients(
                        loops.input_gradient(projected.inputs),
                        backward.d_initial,
                        projected.kernel,
                        recurrent.recurrent_kernel,
                        projected.bias,
                        recurrent.recurrent_bias,
                        tuple(recurrent.extra),
                    )
                )
            optional_grads = {
                "input_bias": _sum_parts([p.input_bias for p in part_grads]),
                "recurrent_bias": _sum_parts([p.recurrent_bias for p in part_grads]),
            }
            return layout.pack(
                _join_rows([p.inputs for p in part_grads]),
                _sum_parts([p.kernel for p in part_grads]),
                _sum_parts([p.recurrent_kernel for p in part_grads]),
                [_join_rows(list(g)) for g in zip(*(p.initial for p in part_grads))],
                optional_grads,
                [_sum_parts(list(g)) for g in zip(*(p.extra for p in part_grads))],
            )

        return (final_states[0] if h_seq is None else h_seq, *final_states[1:]), gradient

    outputs = recurrence(*flat)
    loops = "compiled halves" if halves else "compiled" if jit_compile else "graph"
    if not sequence:
        final_h = tf.ensure_shape(outputs[0], [inputs.shape[0], math.output_width])
        return RecurrenceResult(None, [final_h, *outputs[1:]], loops)
    # The static shape, for graph optimisations after the layer: TensorFlow's
    # graph optimiser cannot see through the compiled loops' outputs.
    h_seq = tf.ensure_shape(outputs[0], [inputs.shape[0], inputs.shape[1], math.output_width])
    return RecurrenceResult(h_seq, [h_seq[:, -1], *outputs[1:]], loops)
