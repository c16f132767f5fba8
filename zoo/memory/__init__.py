"""Long-range memory tasks: the adding problem and the copy-memory task.

Two synthetic tasks whose answer depends on inputs a known number of steps in
the past, so they measure how far back a model can remember and learn:

- *Adding problem* (Hochreiter & Schmidhuber, 1997): a sequence of `length`
  pairs (value, marker), values uniform on [0, 1), exactly two markers equal
  to 1; the target is the sum of the two marked values. Predicting the mean
  (1.0) for every sequence gives a mean squared error of Var(U1 + U2) = 1/6.
  With `mark_distance=None` one mark falls uniformly in the first half and
  the other in the second half; with `mark_distance=d` the first mark sits
  exactly `d` steps before the last step and the second mark on the last
  step, so the only long-range dependency has a known distance `d`.
- *Copy-memory task* (Arjovsky, Shah & Bengio, 2016): `copy_length` symbols
  drawn from `alphabet_size` letters, then `delay - 1` blanks, a delimiter,
  and `copy_length` blanks; the target is blank everywhere except the last
  `copy_length` steps, which must repeat the symbols. A model without memory
  can at best predict blank where the target is always blank and a uniform
  guess on the last steps, a cross-entropy per step of
  `copy_length * log(alphabet_size) / (delay + 2 * copy_length)`.

The package builds the compared models at matched parameter counts
(`model`: our `SimpleRNN`, `LSTM`, `GRU` and a causal dilated convolution
with a fixed receptive field, the study's default four, and the variant
cells of `zoo.cells` such as `layernorm_lstm`), trains one of them on one task
(`train`), measures how the loss at the last step depends on the recurrent
state at each earlier step (`evaluate.state_gradient_norms`), and runs the
whole study with its report (`study`). Importing it registers the model
builders `memory/<cell>` for every cell name and `memory/conv`.
"""

from zoo.memory.baselines import baseline_error, empirical_baseline_error
from zoo.memory.config import QUICK_STUDY, MemoryConfig, StudyConfig
from zoo.memory.data import (
    TASKS,
    adding_batch,
    copy_batch,
    copy_layout,
    make_batch,
    make_dataset,
)
from zoo.memory.evaluate import (
    copy_symbol_accuracy,
    input_gradient_reach,
    model_state_gradient_norms,
    reachable_distance,
    state_gradient_norms,
    untruncated_copy,
)
from zoo.memory.model import (
    DEFAULT_MODELS,
    MODELS,
    build_model,
    parameter_count,
    receptive_field,
    width_for_budget,
)
from zoo.memory.train import train_and_evaluate

__all__ = [
    "baseline_error",
    "empirical_baseline_error",
    "QUICK_STUDY",
    "MemoryConfig",
    "StudyConfig",
    "TASKS",
    "adding_batch",
    "copy_batch",
    "copy_layout",
    "make_batch",
    "make_dataset",
    "copy_symbol_accuracy",
    "input_gradient_reach",
    "model_state_gradient_norms",
    "reachable_distance",
    "state_gradient_norms",
    "untruncated_copy",
    "DEFAULT_MODELS",
    "MODELS",
    "build_model",
    "parameter_count",
    "receptive_field",
    "width_for_budget",
    "train_and_evaluate",
]
