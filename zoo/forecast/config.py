"""The forecasting run's configuration; saved as config.json."""

import dataclasses
from typing import Literal

from zoo import cells
from zoo.config import (
    DIVERGENCE_FACTOR,
    MAX_SEED,
    require_choice,
    require_divergence_factor,
    require_float,
    require_int,
    require_seed,
)
from zoo.errors import UserError

EMBEDDED_SERIES = ("co2", "elnino", "sunspots")


CLASSICAL_MODELS = ("holt_winters", "harmonic_arima")
FEATURES = ("none", "fourier")
TRANSFORMS = ("none", "difference", "deseasonalize", "residual")
INTERVALS = ("conformal", "quantile", "none")
# The quantile heads' levels (`intervals=quantile`): the median is the point forecast, the outer pairs bound
# the central 80% and 95% intervals.
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)
INTERVAL_LEVELS = (0.8, 0.95)
# The quantiles that bound each central interval of INTERVAL_LEVELS.
INTERVAL_QUANTILES = {0.8: (0.1, 0.9), 0.95: (0.025, 0.975)}
ENSEMBLE_SEED_STRIDE = 1000  # ensemble member k trains with seed `seed + 1000 * (k - 1)`, as the sentiment recipe's
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
    features: Literal["none", "fourier"] = (
        "none"  # fourier: sin/cos of the seasonal period's harmonics at every input and forecast step as extra inputs
    )
    transform: Literal["none", "difference", "deseasonalize", "residual"] = (
        "none"  # what the networks learn: the series (none), its seasonal differences, or the series minus the harmonic fit's season (deseasonalize) or season and linear trend (residual)
    )
    harmonics: int = 4  # Fourier pairs of the seasonal period: `features`, `transform` and the harmonic regression
    seeds: int = 1  # models trained per name with different seeds; more than 1 averages them (an ensemble)
    intervals: Literal["conformal", "quantile", "none"] = (
        "conformal"  # 80% and 95% intervals: conformal (validation residuals per step), quantile (pinball-loss heads), none
    )
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
        for name in ("window", "horizon", "units", "epochs", "patience", "batch_size", "harmonics", "seeds"):
            require_int(name, getattr(self, name))
        require_int("plateau_patience", self.plateau_patience, minimum=0, expected="0 (off) or a positive integer")
        require_int(
            "season_period",
            self.season_period,
            minimum=0,
            expected="0 (infer), 1 (no seasonality) or a period in steps",
        )
        require_seed("seed", self.seed)
        if self.seed + ENSEMBLE_SEED_STRIDE * (self.seeds - 1) > MAX_SEED:
            raise UserError(
                f"Received `seed={self.seed}` with `seeds={self.seeds}`; the last member's seed, seed + "
                f"{ENSEMBLE_SEED_STRIDE} * (seeds - 1), must stay at most {MAX_SEED}."
            )
        require_choice("features", self.features, FEATURES)
        require_choice("transform", self.transform, TRANSFORMS)
        require_choice("intervals", self.intervals, INTERVALS)
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
        autoregressive = [name for name in self.models if is_autoregressive(name)]
        if self.intervals == "quantile" and autoregressive:
            raise UserError(
                f"Received `intervals=quantile` with the autoregressive models {autoregressive}, which forecast one "
                "step at a time from their own point forecasts; expected intervals=conformal (or none) for them."
            )

    @property
    def channels(self):
        """Columns of the series the networks read: the target and the input columns."""
        return 1 + len(self.input_columns)

    @property
    def uses_steps(self):
        """Whether the networks read each window's position in the series (a `step` input) besides the window."""
        return self.features == "fourier" or self.transform in ("deseasonalize", "residual")
