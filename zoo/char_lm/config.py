"""The character language model's run configuration (`--set key=value`)."""

import dataclasses

from zoo import cells
from zoo.config import DIVERGENCE_FACTOR, require_divergence_factor, require_int
from zoo.errors import UserError


@dataclasses.dataclass
class CharLMConfig:
    """Hyper-parameters of a character language model run (`--set key=value`)."""

    cell: str = "lstm"  # recurrent cell of every layer: rnn, lstm or gru (see zoo.cells)
    units: int = 512  # state size of each recurrent layer
    num_layers: int = 1  # recurrent layers stacked
    embedding_dim: int = 64  # size of the learned character vectors
    dropout: float = 0.25  # dropout on the embedding and after every recurrent layer (training only)
    seq_len: int = 50  # characters per batch row: the truncated-BPTT span (the state still carries on)
    batch_size: int = 32  # contiguous streams the training text is cut into
    epochs: int = 30  # passes over the training text (max_minutes may end sooner)
    learning_rate: float = 3e-3  # Adam step size
    clip_norm: float = 5.0  # gradients are rescaled to at most this global norm
    validation_fraction: float = 0.1  # last fraction of the text held out for validation
    max_minutes: float | None = None  # wall-clock training budget; ends after the current batch
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    markov_orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # Markov baselines reported beside the model
    seed: int = 0  # seeds weights, dropout and sampling

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        for name in ("units", "num_layers", "embedding_dim", "seq_len", "batch_size", "epochs"):
            require_int(name, getattr(self, name))
        cells.canonical(self.cell)
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"Received an invalid value for `dropout`: {self.dropout}; expected 0 <= dropout < 1.")
        for name in ("learning_rate", "clip_norm"):
            value = getattr(self, name)
            if not value > 0:
                raise UserError(f"Received an invalid value for `{name}`: {value}; expected a positive number.")
        if not 0.0 < self.validation_fraction < 1.0:
            raise UserError(
                f"Received an invalid value for `validation_fraction`: {self.validation_fraction}; expected 0 < x < 1."
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(
                f"Received an invalid value for `max_minutes`: {self.max_minutes}; expected a positive number or none."
            )
        if not self.markov_orders or any(order < 0 for order in self.markov_orders):
            raise UserError(
                f"Received an invalid value for `markov_orders`: {self.markov_orders}; expected non-negative integers."
            )
