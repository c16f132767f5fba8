"""Series loading, the missing-value policy, chronological splits and windows.

A series is a `(time, feature)` array whose column 0 is the target. It comes
from a CSV file or from one of the series that statsmodels ships (so the
default works offline). Nothing here ever drops an interior row: a missing
value is either filled by linear interpolation in time (and counted) or
refused, so time never shifts.
"""

import csv
import dataclasses
import datetime
import math
import os

import numpy as np
import tensorflow as tf

from zoo.errors import UserError, UserFileNotFoundError
from zoo.files import unreadable
from zoo.forecast import baselines
from zoo.forecast.config import EMBEDDED_SERIES, INTERVAL_LEVELS

_MISSING_TEXT = {"", "na", "nan", "null", "none", "n/a", "-"}


@dataclasses.dataclass
class Series:
    """A regularly observed series; `values[:, 0]` is the target."""

    name: str
    columns: tuple  # column names, target first
    values: np.ndarray  # (time, features) float64, no missing values left
    times: np.ndarray  # (time,) float64 positions used for interpolation (days for dates)
    filled: dict  # column -> number of interpolated values
    trimmed: int = 0  # rows at the ends dropped because they had nothing to interpolate from

    @property
    def target(self):
        return self.values[:, 0]


# ----------------------------------------------------------------------------- missing values


def fill_missing(values, times, policy, columns):
    """Apply the missing-value policy to `values` (time, features).

    "interpolate": interior gaps are filled by linear interpolation against
    `times`; rows at the very start or end with a missing value cannot be
    interpolated and are removed (only there, so no interior time shifts).
    "refuse": any missing value is an error naming the column and row.
    Returns (values, times, filled counts per column, trimmed row count).
    """
    missing = np.isnan(values)
    if policy == "refuse":
        if missing.any():
            row, column = np.argwhere(missing)[0]
            raise UserError(
                f"The series has {int(missing.sum())} missing values (first: column {columns[column]!r}, row {row}) "
                "and `missing=refuse`; use `--set missing=interpolate` to fill them linearly in time."
            )
        return values, times, {name: 0 for name in columns}, 0
    if policy != "interpolate":
        raise UserError(f"Received an invalid value for `missing`: {policy!r}; expected 'interpolate' or 'refuse'.")
    complete_rows = np.flatnonzero(~missing.any(axis=1))
    if complete_rows.size == 0:
        raise UserError("Every row of the series has a missing value; nothing to interpolate from.")
    first, last = complete_rows[0], complete_rows[-1]
    # Leading/trailing rows may still have some columns observed; for each column only
    # values strictly between its first and last observation are interpolated.
    values, times = values[first : last + 1].copy(), times[first : last + 1]
    filled = {}
    for index, name in enumerate(columns):
        column = values[:, index]
        gaps = np.isnan(column)
        filled[name] = int(gaps.sum())
        if gaps.any():
            column[gaps] = np.interp(times[gaps], times[~gaps], column[~gaps])
    return values, times, filled, int(len(missing) - len(values))


# ----------------------------------------------------------------------------- loading


def _parse_number(text, column, line, path):
    if text.strip().lower() in _MISSING_TEXT:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise UserError(
            f"Column {column!r} has a non-numeric value {text!r} on line {line} of {path!r}; expected a number "
            "(or an empty cell / NA for a missing value)."
        ) from None
    if math.isinf(value):
        raise UserError(
            f"Column {column!r} has an infinite value on line {line} of {path!r}; expected a finite number."
        )
    return value


def _parse_time(text, column, line, path):
    stripped = text.strip()
    try:
        value = float(stripped)
    except ValueError:
        pass
    else:
        # float() also reads "nan" and "inf", which no comparison can order.
        if not math.isfinite(value):
            raise UserError(
                f"Time column {column!r} has {text!r} on line {line} of {path!r}; expected a finite number "
                "or an ISO date such as 2001-12-29."
            )
        return value
    try:
        moment = datetime.datetime.fromisoformat(stripped)
    except ValueError:
        raise UserError(
            f"Time column {column!r} has {text!r} on line {line} of {path!r}; expected a number or an ISO date "
            "such as 2001-12-29."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() / 86400.0


def _read_csv_columns(path, columns, time_column, input_columns):
    """The values of `columns` and the parsed times of every row of the CSV file `path`."""
    target = columns[0]
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for name, flag in (
            [(name, "--inputs") for name in input_columns]
            + [(target, "--target")]
            + ([(time_column, "--time-column")] if time_column else [])
        ):
            if name not in header:
                raise UserError(f"Column {name!r} (from {flag}) is not in {path!r}; its columns are {header}.")
        rows, times = [], []
        for line, record in enumerate(reader, start=2):
            rows.append([_parse_number(record[name] or "", name, line, path) for name in columns])
            if time_column:
                cell = record[time_column] or ""
                if not cell.strip():
                    raise UserError(
                        f"Time column {time_column!r} is empty on line {line} of {path!r}; every row needs a time."
                    )
                times.append(_parse_time(cell, time_column, line, path))
    return rows, times


def load_csv(path, target, time_column="", input_columns=()):
    """Read `target` (and `input_columns`) from a CSV file with a header row.

    Empty cells and NA/NaN/null are missing values. Without `time_column` the
    rows are taken as equally spaced in file order.
    """
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No CSV file at {path!r} (from --csv).")
    columns = (target, *input_columns)
    if len(set(columns)) != len(columns):
        raise UserError(f"Received repeated columns {list(columns)} in --target/--inputs; expected distinct names.")
    try:
        rows, times = _read_csv_columns(path, columns, time_column, input_columns)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise unreadable(path, error, kind="CSV file", expected="a UTF-8 CSV file with a header row") from error
    if not rows:
        raise UserError(f"The CSV file {path!r} has a header but no rows.")
    values = np.asarray(rows, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64) if time_column else np.arange(len(rows), dtype=np.float64)
    if time_column and np.any(np.diff(times) <= 0):
        line = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 3
        raise UserError(
            f"Time column {time_column!r} is not strictly increasing (line {line}) in {path!r}; sort the file by time "
            "and remove duplicate times."
        )
    return os.path.basename(path), columns, values, times


def load_embedded(name):
    """One of the series statsmodels ships, as (name, columns, values, times)."""
    try:
        from statsmodels import datasets
    except ImportError:
        raise UserError(
            f"The embedded series {name!r} comes from statsmodels, which is not installed; "
            "`pip install statsmodels`, or forecast your own file with --csv PATH --target COLUMN."
        ) from None
    if name == "co2":
        # Weekly CO2 at Mauna Loa, 1958-03-29 .. 2001-12-29; 59 weeks missing.
        frame = datasets.co2.load_pandas().data
        values = frame["co2"].to_numpy(dtype=np.float64)[:, None]
        times = (frame.index.to_numpy().astype("datetime64[D]").astype(np.int64)).astype(np.float64)
        return "co2 (weekly, Mauna Loa, ppm)", ("co2",), values, times
    if name == "elnino":
        # Monthly sea-surface temperature (Nino 1+2 region), 1950..2010, one row per year.
        frame = datasets.elnino.load_pandas().data
        values = frame.drop(columns=["YEAR"]).to_numpy(dtype=np.float64).reshape(-1, 1)
        return (
            "elnino (monthly sea-surface temperature, deg C)",
            ("temperature",),
            values,
            np.arange(len(values), dtype=np.float64),
        )
    if name == "sunspots":
        frame = datasets.sunspots.load_pandas().data
        values = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None]
        return "sunspots (yearly, 1700..2008)", ("sunspots",), values, frame["YEAR"].to_numpy(dtype=np.float64)
    raise UserError(f"Received an invalid value for `dataset`: {name!r}; expected one of {list(EMBEDDED_SERIES)}.")


def load_series(config):
    """The series `config` names, with the missing-value policy applied."""
    if config.csv_path:
        name, columns, values, times = load_csv(
            config.csv_path, config.target, config.time_column, config.input_columns
        )
    else:
        name, columns, values, times = load_embedded(config.dataset)
    values, times, filled, trimmed = fill_missing(values, times, config.missing, columns)
    return Series(name=name, columns=columns, values=values, times=times, filled=filled, trimmed=trimmed)


# ----------------------------------------------------------------------------- splits and windows


@dataclasses.dataclass(frozen=True)
class Split:
    """Chronological split: [0, train_end) train, [train_end, validation_end) validation, rest test."""

    train_end: int
    validation_end: int
    length: int

    def origins(self, part, window, horizon):
        """Indices t of the last observed step of each window whose `horizon`
        targets t+1..t+horizon all lie in `part`. Inputs may reach back into
        earlier parts (they are observed history at forecast time); the
        training windows lie entirely inside the training part."""
        if part == "train":
            first, end = window - 1, self.train_end
        elif part == "validation":
            first, end = self.train_end - 1, self.validation_end
        elif part == "test":
            first, end = self.validation_end - 1, self.length
        else:
            raise UserError(f"Received an invalid value for `part`: {part!r}; expected train, validation or test.")
        first = max(first, window - 1)
        return np.arange(first, end - horizon, dtype=np.int64)


def chronological_split(length, validation_fraction, test_fraction, window, horizon):
    """Split `length` steps in time order and check every part is long enough."""
    test = int(round(length * test_fraction))
    validation = int(round(length * validation_fraction))
    train = length - validation - test
    split = Split(train_end=train, validation_end=train + validation, length=length)
    needs = {
        "train": window + horizon,
        "validation": horizon,
        "test": horizon,
    }
    sizes = {"train": train, "validation": validation, "test": test}
    for part, need in needs.items():
        if sizes[part] < need:
            raise UserError(
                f"The series is too short: {length} steps give a {part} part of {sizes[part]} steps, but "
                f"window={window} and horizon={horizon} need at least {need} there. Use a longer series, "
                "a smaller window or horizon, or other validation_fraction/test_fraction."
            )
    return split


def windows_at(values, origins, window):
    """Inputs ending at each origin: (len(origins), window, features)."""
    offsets = np.arange(-window + 1, 1)
    return values[origins[:, None] + offsets[None, :]]


def targets_at(target, origins, horizon):
    """The `horizon` target values after each origin: (len(origins), horizon)."""
    return target[origins[:, None] + np.arange(1, horizon + 1)[None, :]]


@dataclasses.dataclass
class Normalizer:
    """Per-feature mean and standard deviation, from the training part only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, training_values, columns):
        with np.errstate(over="ignore", invalid="ignore"):
            mean = training_values.mean(axis=0)
            std = training_values.std(axis=0)
        overflowed = [columns[index] for index in np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))]
        if overflowed:
            largest = float(np.max(np.abs(training_values)))
            raise UserError(
                f"Column(s) {overflowed} overflow float64 over the training part: their mean or standard deviation "
                f"is infinite (the largest magnitude is {largest:.3g}). Expected values whose squares fit in "
                "float64 (magnitudes below about 1e154); rescale the column, e.g. divide it by a power of ten."
            )
        constant = [columns[index] for index in np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))]
        if constant:
            raise UserError(
                f"Column(s) {constant} are constant over the training part; a constant series has nothing "
                "to forecast (and cannot be normalised). Check the column or drop it from --inputs."
            )
        return cls(mean=mean, std=std)

    def normalize(self, values):
        return (values - self.mean) / self.std

    def denormalize_target(self, values):
        return values * self.std[0] + self.mean[0]


# ----------------------------------------------------------------------------- prepared series and tf.data


@dataclasses.dataclass(frozen=True)
class Seasonality:
    """The training part's seasonal structure, in normalised units, that the networks may be given.

    `period` is the fractional period (`baselines.refine_season_period`);
    the harmonic fit of the normalised training part is
    `intercept + slope * t + fourier_terms(t, period, harmonics) @ coefficients`
    (`baselines.harmonic_fit`; the intercept is not kept: the networks work
    relative to each window's last value, where a constant cancels).
    """

    period: float
    whole_period: int  # the integer period (`transform=difference` subtracts the value this many steps back)
    harmonics: int
    coefficients: tuple
    slope: float


@dataclasses.dataclass
class PreparedSeries:
    """A loaded series with its split, training-part statistics and period."""

    series: object
    split: object
    normalizer: Normalizer
    normalized: np.ndarray  # (time, features), normalised with training-part statistics
    season_period: int
    season_period_inferred: bool
    mase_scale: float
    seasonality: Seasonality | None = None  # None without a season (period 1)


def prepare(config, series=None):
    """Load (unless `series` is given), split, normalise and find the period.

    Every statistic (mean, std, seasonal period, MASE scale) comes from the
    training part only.
    """
    series = load_series(config) if series is None else series
    split = chronological_split(
        len(series.values), config.validation_fraction, config.test_fraction, config.window, config.horizon
    )
    training_values = series.values[: split.train_end]
    normalizer = Normalizer.fit(training_values, series.columns)
    inferred = config.season_period == 0
    period = baselines.infer_season_period(training_values[:, 0]) if inferred else config.season_period
    if period >= split.train_end // 2:
        raise UserError(
            f"Received `season_period={period}`, but the training part has only {split.train_end} steps; "
            "it needs at least two seasons."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        normalized = normalizer.normalize(series.values).astype(np.float32)
    if not np.all(np.isfinite(normalized)):
        step, column = (int(index) for index in np.argwhere(~np.isfinite(normalized))[0])
        raise UserError(
            f"Column {series.columns[column]!r} has the value {series.values[step, column]:.3g} at step {step}, "
            "too many training-part standard deviations from the training mean for the models' float32 "
            "inputs; expected values on the scale of the training part."
        )
    mase_scale = baselines.seasonal_naive_scale(training_values[:, 0], period)
    seasonality = None
    if period >= 2:
        refined = baselines.refine_season_period(training_values[:, 0], period)
        harmonics = baselines.harmonics_for(refined, config.harmonics)
        coefficients, slope = baselines.harmonic_fit(normalized[: split.train_end, 0], refined, harmonics)
        seasonality = Seasonality(refined, period, harmonics, tuple(float(value) for value in coefficients), slope)
    check_structure(config, period)
    check_calibration(config, split)
    return PreparedSeries(
        series=series,
        split=split,
        normalizer=normalizer,
        normalized=normalized,
        season_period=period,
        season_period_inferred=inferred,
        mase_scale=mase_scale,
        seasonality=seasonality,
    )


def check_calibration(config, split):
    """Refuse `intervals=conformal` when the validation part has too few windows for a finite 95% interval."""
    if config.intervals != "conformal":
        return
    windows = len(split.origins("validation", config.window, config.horizon))
    level = max(INTERVAL_LEVELS)
    needed = baselines.conformal_minimum(level)
    if windows < needed:
        raise UserError(
            f"Received `intervals=conformal`, which needs at least {needed} validation windows for its "
            f"{100 * level:g}% intervals, but the validation part gives {windows}; use a larger "
            "validation_fraction or a longer series, or intervals=quantile or none."
        )


def check_structure(config, period):
    """Refuse `features` and `transform` settings that the series' seasonal `period` cannot serve."""
    wanted = [
        f"{name}={value}"
        for name, value in (("features", config.features), ("transform", config.transform))
        if value != "none"
    ]
    if wanted and period < 2:
        raise UserError(
            f"Received {' and '.join(wanted)}, which need a seasonal period, but the series has none (period 1"
            f"{', inferred from the training part' if config.season_period == 0 else ''}); expected a seasonal "
            "series, or features=none and transform=none."
        )
    if config.transform == "difference" and not (config.window > period >= config.horizon):
        raise UserError(
            f"Received `transform=difference` with window={config.window}, horizon={config.horizon} and a seasonal "
            f"period of {period}; seasonal differences need a window longer than the period (the network reads "
            "window - period differences) and a horizon of at most one period."
        )


def windows_dataset(inputs, targets, batch_size, shuffle_seed=None):
    """Batches of (inputs, targets); `inputs` is an array or a tuple of arrays (windows, steps), one row per target."""
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(targets), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
