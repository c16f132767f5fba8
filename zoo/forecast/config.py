"""The forecasting run's configuration; saved as config.json."""

import dataclasses
from typing import Literal

from zoo import cells
from zoo.config import DIVERGENCE_FACTOR, require_divergence_factor, require_float, require_int, require_seed
from zoo.errors import UserError

EMBEDDED_SERIES = ("co2", "elnino", "sunspots")


CLASSICAL_MODELS = ("holt_winters", "harmonic_arima")
# The neural models by name: the convolution, each cell single-shot, each cell autoregressive.
NEURAL_MODELS = ("conv", *cells.CELLS, *(f"{cell}-autoregressive" for cell in cells.CELLS))


def is_autoregressive(name):
    return name.endswith("-autoregressive")


def is_neural_model(name):
    """Whether `name` is one of `NEURAL_MODELS`, a cell alias allowed (`simple_rnn`, `simple_rnn-autoregressive`)."""
    return cells.canonical_name(name) in NEURAL_MODELS


@dataclasses.dataclass
class ForecastConfig:
    """Everything that defines a forecasting run; saved as config.json."""

    dataset: str = (
        "co2"  # embedded series used when csv_path is empty: co2 (weekly), elnino (monthly), sunspots (yearly)
    )
    csv_path: str = ""  # CSV file with a header row; when set it replaces `dataset`
    target: str = ""  # CSV column to forecast (required with csv_path)
    time_column: str = ""  # optional CSV column of times (numbers or ISO dates), strictly increasing
    input_columns: tuple[str, ...] = ()  # extra CSV columns the neural models read (multivariate input)
    missing: Literal["interpolate", "refuse"] = "interpolate"  # interpolate: linear in time, counted; refuse: error
    window: int = 104  # past steps each model reads
    horizon: int = 26  # future steps forecast from each window
    validation_fraction: float = 0.15  # share of the series (after training, before test) for early stopping
    test_fraction: float = 0.15  # final share of the series, only used for the reported metrics
    season_period: int = 0  # seasonal period in steps; 0 infers it from the training part; 1 means none
    models: tuple[str, ...] = ("lstm",)  # conv, CELL, CELL-autoregressive; CELL: rnn, lstm, gru, layernorm_lstm, ...
    units: int = 64  # recurrent units (and convolution filters)
    proj_units: int = 0  # projection_lstm models only: size of the projected output and state; 0 = units // 2
    implementation: str = "ours"  # recurrent layers: ours (layers/) or keras (Keras's; rnn, lstm, gru only)
    epochs: int = 60  # maximum epochs per model
    patience: int = 12  # stop a model after this many epochs without a better validation loss
    plateau_patience: int = (
        0  # halve the learning rate after this many epochs without a better validation loss; 0 never
    )
    batch_size: int = 32  # windows per training batch
    learning_rate: float = 1e-3  # Adam learning rate
    max_minutes: float | None = 8.0  # wall-clock budget per model (none = unlimited)
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    classical_models: tuple[str, ...] = (
        "holt_winters",
        "harmonic_arima",
    )  # statsmodels references to fit (may be empty)
    classical_trend: Literal["additive", "damped", "none"] = "additive"  # Holt-Winters trend component
    seed: int = 0  # seeds data shuffling and weight initialisation

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        for name in ("window", "horizon", "units", "epochs", "patience", "batch_size"):
            require_int(name, getattr(self, name))
        require_int("plateau_patience", self.plateau_patience, minimum=0, expected="0 (off) or a positive integer")
        require_int(
            "season_period",
            self.season_period,
            minimum=0,
            expected="0 (infer), 1 (no seasonality) or a period in steps",
        )
        require_seed("seed", self.seed)
        for name in ("validation_fraction", "test_fraction"):
            require_float(name, getattr(self, name), above=0.0, below=0.5)
        require_float("learning_rate", self.learning_rate, above=0.0)
        require_float("max_minutes", self.max_minutes, above=0.0, optional=True)
        if self.csv_path and not self.target:
            raise UserError("Received `csv_path` without `target`; name the column to forecast (--target COLUMN).")
        if not self.csv_path:
            if self.dataset not in EMBEDDED_SERIES:
                raise UserError(
                    f"Received an invalid value for `dataset`: {self.dataset!r}; expected one of "
                    f"{list(EMBEDDED_SERIES)}, or a CSV file via csv_path (--csv PATH --target COLUMN)."
                )
            if self.input_columns:
                raise UserError("`input_columns` needs a CSV file (--csv); the embedded series have one column.")
        unknown = [name for name in self.classical_models if name not in CLASSICAL_MODELS]
        if unknown:
            raise UserError(
                f"Received unknown `classical_models` {unknown}; expected names from {list(CLASSICAL_MODELS)} (or none)."
            )
        unknown = [name for name in self.models if not is_neural_model(name)]
        if unknown:
            raise UserError(f"Received unknown `models` {unknown}; expected names from {list(NEURAL_MODELS)}.")
        cells.require_proj_units(self.proj_units, self.models, "models")
        cells.require_implementation(self.implementation, self.models, "models")

    @property
    def features(self):
        return 1 + len(self.input_columns)
