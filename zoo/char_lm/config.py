"""The character language model's run configuration (`--set key=value`)."""

import dataclasses

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

# How the learning rate moves during training (`lr_schedule`).
LR_SCHEDULES = ("constant", "cosine")
# What one dropout mask covers (`dropout_mask`): each element, or a whole row of `seq_len` steps.
DROPOUT_MASKS = ("element", "sequence")
# The highest Markov baseline order accepted in `markov_orders`.
MAX_MARKOV_ORDER = 20


@dataclasses.dataclass
class CharLMConfig:
    """Hyper-parameters of a character language model run (`--set key=value`)."""

    cell: str = "lstm"  # recurrent cell of every layer: rnn, lstm, gru, layernorm_lstm, ... (see zoo.cells)
    units: int = 512  # state size of each recurrent layer
    proj_units: int = 0  # projection_lstm only: size of its output and fed-back state; 0 = units // 2
    implementation: str = "ours"  # recurrent layers: ours (layers/) or keras (Keras's; rnn, lstm, gru only)
    num_layers: int = 1  # recurrent layers stacked
    embedding_dim: int = 64  # size of the learned character vectors
    dropout: float = 0.35  # dropout on the embedding and after every recurrent layer (training only)
    dropout_mask: str = "element"  # element, or sequence: one mask per row for all its steps (locked dropout)
    recurrent_dropout: float = 0.0  # dropout on each recurrent layer's fed-back state (training only)
    seq_len: int = 50  # characters per batch row: the truncated-BPTT span (the state still carries on)
    batch_size: int = 32  # contiguous streams the training text is cut into
    epochs: int = 22  # passes over the training text (max_minutes may end sooner); the cosine decay spans them
    learning_rate: float = 3e-3  # Adam step size (the starting one, with a schedule)
    lr_schedule: str = "cosine"  # constant, or cosine: decays from learning_rate to 0 over decay_epochs
    decay_epochs: int = 0  # cosine only: epochs the decay spans (0: epochs); past them the rate stays 0
    clip_norm: float = 5.0  # gradients are rescaled to at most this global norm
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) of the weight matrices, scaled by the rate; 0: off
    ema_decay: float = 0.0  # validate and checkpoint a moving average of the weights with this decay per step; 0: off
    validation_fraction: float = 0.1  # last fraction of the text held out for validation
    max_minutes: float | None = None  # wall-clock training budget; ends after the current batch
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    markov_orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # Markov baseline orders (0 to 20) reported beside the model
    seed: int = 0  # seeds weights, dropout and sampling

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        for name in ("units", "num_layers", "embedding_dim", "seq_len", "batch_size", "epochs"):
            require_int(name, getattr(self, name))
        require_seed("seed", self.seed)
        cells.canonical(self.cell)
        cells.require_proj_units(self.proj_units, [self.cell])
        cells.require_implementation(self.implementation, [self.cell])
        for name in ("dropout", "recurrent_dropout"):
            require_float(name, getattr(self, name), minimum=0.0, below=1.0)
        for name in ("learning_rate", "clip_norm"):
            require_float(name, getattr(self, name), above=0.0)
        require_float("weight_decay", self.weight_decay, minimum=0.0, below=1.0)
        require_float("ema_decay", self.ema_decay, minimum=0.0, below=1.0)
        require_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        require_choice("dropout_mask", self.dropout_mask, DROPOUT_MASKS)
        require_int("decay_epochs", self.decay_epochs, minimum=0)
        require_float("validation_fraction", self.validation_fraction, above=0.0, below=1.0)
        require_float("max_minutes", self.max_minutes, above=0.0, optional=True)
        if not self.markov_orders:
            raise UserError("Received an empty `markov_orders`; expected at least one order, e.g. 1,2,3.")
        for order in self.markov_orders:
            require_int(
                "markov_orders",
                order,
                minimum=0,
                maximum=MAX_MARKOV_ORDER,
                expected=f"orders from 0 to {MAX_MARKOV_ORDER} (longer contexts are almost all unique, "
                "so the model only repeats a lower order's score while its tables grow with the order)",
            )
