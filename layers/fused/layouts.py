"""How one call lays out its sequences for the loops: time-major graph loops or batch-major compiled ones.

Graph loops (`TimeMajorLoops`) transpose the sequences to time-major once
and, in training, project all steps' inputs with one matrix product before
the loop. Compiled loops (`BatchMajorLoops`) differ in two ways that
measured faster inside XLA: every step forms its input and recurrent
products as one, `[x_t, h] @ [kernel; recurrent_kernel]`, and they read and
write the batch-major sequences in place (see
layers/README.md#joined-input-and-recurrent-products and
layers/README.md#batch-major-sequences-in-compiled-loops). The compiled
inference loop of a wide layer keeps its states as columns
(`policy.keeps_columns`), and inside a traced function the halves of a
batch run as two calls at once (`policy.splits_batch`). The weight-gradient
products stay outside the compiled loops, as TensorFlow's own
matrix-product kernels.

`TimeMajorLoops` and `BatchMajorLoops` give `run_recurrence` one interface:
`forward(initial, sequence)`, `forward_saving(initial)`, `backward(...)`,
`previous_states(initial, saved)` and `input_gradient(d_inputs)`, plus
`math` and `inputs` (in the loops' layout and order).
"""

from typing import NamedTuple

import tensorflow as tf

from layers.fused import policy
from layers.fused.gradients import PreviousStates, ShiftedStates
from layers.fused.loops import (
    BatchMajorOutputs,
    ForwardResult,
    Steps,
    backward_loop,
    forward_only,
    forward_saving_loop,
)
from layers.fused.records import DenseRecords, ListRecords


class Saved(NamedTuple):
    """What the backward pass needs from a saving forward loop.

    `records`: each step's records; `states`: the loop's output states
    (time-major loops) or the states entering each step (batch-major).
    """

    records: object
    states: tf.Tensor


class SavedForward(NamedTuple):
    """A saving forward loop's outputs `h`, its final states, and what it saved."""

    outputs: tf.Tensor
    final_states: tuple
    saved: Saved


def _swap_time_batch(sequence):
    """Transpose the first two axes: time-major <-> batch-major."""
    return tf.transpose(sequence, [1, 0, 2])


def _project(inputs, kernel, bias):
    """`inputs @ kernel + bias` for time-major `inputs`, as one matrix product."""
    shape = tf.shape(inputs)
    projected = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel)
    if bias is not None:
        projected = tf.nn.bias_add(projected, bias)
    return tf.reshape(projected, [shape[0], shape[1], kernel.shape[-1]])


def _compiled(function):
    """`function` compiled with XLA as one cluster."""
    return tf.function(function, jit_compile=True, autograph=False)


class TimeMajorLoops:
    """The loops of one call as graph loops over time-major sequences.

    The inputs (and mask) are transposed to time-major, and reversed when
    going backwards, once; training projects all steps' inputs with one
    product before the loop.
    """

    def __init__(self, math, x, kernel, input_bias, valid, backwards):
        self.math = math
        self.kernel, self.input_bias = kernel, input_bias
        self.backwards = backwards
        self.record_store = ListRecords(x.dtype, math.record_count)
        self.x = x
        self.valid = None if valid is None else self._time_major(valid)
        self._x_tm = None

    def _time_major(self, sequence):
        """`(batch, time, ...)` -> `(time, batch, ...)` in processing order."""
        sequence = _swap_time_batch(sequence)
        return tf.reverse(sequence, [0]) if self.backwards else sequence

    @property
    def inputs(self):
        """The inputs in the loops' layout and order (as the weight gradients pair them with the writes)."""
        if self._x_tm is None:
            self._x_tm = self._time_major(self.x)
        return self._x_tm

    def _valid_steps(self):
        return None if self.valid is None else Steps(self.valid)

    def forward(self, initial, sequence=True):
        result = forward_only(
            self.math, Steps(self.inputs), self.kernel, self.input_bias, initial, self._valid_steps(), sequence
        )
        return ForwardResult(None if result.outputs is None else _swap_time_batch(result.outputs), result.final_states)

    def forward_saving(self, initial):
        """A `SavedForward`; its `saved` is what `backward` needs."""
        # The projection is made here, so that it is freed after the
        # forward loop: the backward pass needs only the inputs.
        steps = Steps(_project(self.inputs, self.kernel, self.input_bias))
        result = forward_saving_loop(
            self.math, self.record_store, steps, self._valid_steps(), initial, steps.outputs(self.math.output_width)
        )
        return SavedForward(
            _swap_time_batch(result.outputs), result.final_states, Saved(result.records, result.outputs)
        )

    def backward(self, d_h_seq, d_final, saved, truncate_every):
        d_h_steps = Steps(_swap_time_batch(d_h_seq))
        outs = [d_h_steps.outputs(width) for width in self.math.write_widths()]
        return backward_loop(
            self.math, self.record_store, d_h_steps, self._valid_steps(), d_final, saved.records, outs, truncate_every
        )

    def previous_states(self, initial, saved):
        return ShiftedStates(self.math.dropped(initial[0]), self.math.dropped(saved.states))

    def input_gradient(self, d_inputs):
        """`d_inputs` (time-major, processing order) in the layout and order of the inputs."""
        return _swap_time_batch(tf.reverse(d_inputs, [0]) if self.backwards else d_inputs)


class BatchMajorLoops:
    """The loops of one call compiled with XLA, over the batch-major sequences in place.

    A backwards recurrence reads its inputs from the end. The outputs `h`
    are written in processing order; the states entering each step and the
    backward loop's writes in the inputs' order, so that the weight
    gradients pair them with the inputs as they are.
    """

    def __init__(self, math, x, valid, backwards):
        self.math = math
        self.inputs, self.valid = x, valid  # already in the loops' layout and order
        self.backwards = backwards
        self.record_store = DenseRecords(x.dtype, math.record_count)

    def _valid_steps(self, valid):
        return None if valid is None else Steps(valid, 1, self.backwards)

    def _program(self, key, make_loop):
        """The loop `make_loop()` returns, compiled; shared by every part of the batch with the same math.

        The halves of a batch (`policy.splits_batch`) then call one compiled
        program, compiled once for both when their shapes agree; a part
        with its own math (its rows of a recurrent dropout mask) has its own.
        `make_loop` runs only for the first part.
        """
        programs = self.math.programs
        key = (key, self.backwards)
        if key not in programs:
            programs[key] = _compiled(make_loop())
        return programs[key]

    def forward(self, initial, sequence=True):
        in_columns = self.math.columns_supported and policy.keeps_columns(self.math)
        loop = self._loop_in_columns(sequence) if in_columns else self._loop_in_rows(sequence)
        return loop(self.inputs, initial, self.valid)

    def _loop_in_rows(self, sequence):
        def loop(x, initial, valid):
            steps = Steps(x, 1, self.backwards)
            return forward_only(self.math, steps, None, None, initial, self._valid_steps(valid), sequence)

        return self._program(("forward in rows", sequence), lambda: loop)

    def _loop_in_columns(self, sequence):
        """The compiled inference loop with states as columns, `(units, batch)` (see `policy.COLUMN_MIN_WIDTH`)."""
        return self._program(("forward in columns", sequence), lambda: self._make_loop_in_columns(sequence))

    def _make_loop_in_columns(self, sequence):
        """The inputs (and mask) are transposed to `(time, n, batch)` in processing order inside the compiled
        program, and the outputs back; the transposed kernels are made here, once for the parts that share it."""
        math = self.math.in_columns()
        backwards = self.backwards

        def columns(sequence):
            sequence = tf.transpose(sequence, [1, 2, 0])
            return tf.reverse(sequence, [0]) if backwards else sequence

        def loop(x, initial, valid):
            in_columns = forward_only(
                math,
                Steps(columns(x)),
                None,
                None,
                [tf.transpose(state) for state in initial],
                None if valid is None else Steps(columns(valid)),
                sequence,
            )
            return ForwardResult(
                None if in_columns.outputs is None else tf.transpose(in_columns.outputs, [2, 0, 1]),
                tuple(tf.transpose(state) for state in in_columns.final_states),
            )

        return loop

    def forward_saving(self, initial):
        def loop(x, initial, valid):
            units = self.math.output_width
            result = forward_saving_loop(
                self.math,
                self.record_store,
                Steps(x, 1, self.backwards),
                self._valid_steps(valid),
                initial,
                BatchMajorOutputs(x, units),
                BatchMajorOutputs(x, units, self.backwards),
            )
            return SavedForward(result.outputs, result.final_states, Saved(result.records, result.previous))

        return self._program("saving forward", lambda: loop)(self.inputs, initial, self.valid)

    def backward(self, d_h_seq, d_final, saved, truncate_every):
        def loop(d_h_seq, d_final, records, valid):
            outs = [BatchMajorOutputs(d_h_seq, width, self.backwards) for width in self.math.write_widths()]
            return backward_loop(
                self.math,
                self.record_store,
                Steps(d_h_seq, 1),
                self._valid_steps(valid),
                d_final,
                records,
                outs,
                truncate_every,
            )

        return self._program(("backward", truncate_every), lambda: loop)(d_h_seq, d_final, saved.records, self.valid)

    def previous_states(self, initial, saved):
        return PreviousStates(saved.states)

    def input_gradient(self, d_inputs):
        return d_inputs
