"""Fused whole-sequence recurrences with hand-written back-propagation (TensorFlow).

The sequence layers in `layers.sequence` and `layers.variant_sequence` use
this package on the TensorFlow backend. For a whole sequence it runs the recurrence in one `tf.while_loop`
that does only the recurrent product and the gate arithmetic; in training
the loop also saves, per step, the derivative factors of the gates, and
back-propagation through time is written by hand (`tf.custom_gradient`): the
backward loop carries only the state gradients, and the weight and input
gradients are one matrix product each over all steps after the loop.
Without `training` the forward loop saves nothing; a gradient taken anyway
runs the saving forward loop once more, then the same backward loop.

With `jit_compile`, each loop is compiled by XLA into one program (on a CPU
this removes the graph executor's per-operation cost, which dominates a loop
of many small operations); each new input shape compiles once. Without it
the loops run as graph loops. Masks follow `keras.layers.RNN`: at a masked
step the states are carried over unchanged. Truncated back-propagation
through time cuts the state gradient at the start of every chunk of
`truncate_every` steps (in processing order).

Modules, from the layer down:
  inner_loop   `fused_inner_loop` and `fallback_reason`, for `layers.sequence`
  recurrence   `run_recurrence`, the driver with the hand-written gradient
  policy       measured thresholds: compiling, states as columns, batch halves
  layouts      time-major graph loops, batch-major compiled loops
  loops        the forward, saving forward and backward `tf.while_loop`s
  records      where each step's records wait for the backward loop
  cell_maths   each cell's step arithmetic, and `math_class_for`
  norm_maths   the layer-normalised cells' step arithmetic
  gated_maths  the LSTM variants' (peepholes, projection, coupled gate, clipping)
  maths        the step arithmetic shared by every cell
  gradients    the weight and input gradients after the loop
  activations  activations with derivatives in terms of their output
The figures behind the thresholds and the choices are in layers/README.md
(layers/README.md#measurements-behind-the-fused-paths-rules).
The code reads the thresholds and rules from `layers.fused.policy`: a test
or an experiment that changes one patches it there, not its re-export here.

This package imports TensorFlow; import it only on the TensorFlow backend.
"""

from layers._fused_checks import SUPPORTED_DTYPES
from layers.fused.activations import resolve_activation
from layers.fused.cell_maths import math_class_for
from layers.fused.inner_loop import (
    CallOptions,
    fallback_reason,
    fused_inner_loop,
)
from layers.fused.policy import (
    compiles_by_default,
    keeps_columns,
    splits_batch,
    whole_batches,
)
from layers.fused.recurrence import RecurrenceOptions, run_recurrence

__all__ = [
    "SUPPORTED_DTYPES",
    "CallOptions",
    "RecurrenceOptions",
    "compiles_by_default",
    "fallback_reason",
    "fused_inner_loop",
    "keeps_columns",
    "math_class_for",
    "resolve_activation",
    "run_recurrence",
    "splits_batch",
    "whole_batches",
]
