"""The three `tf.while_loop`s of a recurrence and what they read and write per step.

`forward_only` (inference: nothing saved), `forward_saving_loop` (training:
saves each step's records) and `backward_loop` (the hand-written
back-propagation through time). They run as graph loops over time-major
sequences or, compiled with XLA, over batch-major ones in place (see
`layers.fused.layouts`); `Steps` and the output writers hide the difference.
"""

from typing import NamedTuple

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as _xla


class ForwardResult(NamedTuple):
    """`h` at every step (processing order) and the final states."""

    outputs: tf.Tensor
    final_states: tuple


class SavingResult(NamedTuple):
    """`forward_saving_loop`'s results: `ForwardResult`'s, the records, and the states entering each step."""

    outputs: tf.Tensor
    final_states: tuple
    records: object
    previous: tf.Tensor | None


class BackwardResult(NamedTuple):
    """The gradients of the initial states and each of the steps' writes, as sequences.

    A math's summed writes (`RecurrenceMath.sum_widths`) follow its
    per-step ones in `writes`, each summed over the batch and the steps.
    """

    d_initial: tuple
    writes: tuple


class Steps:
    """Per-step reads of a sequence, and writes of a sequence like it.

    `time_axis` 0 (time-major): `sequence[t]` slices along the first axis and
    shares the tensor's memory (`TensorArray.unstack` would copy the whole
    sequence first); outputs go to a `TensorArray`.

    `time_axis` 1 (batch-major, compiled loops only): `sequence[:, t]`, read
    from the end with `backwards`; outputs are written in place into a
    `(batch, time, n)` tensor, at the processing step `t`.
    """

    def __init__(self, sequence, time_axis=0, backwards=False):
        self.sequence = sequence
        self.time_axis = time_axis
        self.backwards = backwards
        self.length = tf.shape(sequence)[time_axis]

    def read(self, t):
        if self.time_axis == 0:
            return self.sequence[t]
        return self.sequence[:, self.length - 1 - t if self.backwards else t]

    def outputs(self, width):
        """A writer of `(batch, width)` steps, in processing order, laid out like this sequence."""
        if self.time_axis == 0:
            return TimeMajorOutputs(self.sequence.dtype, self.length)
        return BatchMajorOutputs(self.sequence, width)


class TimeMajorOutputs:
    """Writes `(batch, width)` steps into a `TensorArray`, stacked time-major at the end (graph loops)."""

    def __init__(self, dtype, length):
        self.dtype, self.length = dtype, length

    def empty(self):
        return tf.TensorArray(self.dtype, size=self.length, clear_after_read=False)

    def write(self, out, t, value):
        return out.write(t, value)

    def done(self, out):
        return out.stack()


class BatchMajorOutputs:
    """Writes `(batch, width)` steps in place into a `(batch, time, width)` tensor (compiled loops).

    Step `t` goes to time index `t`, or `time - 1 - t` with `backwards` (so
    that a sequence read backwards is written back in its own order).
    """

    def __init__(self, like, width, backwards=False):
        # Static dimensions where known (as they are in a compiled loop), so
        # that the graph around the loop knows the output's shape.
        batch, length = like.shape[0], like.shape[1]
        dynamic = tf.shape(like)
        batch = dynamic[0] if batch is None else batch
        length = dynamic[1] if length is None else length
        self.shape = [batch, length, width]
        self.length = length
        self.dtype = like.dtype
        self.backwards = backwards

    def empty(self):
        return tf.zeros(self.shape, self.dtype)

    def write(self, out, t, value):
        index = self.length - 1 - t if self.backwards else t
        return _xla.dynamic_update_slice(out, value[:, None, :], tf.stack([0, index, 0]))

    def done(self, out):
        return out


def _chunk_start(t, truncate_every):
    return tf.logical_and(t > 0, tf.math.floormod(t, truncate_every) == 0)


def forward_only(math, input_steps, kernel, input_bias, initial_states, valid_steps, sequence=True):
    """The recurrence with nothing saved for the gradient, as a `ForwardResult`.

    `input_steps` and `valid_steps` (optional) are `Steps`; the outputs have the
    layout of `input_steps`, in processing order. Without `sequence` (a
    layer that returns its last output only) no step's output is written,
    and `outputs` is `None`.

    Each step projects its own inputs (`x_t @ kernel + input_bias`, a small
    product; joined with the recurrent one in compiled loops) inside the
    loop. Projecting all steps at once first, as training does, writes the
    whole projected sequence to memory and reads it back a step at a time;
    without a backward pass to share it with, the per-step product measured
    faster, compiled loops or not (see
    layers/README.md#per-step-input-projection-in-inference).
    """
    length = input_steps.length

    def projected(t):
        if math.joined:
            return input_steps.read(t)  # the step projects them itself
        p_t = tf.matmul(input_steps.read(t), kernel)
        return p_t if input_bias is None else tf.nn.bias_add(p_t, input_bias)

    outputs = input_steps.outputs(math.output_width) if sequence else None

    def body(t, states, *out):
        states = list(states)
        new_states = math.step(projected(t), states)
        if valid_steps is not None:
            valid_t = valid_steps.read(t)
            new_states = [tf.where(valid_t, new, old) for new, old in zip(new_states, states)]
        if outputs is None:
            return t + 1, tuple(new_states)
        return t + 1, tuple(new_states), outputs.write(out[0], t, new_states[0])

    loop_variables = (tf.constant(0), tuple(initial_states)) + (() if outputs is None else (outputs.empty(),))
    _, final_states, *out = tf.while_loop(lambda t, *_: t < length, body, loop_variables)
    return ForwardResult(None if outputs is None else outputs.done(out[0]), tuple(final_states))


def forward_saving_loop(math, record_store, input_steps, valid_steps, initial, h_out, prev_out=None):
    """The forward loop of training, as a `SavingResult`.

    `input_steps` reads the projected inputs of each step, or with
    `math.joined` the raw inputs; `valid_steps` (optional) the mask. `h_out`
    writes the new state `h` of each step; `prev_out` (optional) the state
    entering each step, as the recurrent product sees it (after recurrent
    dropout), for the recurrent kernel's gradient (`previous`, else `None`).
    """
    length = input_steps.length

    def body(t, states, out, prev, records_so_far):
        states = list(states)
        new_states, records = math.step_saving(input_steps.read(t), states)
        if prev_out is not None:
            prev = prev_out.write(prev, t, math.dropped(states[0]))
        if valid_steps is not None:
            valid_t = valid_steps.read(t)
            new_states = [tf.where(valid_t, new, old) for new, old in zip(new_states, states)]
        out = h_out.write(out, t, new_states[0])
        return t + 1, tuple(new_states), out, prev, record_store.save(records_so_far, t, records)

    _, final_states, out, prev, records = tf.while_loop(
        lambda t, *_: t < length,
        body,
        (
            tf.constant(0),
            tuple(initial),
            h_out.empty(),
            tf.zeros([0]) if prev_out is None else prev_out.empty(),
            record_store.empty(length),
        ),
    )
    prev_seq = None if prev_out is None else prev_out.done(prev)
    return SavingResult(h_out.done(out), tuple(final_states), record_store.done(records), prev_seq)


def backward_loop(math, record_store, d_h_steps, valid_steps, d_final, records, write_outs, truncate_every):
    """The backward loop, as a `BackwardResult`.

    `d_h_steps` reads the gradient of each step's output `h`, `valid_steps`
    (optional) the mask; `write_outs` write each of the step's per-step
    `writes`. The writes after those (`math.sum_widths()`) are summed over
    the batch into loop variables instead: a gain's or a shift's gradient
    needs only their sum, which saves writing and reading them per step.
    """
    length = d_h_steps.length
    per_step = len(write_outs)
    dtype = d_final[0].dtype

    def body(t, state_grads, records, write_arrays, sums):
        state_grads = list(state_grads)
        state_grads[0] = state_grads[0] + d_h_steps.read(t)
        records, records_t = record_store.load(records, t)
        if valid_steps is not None:
            # Masked step: the state passed through unchanged, and so does
            # its gradient; the step itself gets none.
            valid_t = valid_steps.read(t)
            zeros = [tf.zeros_like(g) for g in state_grads]  # (states may differ in width)
            through = [tf.where(valid_t, g, zero) for g, zero in zip(state_grads, zeros)]
            carried = [tf.where(valid_t, zero, g) for g, zero in zip(state_grads, zeros)]
            prev_grads, writes = math.backward_step(through, records_t)
            prev_grads = [p + c for p, c in zip(prev_grads, carried)]
        else:
            prev_grads, writes = math.backward_step(state_grads, records_t)
        if truncate_every is not None:
            # A chunk starts at this step: its incoming states are constants,
            # so no gradient reaches the previous chunk.
            cut = _chunk_start(t, truncate_every)
            prev_grads = [tf.where(cut, tf.zeros_like(g), g) for g in prev_grads]
        write_arrays = tuple(o.write(a, t, w) for o, a, w in zip(write_outs, write_arrays, writes))
        sums = tuple(s + tf.reduce_sum(w, axis=0) for s, w in zip(sums, writes[per_step:]))
        return t - 1, tuple(prev_grads), records, write_arrays, sums

    _, d_initial, _, write_arrays, sums = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (
            length - 1,
            tuple(d_final),
            records,
            tuple(o.empty() for o in write_outs),
            tuple(tf.zeros([width], dtype) for width in math.sum_widths()),
        ),
    )
    return BackwardResult(tuple(d_initial), tuple(o.done(a) for o, a in zip(write_outs, write_arrays)) + sums)
