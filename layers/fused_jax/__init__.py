"""Fused whole-sequence recurrences with hand-written back-propagation (JAX).

The sequence layers in `layers.sequence` use this package on the JAX
backend, as they use `layers.fused` on TensorFlow. For a whole sequence it
runs the recurrence in one `jax.lax.scan` that does only each step's input
and recurrent products and the gate arithmetic (projecting all steps'
inputs with one product first measured slower in XLA's loop; see
`inner_loop.PROJECT_EACH_STEP`). Its gradient is written by hand (`jax.custom_vjp`):
under differentiation the forward scan also saves, per step, the derivative
factors of the gates; the backward pass is one reverse scan that carries
only the state gradients, and the weight and input gradients are one
matrix product each over all steps after it. Masks follow
`keras.layers.RNN` (at a masked step the states are carried over
unchanged); truncated back-propagation through time cuts the state
gradient at the start of every chunk of `truncate_every` steps
(processing order), as the TensorFlow path does.

Modules, from the layer down:
  inner_loop   `fused_inner_loop` and `fallback_reason`, for `layers.sequence`
  recurrence   `run_recurrence`: the scans and the `custom_vjp`
  cell_maths   each cell's step arithmetic, its backward step and weight gradients
  activations  activations with derivatives in terms of their output

This package imports JAX; import it only on the JAX backend.
"""

from layers._fused_checks import SUPPORTED_DTYPES
from layers.fused_jax.activations import resolve_activation
from layers.fused_jax.cell_maths import Weights, math_class_for, math_for
from layers.fused_jax.inner_loop import (
    CallOptions,
    fallback_reason,
    fused_inner_loop,
)
from layers.fused_jax.recurrence import Plan, RecurrenceResult, run_recurrence

__all__ = [
    "SUPPORTED_DTYPES",
    "CallOptions",
    "Plan",
    "RecurrenceResult",
    "Weights",
    "fallback_reason",
    "fused_inner_loop",
    "math_class_for",
    "math_for",
    "resolve_activation",
    "run_recurrence",
]
