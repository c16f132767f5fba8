"""The simple forecasts a recurrent model has to beat, and the metrics.

All baselines forecast from an origin t (the last observed step) using only
values at or before t. `last_value_forecast` is the Markov model (the
previous step only), `seasonal_naive_forecast` repeats the last season,
`LinearAutoregression` is AR(p) fitted by least squares and rolled out on
its own predictions, and `holt_winters_forecasts` is the classical
exponential-smoothing reference (needs statsmodels).
"""

import math

import numpy as np

from zoo.config import require_int
from zoo.errors import UserError


def last_value_forecast(target, origins, horizon):
    """y_hat[t+h] = y[t] for every h."""
    return np.repeat(target[origins][:, None], horizon, axis=1)


def seasonal_naive_forecast(target, origins, horizon, period):
    """y_hat[t+h] = y[t + h - period * ceil(h / period)]: the same point of the last observed season."""
    steps = np.arange(1, horizon + 1)
    lags = period * np.ceil(steps / period).astype(np.int64)
    indices = origins[:, None] + steps[None, :] - lags[None, :]
    if indices.min() < 0:
        raise UserError(
            f"Seasonal naive needs {period} steps of history before each origin; the earliest origin is "
            f"{int(origins.min())}."
        )
    return target[indices]


def seasonal_naive_scale(training_target, period):
    """Mean absolute error of the in-sample seasonal naive forecast on the
    training part: the MASE denominator of Hyndman & Koehler (2006),
    mean_{t>m} |y_t - y_{t-m}| (m = 1 without seasonality)."""
    if len(training_target) <= period:
        raise UserError(
            f"The training part has {len(training_target)} steps; the MASE scale needs more than period={period}."
        )
    with np.errstate(over="ignore"):
        scale = float(np.mean(np.abs(training_target[period:] - training_target[:-period])))
    if not math.isfinite(scale):
        raise UserError(
            f"The MASE scale (mean |y_t - y_t-{period}| over the training part) overflows float64 "
            f"(largest magnitude {float(np.max(np.abs(training_target))):.3g}); rescale the series, e.g. divide "
            "it by a power of ten."
        )
    if scale == 0.0:
        raise UserError("The training part repeats itself exactly every period, so MASE is undefined (scale 0).")
    return scale


def forecast_errors(forecasts, truth, scale):
    """MAE, RMSE and MASE overall and per horizon step (1-based lists)."""
    errors = np.asarray(forecasts, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    if errors.shape != np.shape(truth) or errors.ndim != 2:
        raise ValueError(
            f"Received forecasts of shape {np.shape(forecasts)}; expected {np.shape(truth)} (windows, horizon)."
        )
    absolute = np.abs(errors)
    return {
        "mae": float(absolute.mean()),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mase": float(absolute.mean() / scale),
        "mae_per_step": absolute.mean(axis=0).tolist(),
        "rmse_per_step": np.sqrt(np.mean(errors**2, axis=0)).tolist(),
        "mase_per_step": (absolute.mean(axis=0) / scale).tolist(),
    }


def level_name(level):
    """ "80" for the level 0.8: how metrics.json names an interval's coverage and width."""
    return f"{100 * level:g}"


def interval_scores(intervals, truth):
    """Empirical coverage and mean width of each central interval in `intervals` against `truth`.

    `intervals` maps a level (0.8) to (lower, upper) bounds, each shaped like
    `truth` (windows, horizon). Returns `coverage_80` (the share of truth
    values inside [lower, upper]), `width_80` (mean upper - lower, in the
    series' units) and `coverage_80_per_step`, for each level.
    """
    truth = np.asarray(truth, dtype=np.float64)
    scores = {}
    for level, (lower, upper) in sorted(intervals.items()):
        lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        if lower.shape != truth.shape or upper.shape != truth.shape:
            raise ValueError(
                f"Received interval bounds of shapes {lower.shape} and {upper.shape}; expected {truth.shape}."
            )
        inside = (truth >= lower) & (truth <= upper)
        name = level_name(level)
        scores[f"coverage_{name}"] = float(inside.mean())
        scores[f"width_{name}"] = float(np.mean(upper - lower))
        scores[f"coverage_{name}_per_step"] = inside.mean(axis=0).tolist()
    return scores


def conformal_half_widths(residuals, levels):
    """Split conformal half-widths per horizon step from calibration residuals (windows, horizon).

    For a level L and n residuals, step h's half-width is the
    ceil((n + 1) L)-th smallest |residual| at that step (infinite when that
    exceeds n): if a new window's errors are exchangeable with the
    calibration windows', forecast +- half-width covers the truth with
    probability at least L at every step. Returns {level: (horizon,) array}.
    """
    scores = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)), axis=0)
    count = len(scores)
    if count == 0:
        raise ValueError("Received no calibration residuals; conformal intervals need at least one window.")
    widths = {}
    for level in levels:
        rank = math.ceil((count + 1) * level)
        widths[level] = scores[rank - 1] if rank <= count else np.full(scores.shape[1], np.inf)
    return widths


def conformal_minimum(level):
    """The fewest calibration windows that give a finite split conformal half-width at `level` (19 for 0.95)."""
    count = 1
    while math.ceil((count + 1) * level) > count:
        count += 1
    return count


def infer_season_period(training_target, max_period=None):
    """The seasonal period from the autocorrelation of the training part.

    The part is detrended by a quadratic fit (so a trend does not swamp the
    autocorrelation), then the autocorrelation's peaks are found: lags that are
    the largest value within +/- a quarter of themselves. The shortest peak
    reaching 90% of the strongest is the period (a period's multiples peak
    too). Returns 1 (no seasonality) when no peak reaches 4/sqrt(n) (and 0.1):
    white noise's autocorrelations spread about +/- 1/sqrt(n), and with
    hundreds of lags tested, a 2/sqrt(n) band is crossed by chance.
    """
    values = np.asarray(training_target, dtype=np.float64)
    length = len(values)
    max_period = max_period or length // 3
    min_strength = max(0.1, 4.0 / np.sqrt(max(length, 1)))
    if max_period < 2:
        return 1
    steps = np.arange(length)
    residual = values - np.polyval(np.polyfit(steps, values, 2), steps)
    residual -= residual.mean()
    energy = float(np.sum(residual**2))
    if energy == 0.0:
        return 1
    autocorrelation = np.array([np.sum(residual[:-lag] * residual[lag:]) / energy for lag in range(1, max_period + 1)])
    peaks = []
    for lag in range(2, max_period + 1):
        reach = max(1, lag // 4)
        low, high = max(1, lag - reach), min(max_period, lag + reach)
        value = autocorrelation[lag - 1]
        if value >= min_strength and value >= autocorrelation[low - 1 : high].max() and lag + reach <= max_period:
            peaks.append((lag, value))
    if not peaks:
        return 1
    strongest = max(value for _, value in peaks)
    return min(lag for lag, value in peaks if value >= 0.9 * strongest)


class LinearAutoregression:
    """AR(order) with an intercept, fitted by least squares on one-step targets.

    Multi-step forecasts feed the model its own predictions (recursive
    rollout), as a classical AR model does.
    """

    def __init__(self, order):
        self.order = require_int("order", order)
        self.coefficients = None  # (order,) for y[t-order+1] .. y[t], oldest first
        self.intercept = None

    def fit(self, series):
        series = np.asarray(series, dtype=np.float64)
        if len(series) <= self.order:
            raise ValueError(
                f"Received a series of {len(series)} steps; AR({self.order}) needs more than {self.order}."
            )
        origins = np.arange(self.order - 1, len(series) - 1)
        lagged = series[origins[:, None] + np.arange(-self.order + 1, 1)[None, :]]
        design = np.concatenate([lagged, np.ones((len(origins), 1))], axis=1)
        # lstsq returns the minimum-norm solution when lags are collinear (e.g. an exact trend).
        solution, *_ = np.linalg.lstsq(design, series[origins + 1], rcond=None)
        self.coefficients, self.intercept = solution[:-1], float(solution[-1])
        return self

    def forecast(self, windows, horizon):
        """Roll out `horizon` steps from each window (n, order), oldest value first."""
        if self.coefficients is None:
            raise ValueError("This LinearAutoregression is not fitted; call fit(series) first.")
        windows = np.asarray(windows, dtype=np.float64)
        if windows.ndim != 2 or windows.shape[1] < self.order:
            raise ValueError(f"Received windows of shape {windows.shape}; expected (n, >= {self.order}).")
        history = windows[:, -self.order :]
        forecasts = np.empty((len(windows), horizon))
        for step in range(horizon):
            next_value = history @ self.coefficients + self.intercept
            forecasts[:, step] = next_value
            history = np.concatenate([history[:, 1:], next_value[:, None]], axis=1)
        return forecasts


def holt_winters_forecasts(target, train_end, origins, horizon, period, trend="additive", initialization="estimated"):
    """Holt-Winters exponential smoothing fitted on target[:train_end] only.

    The smoothing parameters and initial states are estimated on the training
    part. To forecast from every origin without refitting, the same fixed
    model then filters the whole series once (each state at t depends only
    on y[..t]) and the h-step forecast from origin t is
    level[t] + (phi + ... + phi^h) * slope[t] + season[t + h - m*ceil(h/m)].
    Returns (forecasts, description).
    """
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError:
        raise UserError("The Holt-Winters reference needs statsmodels: `pip install statsmodels`.") from None
    if trend not in ("additive", "damped", "none"):
        raise ValueError(f"Received an invalid value for `trend`: {trend!r}; expected additive, damped or none.")
    seasonal = period > 1
    specification = dict(
        trend=None if trend == "none" else "add",
        damped_trend=trend == "damped",
        seasonal="add" if seasonal else None,
        seasonal_periods=period if seasonal else None,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from the optimiser
        fitted = ExponentialSmoothing(
            np.asarray(target[:train_end], dtype=np.float64), initialization_method=initialization, **specification
        ).fit()
        parameters = fitted.params
        initial = {"initial_level": parameters["initial_level"]}
        smoothing = {"smoothing_level": parameters["smoothing_level"], "optimized": False}
        if trend != "none":
            initial["initial_trend"] = parameters["initial_trend"]
            smoothing["smoothing_trend"] = parameters["smoothing_trend"]
        if trend == "damped":
            smoothing["damping_trend"] = parameters["damping_trend"]
        if seasonal:
            initial["initial_seasonal"] = parameters["initial_seasons"]
            smoothing["smoothing_seasonal"] = parameters["smoothing_seasonal"]
        filtered = ExponentialSmoothing(
            np.asarray(target, dtype=np.float64), initialization_method="known", **initial, **specification
        ).fit(**smoothing)
    level = np.asarray(filtered.level)
    slope = np.asarray(filtered.trend) if trend != "none" else np.zeros_like(level)
    phi = float(parameters["damping_trend"]) if trend == "damped" else 1.0
    steps = np.arange(1, horizon + 1)
    trend_multiplier = np.cumsum(phi**steps)
    forecasts = level[origins][:, None] + trend_multiplier[None, :] * slope[origins][:, None]
    if seasonal:
        season = np.asarray(filtered.season)
        lags = period * np.ceil(steps / period).astype(np.int64)
        forecasts = forecasts + season[origins[:, None] + steps[None, :] - lags[None, :]]
    description = (
        f"Holt-Winters ({'no' if trend == 'none' else trend} trend"
        f"{f', additive season {period}' if seasonal else ''}), fitted on the training part, "
        "re-filtered with fixed parameters up to each origin"
    )
    return (
        forecasts,
        description,
        {
            key: float(value)
            for key, value in parameters.items()
            if np.ndim(value) == 0 and value is not None and not isinstance(value, bool)
        },
    )


def refine_season_period(training_target, period):
    """A fractional seasonal period near the integer `period`.

    Weekly data has 365.25 / 7 = 52.18 steps per year; a fixed 52-step season
    drifts by a week every five or six years. The detrended training part's
    autocorrelation peaks near every multiple k * period; the farthest
    multiple within a third of the part is located to a fraction of a step
    (parabola through the peak and its neighbours) and divided by k, so the
    error shrinks as 1/k.
    """
    values = np.asarray(training_target, dtype=np.float64)
    multiple = (len(values) // 3) // period if period >= 2 else 0
    if multiple < 1:
        return float(period)
    steps = np.arange(len(values))
    residual = values - np.polyval(np.polyfit(steps, values, 2), steps)
    residual -= residual.mean()
    energy = float(np.sum(residual**2))
    if energy == 0.0:
        return float(period)

    def autocorrelation(lag):
        return float(np.sum(residual[:-lag] * residual[lag:]) / energy)

    reach = max(1, multiple // 2)
    candidates = range(max(2, multiple * period - reach), multiple * period + reach + 1)
    peak = max(candidates, key=autocorrelation)
    before, at, after = autocorrelation(peak - 1), autocorrelation(peak), autocorrelation(peak + 1)
    curvature = before - 2 * at + after
    offset = float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0
    refined = (peak + offset) / multiple
    # Only a refinement: never move more than half a step from the integer period.
    return float(np.clip(refined, period - 0.5, period + 0.5))


def fourier_terms(steps, period, harmonics):
    """(len(steps), 2 * harmonics): sin and cos of 2 pi k t / period for k = 1..harmonics, interleaved (sin 1, cos 1, ...).

    The regressors of the harmonic regression and of `harmonic_fit`; the
    networks compute the same terms in `zoo.forecast.model.FourierTerms`.
    """
    steps = np.asarray(steps, dtype=np.float64)
    angles = 2 * np.pi * np.mod(steps, period)[:, None] / period * np.arange(1, harmonics + 1)[None, :]
    return np.stack([np.sin(angles), np.cos(angles)], axis=2).reshape(len(steps), 2 * harmonics)


def harmonics_for(period, harmonics):
    """The Fourier pairs a period supports: at most `harmonics`, and fewer than period / 2 (none without a season)."""
    return int(min(harmonics, period // 2)) if period >= 2 else 0


def harmonic_fit(training_target, period, harmonics):
    """Least squares of the training part on an intercept, a linear trend and `fourier_terms`.

    Returns (season coefficients (2 * harmonics,), slope per step): the
    seasonal shape and the trend that `transform=deseasonalize` and
    `residual` take out of the series before a network reads it.
    """
    values = np.asarray(training_target, dtype=np.float64)
    steps = np.arange(len(values), dtype=np.float64)
    design = np.concatenate(
        [np.ones((len(values), 1)), steps[:, None], fourier_terms(steps, period, harmonics)], axis=1
    )
    solution, *_ = np.linalg.lstsq(design, values, rcond=None)
    return solution[2:], float(solution[1])


def harmonic_arima_forecasts(target, train_end, origins, horizon, period, harmonics=4, order=(1, 1, 1), levels=()):
    """Dynamic harmonic regression: Fourier terms of a (fractional) seasonal
    period as regressors and ARIMA(order) errors with drift (statsmodels
    SARIMAX), fitted on target[:train_end] only.

    Forecasts from each origin use the fitted parameters, with the Kalman
    filter run over the observations up to that origin (no refitting).
    Returns (forecasts, description, parameters, intervals): `intervals`
    maps each of `levels` (central coverage, such as 0.8) to the model's own
    (lower, upper) bounds, each (len(origins), horizon), from statsmodels'
    `conf_int` (Gaussian, from the state space model's forecast variance;
    the parameters' uncertainty is not in it).
    """
    try:
        from statsmodels.tsa.statespace.sarimax import SARIMAX
    except ImportError:
        raise UserError("The harmonic ARIMA reference needs statsmodels: `pip install statsmodels`.") from None
    import warnings

    target = np.asarray(target, dtype=np.float64)
    harmonics = harmonics_for(period, harmonics)
    regressors = fourier_terms(np.arange(len(target)), period, harmonics) if harmonics else None
    intervals = {level: (np.empty((len(origins), horizon)), np.empty((len(origins), horizon))) for level in levels}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from the optimiser
        fitted = SARIMAX(
            target[:train_end], exog=None if regressors is None else regressors[:train_end], order=order, trend="c"
        ).fit(disp=False)
        filtered = fitted.apply(target, exog=regressors)
        forecasts = np.empty((len(origins), horizon))
        for row, origin in enumerate(origins):
            if origin + horizon >= len(target):
                raise ValueError(f"Origin {origin} + horizon {horizon} runs past the series ({len(target)} steps).")
            # dynamic=True: steps origin+1.. use only observations up to the origin.
            prediction = filtered.get_prediction(start=origin + 1, end=origin + horizon, dynamic=True)
            forecasts[row] = prediction.predicted_mean
            for level, (lower, upper) in intervals.items():
                bounds = np.asarray(prediction.conf_int(alpha=1.0 - level))
                lower[row], upper[row] = bounds[:, 0], bounds[:, 1]
    description = (
        f"ARIMA{tuple(order)} with drift and {harmonics} Fourier pairs of period {period:.2f} "
        "(statsmodels SARIMAX), fitted on the training part, Kalman-filtered with fixed parameters up to each origin"
    )
    parameters = {name: float(value) for name, value in zip(fitted.model.param_names, fitted.params)}
    return forecasts, description, parameters, intervals


def is_statsmodels_available():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return False
    return True
