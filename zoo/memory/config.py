"""Configurations of one memory run (`MemoryConfig`) and of the whole study (`StudyConfig`)."""

import dataclasses
from typing import Literal

from zoo import cells
from zoo.config import (
    DIVERGENCE_FACTOR,
    require_choice,
    require_divergence_factor,
    require_float,
    require_int,
    require_seed,
)
from zoo.errors import UserError
from zoo.memory.data import TASKS, copy_layout
from zoo.memory.model import DEFAULT_MODELS, MODELS, require_model, width_for_budget

# The longest sequence (adding length or copy delay) a run accepts. The
# stored states of back-propagation through time grow with the length T:
# for an LSTM of the default budget (about 33 units, 6 x 33 values kept per
# step) and batch 64 they hold 64 x T x 198 float32 values, about 0.5 GB
# at T = 10,000; far longer sequences failed with a MemoryError.
MAX_LENGTH = 10_000


@dataclasses.dataclass
class MemoryConfig:
    """One model on one memory task."""

    task: Literal["adding", "copy"] = "adding"  # which task
    model: str = "lstm"  # which model: a cell of zoo.cells (rnn, lstm, gru, layernorm_lstm, ...) or conv
    length: int = 100  # T: adding sequence length, or the copy task's delay
    parameter_budget: int = 4500  # trainable weights; the width is chosen to come closest
    conv_layers: int = 4  # causal conv layers, dilations 1, 2, 4, ... (receptive field 1 + 2*(2**n - 1))
    implementation: str = "ours"  # recurrent layers: ours (layers/) or keras (Keras's; rnn, lstm, gru only)
    bptt_steps: int | None = None  # truncated BPTT chunk length for recurrent models (ours only); None = full
    mark_distance: int | None = None  # adding: None = one mark per half; d = first mark d steps before the last
    copy_length: int = 10  # copy: letters to remember
    alphabet_size: int = 8  # copy: distinct letters
    learning_rate: float = 1e-2  # Adam step size
    clipnorm: float = 1.0  # gradient norm clipping (keeps the plain RNN from exploding)
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    seed: int = 0  # initial weights and data

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        require_choice("task", self.task, TASKS)
        require_model("model", self.model)
        for name in ("length", "parameter_budget", "conv_layers", "copy_length", "alphabet_size"):
            require_int(name, getattr(self, name))
        require_int("length", self.length, maximum=MAX_LENGTH)
        cells.require_implementation(self.implementation, [self.model], "model")
        if self.bptt_steps is not None:
            require_int("bptt_steps", self.bptt_steps)
            if self.model == "conv":
                raise UserError("Received `bptt_steps` for model 'conv'; truncation applies to recurrent models only.")
            if self.implementation == "keras":
                raise UserError(
                    f"Received bptt_steps={self.bptt_steps} with implementation='keras'; Keras's layers have no "
                    "truncated back-propagation through time (leave bptt_steps unset, or set implementation=ours)."
                )
        if self.mark_distance is not None:
            if self.task != "adding":
                raise UserError("Received `mark_distance` for task 'copy'; it applies to the adding problem only.")
            if not 1 <= self.mark_distance <= self.length - 1:
                raise UserError(
                    f"Received an invalid value for `mark_distance`: {self.mark_distance}; "
                    f"expected an integer in [1, length - 1 = {self.length - 1}]."
                )
        if self.task == "adding" and self.length < 2:
            raise UserError(
                f"Received an invalid value for `length`: {self.length}; the adding problem needs at least 2."
            )
        for name in ("learning_rate", "clipnorm"):
            require_float(name, getattr(self, name), above=0.0)
        require_seed("seed", self.seed)

    @property
    def sequence_length(self):
        if self.task == "adding":
            return self.length
        return copy_layout(self.length, self.copy_length, self.alphabet_size)[0]

    @property
    def width(self):
        return width_for_budget(
            self.model, self.parameter_budget, self.task, self.conv_layers, self.copy_length, self.alphabet_size
        )


@dataclasses.dataclass
class StudyConfig:
    """The whole memory study: length ladders, gradient flow, truncated BPTT."""

    adding_lengths: tuple[int, ...] = (25, 50, 100, 200, 400)  # adding problem lengths T to train at
    copy_delays: tuple[int, ...] = (10, 25, 50, 100)  # copy task delays T (sequence length T + 2 * copy_length)
    models: tuple[str, ...] = DEFAULT_MODELS  # compared models: conv and cells (rnn, lstm, gru, layernorm_lstm, ...)
    implementation: str = "ours"  # ours (layers/) or keras (Keras's; rnn, lstm, gru only; truncation_models empty)
    train_steps: int = 400  # batches per training run, the same for every model and length
    batch_size: int = 64  # sequences per batch
    evaluations: int = 4  # test-error measurements per run (train_steps must be a multiple)
    test_size: int = 512  # sequences in each fixed test batch
    parameter_budget: int = 4500  # trainable weights per model; widths are chosen to come closest
    conv_layers: int = 4  # causal conv layers (kernel 3, dilations 1, 2, 4, ...)
    learning_rate: float = 1e-2  # Adam step size for every run
    clipnorm: float = 1.0  # gradient norm clipping for every run
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    copy_length: int = 10  # copy task: letters to remember
    alphabet_size: int = 8  # copy task: distinct letters
    solve_fraction: float = 0.1  # a length counts as solved when test error < solve_fraction * baseline
    probe_length: int = 100  # adding length whose gradient-flow profile is tabulated and plotted (0 = none)
    probe_size: int = 32  # test sequences averaged in each gradient-flow profile
    truncation_length: int = 60  # adding length for the truncated-BPTT runs
    truncation_distance: int = 12  # first mark this many steps before the last step (second mark on it)
    truncation_bptt_steps: tuple[int, ...] = (4, 10, 12, 15, 30)  # chunk lengths tried (full BPTT is always added)
    truncation_models: tuple[str, ...] = ("lstm", "gru")  # recurrent models for the truncated-BPTT runs
    max_minutes_per_run: float | None = 10.0  # wall-clock cap per training run; None = no cap
    seed: int = 0  # initial weights and data of every run

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        for name in (
            "train_steps",
            "batch_size",
            "evaluations",
            "test_size",
            "parameter_budget",
            "conv_layers",
            "copy_length",
            "alphabet_size",
            "probe_size",
            "truncation_length",
            "truncation_distance",
        ):
            require_int(name, getattr(self, name))
        if self.train_steps % self.evaluations:
            raise UserError(
                f"Received train_steps={self.train_steps} and evaluations={self.evaluations}; "
                "train_steps must be a multiple of evaluations."
            )
        for name in ("adding_lengths", "copy_delays", "truncation_bptt_steps"):
            for value in getattr(self, name):
                require_int(name, value)
        for name in ("adding_lengths", "copy_delays", "truncation_length"):
            values = getattr(self, name)
            for value in values if isinstance(values, tuple) else (values,):
                require_int(name, value, maximum=MAX_LENGTH, expected=f"lengths from 1 to {MAX_LENGTH:,}")
        for length in self.adding_lengths:
            if length < 2:
                raise UserError(f"Received adding_lengths containing {length}; each length must be at least 2.")
        if not self.models:
            raise UserError(f"Received an empty `models`; expected some of {list(MODELS)}.")
        for model in self.models:
            require_model("models", model)
        for model in self.truncation_models:
            cells.canonical(model, "truncation_models")
        cells.require_implementation(self.implementation, self.models, "models")
        if self.implementation == "keras" and self.truncation_models:
            raise UserError(
                f"Received implementation='keras' with truncation_models={','.join(self.truncation_models)}; the "
                "truncated-BPTT runs need `bptt_steps`, which Keras's layers do not have (set truncation_models= "
                "to leave them out, or implementation=ours)."
            )
        if self.probe_length and self.probe_length not in self.adding_lengths:
            raise UserError(
                f"Received probe_length={self.probe_length}, which is not among adding_lengths "
                f"{list(self.adding_lengths)}; pick one of them or 0 for no gradient-flow profile."
            )
        if self.probe_length < 0:
            raise UserError(f"Received probe_length={self.probe_length}; expected 0 or a length in adding_lengths.")
        if not 1 <= self.truncation_distance <= self.truncation_length - 1:
            raise UserError(
                f"Received truncation_distance={self.truncation_distance}; expected an integer in "
                f"[1, truncation_length - 1 = {self.truncation_length - 1}]."
            )
        require_float("solve_fraction", self.solve_fraction, above=0.0, maximum=1.0)
        require_float("max_minutes_per_run", self.max_minutes_per_run, above=0.0, optional=True)
        for name in ("learning_rate", "clipnorm"):
            require_float(name, getattr(self, name), above=0.0)
        require_seed("seed", self.seed)

    def run_config(self, task, model, length, bptt_steps=None, mark_distance=None):
        """The `MemoryConfig` of one run of this study."""
        config = MemoryConfig(
            task=task,
            model=model,
            implementation=self.implementation,
            length=length,
            parameter_budget=self.parameter_budget,
            conv_layers=self.conv_layers,
            bptt_steps=bptt_steps,
            mark_distance=mark_distance,
            copy_length=self.copy_length,
            alphabet_size=self.alphabet_size,
            learning_rate=self.learning_rate,
            clipnorm=self.clipnorm,
            divergence_factor=self.divergence_factor,
            seed=self.seed,
        )
        config.validate()
        return config


QUICK_STUDY = dict(
    adding_lengths=(8, 16),
    copy_delays=(4,),
    train_steps=20,
    batch_size=16,
    evaluations=2,
    test_size=64,
    parameter_budget=600,
    conv_layers=2,
    copy_length=3,
    alphabet_size=4,
    probe_length=16,
    probe_size=8,
    truncation_length=12,
    truncation_distance=3,
    truncation_bptt_steps=(2, 6),
    truncation_models=("lstm",),
    max_minutes_per_run=2.0,
)


"""Overrides of `StudyConfig` for `--quick`: a smoke run of every part in about a minute."""
