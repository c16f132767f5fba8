"""zoo.forecast: data policy, splits without leakage, baselines with known answers, metrics, rollout."""

import math

import keras
import numpy as np
import pytest

from zoo import registry
from zoo.forecast import baselines
from zoo.forecast import data as data_lib
from zoo.forecast import evaluate as evaluate_lib
from zoo.forecast import train as train_lib
from zoo.forecast.config import ForecastConfig
from zoo.forecast.data import (
    Normalizer,
    Series,
    chronological_split,
    fill_missing,
    load_csv,
    load_series,
    targets_at,
    windows_at,
)
from zoo.forecast.model import NEURAL_MODELS, autoregressive_rollout


def make_series(values, name="toy"):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    columns = tuple(f"c{index}" for index in range(values.shape[1]))
    return Series(
        name=name,
        columns=columns,
        values=values,
        times=np.arange(len(values), dtype=np.float64),
        filled={column: 0 for column in columns},
    )


def seasonal_with_trend(length, period=12, slope=0.05, seed=0):
    steps = np.arange(length)
    noise = np.random.default_rng(seed).normal(0, 0.1, length)
    return 10 + slope * steps + 2 * np.sin(2 * np.pi * steps / period) + noise


# ----------------------------------------------------------------------------- splits and windows


def test_split_sizes_and_window_origins():
    split = chronological_split(100, 0.1, 0.2, window=5, horizon=3)
    assert (split.train_end, split.validation_end, split.length) == (70, 80, 100)
    train = split.origins("train", 5, 3)
    validation = split.origins("validation", 5, 3)
    test = split.origins("test", 5, 3)
    # Training windows: inputs from step 0 on, targets end at step 69 (last training step).
    assert (train[0], train[-1]) == (4, 66)
    # Validation/test targets start at the first step of their part and end at its last step.
    assert (validation[0] + 1, validation[-1] + 3) == (70, 79)
    assert (test[0] + 1, test[-1] + 3) == (80, 99)
    values = np.arange(100.0)[:, None]
    np.testing.assert_array_equal(
        windows_at(values, np.array([4, 10]), 5)[:, :, 0], [[0, 1, 2, 3, 4], [6, 7, 8, 9, 10]]
    )
    np.testing.assert_array_equal(targets_at(values[:, 0], np.array([4]), 3), [[5, 6, 7]])


def test_nothing_from_validation_or_test_reaches_training_or_statistics():
    """Huge values after the training part must not change any training-time quantity."""
    length = 200
    clean = seasonal_with_trend(length)
    config = ForecastConfig(
        window=12, horizon=4, season_period=0, validation_fraction=0.15, test_fraction=0.15, classical_models=()
    )  # the classical references have their own test below
    poisoned = clean.copy()
    train_end = chronological_split(length, 0.15, 0.15, 12, 4).train_end
    poisoned[train_end:] = 1e6
    reference = data_lib.prepare(config, make_series(clean))
    prepared = data_lib.prepare(config, make_series(poisoned))
    # Normalisation, period and MASE scale come from the training part only.
    np.testing.assert_allclose(prepared.normalizer.mean, clean[:train_end].mean())
    np.testing.assert_allclose(prepared.normalizer.std, clean[:train_end].std())
    assert prepared.season_period == reference.season_period == 12
    assert prepared.mase_scale == reference.mase_scale
    for name in ("lstm", "lstm-autoregressive"):
        inputs, targets = train_lib.supervised_arrays(prepared, config, name, "train")
        clean_inputs, clean_targets = train_lib.supervised_arrays(reference, config, name, "train")
        np.testing.assert_array_equal(inputs, clean_inputs)
        np.testing.assert_array_equal(targets, clean_targets)
        assert np.abs(inputs).max() < 10 and np.abs(targets).max() < 10
    # The linear AR baseline is fitted on the training part only: its forecast from the
    # last training window is identical with or without the poisoned future.
    origins = prepared.split.origins("validation", 12, 4)[:1]
    forecasts, _, _ = evaluate_lib.baseline_forecasts(prepared, config, origins)
    reference_forecasts, _, _ = evaluate_lib.baseline_forecasts(reference, config, origins)
    np.testing.assert_allclose(forecasts["linear_ar"], reference_forecasts["linear_ar"])


def test_too_short_series_names_the_part_and_sizes():
    with pytest.raises(
        ValueError, match=r"too short.*train part of 14 steps.*window=12 and horizon=4 need at least 16"
    ):
        chronological_split(20, 0.15, 0.15, window=12, horizon=4)
    with pytest.raises(ValueError, match=r"test part of 2 steps"):
        chronological_split(200, 0.15, 0.01, window=12, horizon=4)


def test_constant_series_is_refused():
    with pytest.raises(ValueError, match=r"\['c0'\] are constant over the training part"):
        Normalizer.fit(np.full((50, 1), 3.0), ("c0",))


# ----------------------------------------------------------------------------- missing values and CSV


def test_interpolation_is_linear_in_time_and_counted():
    times = np.array([0.0, 1.0, 3.0, 4.0])
    values = np.array([[0.0, 1.0], [np.nan, 1.0], [np.nan, np.nan], [8.0, 4.0]])
    filled, filled_times, counts, trimmed = fill_missing(values, times, "interpolate", ("a", "b"))
    # At time 1 the value is 1/4 of the way from 0 to 8, at time 3 three quarters: 2 and 6 (not 8/3, 16/3).
    np.testing.assert_allclose(filled[:, 0], [0, 2, 6, 8])
    np.testing.assert_allclose(filled[:, 1], [1, 1, 3, 4])
    assert counts == {"a": 2, "b": 1} and trimmed == 0
    np.testing.assert_array_equal(filled_times, times)


def test_missing_ends_are_trimmed_and_refuse_policy_raises():
    values = np.array([[np.nan], [1.0], [np.nan], [3.0], [np.nan]])
    filled, times, counts, trimmed = fill_missing(values, np.arange(5.0), "interpolate", ("y",))
    np.testing.assert_allclose(filled[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(times, [1, 2, 3])
    assert counts == {"y": 1} and trimmed == 2
    with pytest.raises(ValueError, match=r"3 missing values \(first: column 'y', row 0\).*missing=refuse"):
        fill_missing(values, np.arange(5.0), "refuse", ("y",))


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(cell) for cell in row) for row in rows) + "\n")
    return str(path)


def test_csv_with_dates_inputs_and_gaps(tmp_path):
    path = write_csv(
        tmp_path / "series.csv",
        ["date", "load", "temperature"],
        [["2020-01-01", 1, 5], ["2020-01-02", "", 6], ["2020-01-04", 7, "NA"], ["2020-01-05", 9, 8]],
    )
    name, columns, values, times = load_csv(path, "load", "date", ("temperature",))
    assert columns == ("load", "temperature")
    np.testing.assert_allclose(times - times[0], [0, 1, 3, 4])
    filled, _, counts, _ = fill_missing(values, times, "interpolate", columns)
    # Day 3 lies two thirds of the way from day 1 (6) to day 4 (8).
    np.testing.assert_allclose(filled, [[1, 5], [3, 6], [7, 6 + 2 * 2 / 3], [9, 8]])
    assert counts == {"load": 1, "temperature": 1}


@pytest.mark.parametrize(
    "rows, arguments, message",
    [
        (
            [["1", "2"]],
            ("missing_column", "", ()),
            r"Column 'missing_column' \(from --target\) is not in .*\['t', 'y'\]",
        ),
        ([["1", "2"]], ("y", "", ("nope",)), r"Column 'nope' \(from --inputs\)"),
        ([["1", "2"], ["2", "abc"]], ("y", "", ()), r"non-numeric value 'abc' on line 3"),
        ([["1", "2"], ["1", "3"]], ("y", "t", ()), r"not strictly increasing \(line 3\)"),
        ([["2020-13-45", "2"]], ("y", "t", ()), r"Time column 't' has '2020-13-45' on line 2"),
        ([], ("y", "", ()), r"no rows"),
    ],
)
def test_bad_csv_inputs_fail_clearly(tmp_path, rows, arguments, message):
    path = write_csv(tmp_path / "bad.csv", ["t", "y"], rows)
    with pytest.raises(ValueError, match=message):
        load_csv(path, *arguments)


def test_missing_csv_file_and_config_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match="No CSV file"):
        load_series(ForecastConfig(csv_path=str(tmp_path / "absent.csv"), target="y"))
    with pytest.raises(ValueError, match="csv_path` without `target"):
        ForecastConfig(csv_path="x.csv").validate()
    with pytest.raises(ValueError, match=r"unknown `models` \['transformer'\]"):
        ForecastConfig(models=("transformer",)).validate()
    with pytest.raises(ValueError, match="`horizon`: 0"):
        ForecastConfig(horizon=0).validate()
    with pytest.raises(ValueError, match="proj_units=4 with models=lstm,conv; proj_units applies to projection_lstm"):
        ForecastConfig(models=("lstm", "conv"), proj_units=4).validate()
    ForecastConfig(models=("conv", "projection_lstm-autoregressive"), proj_units=4).validate()


# ----------------------------------------------------------------------------- baselines with known answers


def test_seasonal_naive_is_exact_on_a_pure_seasonal_series():
    season = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    series = np.tile(season, 10)
    origins = np.array([9, 22, 30])
    forecast = baselines.seasonal_naive_forecast(series, origins, horizon=12, period=5)
    np.testing.assert_array_equal(forecast, targets_at(series, origins, 12))
    # Uses only the past: step h from origin t is y[t + h - 5 * ceil(h / 5)].
    np.testing.assert_array_equal(forecast[0, :6], series[[5, 6, 7, 8, 9, 5]])
    with pytest.raises(ValueError, match="needs 5 steps of history"):
        baselines.seasonal_naive_forecast(series, np.array([2]), 3, 5)


def test_last_value_repeats_the_origin():
    series = np.array([1.0, 4.0, 9.0, 16.0])
    np.testing.assert_array_equal(baselines.last_value_forecast(series, np.array([1, 2]), 3), [[4, 4, 4], [9, 9, 9]])


def test_linear_autoregression_is_exact_on_a_linear_trend():
    trend = 3.0 + 0.5 * np.arange(60)
    model = baselines.LinearAutoregression(4).fit(trend[:40])
    windows = windows_at(trend[:, None], np.array([45, 50]), 4)[:, :, 0]
    np.testing.assert_allclose(model.forecast(windows, 8), targets_at(trend, np.array([45, 50]), 8), atol=1e-8)


def test_linear_autoregression_recovers_an_ar2_process():
    rng = np.random.default_rng(3)
    series = np.zeros(5000)
    for step in range(2, len(series)):
        series[step] = 1.0 + 0.6 * series[step - 1] - 0.3 * series[step - 2] + rng.normal(0, 0.1)
    model = baselines.LinearAutoregression(2).fit(series)
    np.testing.assert_allclose(model.coefficients, [-0.3, 0.6], atol=0.03)  # oldest lag first
    np.testing.assert_allclose(model.intercept, 1.0, atol=0.05)
    # Two-step forecast = the recursion applied to its own first prediction.
    first = 1.0 + 0.6 * 2.0 - 0.3 * 1.0
    np.testing.assert_allclose(
        model.forecast(np.array([[1.0, 2.0]]), 2), [[first, 1.0 + 0.6 * first - 0.3 * 2.0]], atol=0.05
    )


def test_mase_and_errors_by_hand():
    training = np.array([1.0, 3.0, 2.0, 6.0, 4.0])
    # Seasonal naive with period 2 in sample: |2-1|, |6-3|, |4-2| -> mean 2.
    assert baselines.seasonal_naive_scale(training, 2) == 2.0
    forecasts = np.array([[1.0, 2.0], [3.0, 7.0]])
    truth = np.array([[2.0, 2.0], [3.0, 4.0]])
    scores = baselines.forecast_errors(forecasts, truth, scale=2.0)
    assert scores["mae"] == pytest.approx((1 + 0 + 0 + 3) / 4)
    assert scores["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0 + 9) / 4))
    assert scores["mase"] == pytest.approx(1.0 / 2.0)
    assert scores["mae_per_step"] == pytest.approx([0.5, 1.5])
    assert scores["rmse_per_step"] == pytest.approx([math.sqrt(0.5), math.sqrt(4.5)])
    assert scores["mase_per_step"] == pytest.approx([0.25, 0.75])


def test_season_period_inference():
    assert baselines.infer_season_period(seasonal_with_trend(300, period=12)[:210]) == 12
    assert baselines.infer_season_period(seasonal_with_trend(600, period=52, slope=0.01)[:420]) == 52
    assert baselines.infer_season_period(np.random.default_rng(0).normal(size=300)) == 1


def test_holt_winters_forecast_from_every_origin_matches_statsmodels():
    pytest.importorskip("statsmodels")
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    series = seasonal_with_trend(240)
    train_end = 180
    forecasts, description, parameters = baselines.holt_winters_forecasts(
        series, train_end, np.array([train_end - 1, 200]), 6, 12, "damped"
    )
    fitted = ExponentialSmoothing(
        series[:train_end],
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=12,
        initialization_method="estimated",
    ).fit()
    # From the training part's end, the re-filtered states give statsmodels' own forecast.
    np.testing.assert_allclose(forecasts[0], fitted.forecast(6), rtol=1e-6)
    assert "re-filtered" in description and 0 <= parameters["smoothing_level"] <= 1
    # Later origins use observations up to the origin: far better than the stale forecast.
    stale = fitted.forecast(26)[-6:]
    truth = series[201:207]
    assert np.abs(forecasts[1] - truth).mean() < np.abs(stale - truth).mean()


# ----------------------------------------------------------------------------- models


def test_autoregressive_rollout_feeds_back_its_own_predictions():
    def fibonacci_step(windows):
        return windows[:, -1, :] + windows[:, -2, :]

    windows = np.array([[[1.0], [1.0]], [[2.0], [5.0]]])
    forecast = np.asarray(autoregressive_rollout(fibonacci_step, windows, 5))
    np.testing.assert_allclose(forecast, [[2, 3, 5, 8, 13], [7, 12, 19, 31, 50]])

    def two_features(windows):  # the target follows the second feature's previous value
        return np.stack([windows[:, -1, 1], windows[:, -1, 1] * 2], axis=1)

    forecast = np.asarray(autoregressive_rollout(two_features, np.array([[[0.0, 1.0]]]), 4))
    np.testing.assert_allclose(forecast, [[1, 2, 4, 8]])


def test_registry_builds_every_forecaster_with_the_right_shapes():
    config = ForecastConfig(window=6, horizon=3, units=4, input_columns=("x",), csv_path="x.csv", target="y")
    assert registry.names("forecast/") == sorted(f"forecast/{name}" for name in NEURAL_MODELS)
    for name in NEURAL_MODELS:
        model = registry.build(f"forecast/{name}", config)
        output = model(np.zeros((2, 6, 2), np.float32))
        assert tuple(output.shape) == ((2, 2) if name.endswith("autoregressive") else (2, 3)), name
    # projection_lstm projects to units // 2 unless proj_units says otherwise.
    assert registry.build("forecast/projection_lstm", config).get_layer("projection_lstm").cell.proj_units == 2
    config.proj_units = 3
    assert registry.build("forecast/projection_lstm-autoregressive", config).output_shape == (None, 2)
    assert registry.build("forecast/projection_lstm", config).get_layer("projection_lstm").cell.proj_units == 3


def test_models_forecast_relative_to_the_last_value():
    """With zero output weights every model forecasts exactly the window's last value."""
    config = ForecastConfig(window=5, horizon=3, units=4)
    windows = np.random.default_rng(0).normal(size=(4, 5, 1)).astype(np.float32)
    for name in ("lstm", "conv", "gru-autoregressive"):
        model = registry.build(f"forecast/{name}", config)
        dense = model.layers[-2]
        dense.set_weights([np.zeros_like(weight) for weight in dense.get_weights()])
        forecast = evaluate_lib.neural_forecast(model, name, windows, 3)
        np.testing.assert_allclose(forecast, np.repeat(windows[:, -1, :1], 3, axis=1), atol=1e-6)


def test_refined_period_recovers_a_fractional_season():
    steps = np.arange(1200)
    series = 0.01 * steps + np.sin(2 * np.pi * steps / 52.18) + np.random.default_rng(1).normal(0, 0.2, len(steps))
    assert baselines.infer_season_period(series) == 52
    assert baselines.refine_season_period(series, 52) == pytest.approx(52.18, abs=0.05)
    assert baselines.refine_season_period(seasonal_with_trend(400, period=12), 12) == pytest.approx(12.0, abs=0.02)


@pytest.mark.parametrize("reference", ["holt_winters", "harmonic_arima"])
def test_classical_forecasts_use_only_observations_up_to_the_origin(reference):
    pytest.importorskip("statsmodels")
    series = seasonal_with_trend(240)
    origins = np.array([190, 200])

    def run(values):
        if reference == "holt_winters":
            return baselines.holt_winters_forecasts(values, 180, origins, 6, 12)[0]
        return baselines.harmonic_arima_forecasts(values, 180, origins, 6, 12.0, harmonics=2)[0]

    forecasts = run(series)
    poisoned = series.copy()
    poisoned[201:] = 1e3  # after the last origin: must not matter
    np.testing.assert_allclose(run(poisoned), forecasts)
    # The forecasts are good on this seasonal series with trend (noise sd 0.1).
    truth = targets_at(series, origins, 6)
    assert np.abs(forecasts - truth).mean() < 0.3


def test_works_without_statsmodels_and_matplotlib(monkeypatch, tmp_path):
    import sys

    from zoo.forecast.data import load_embedded

    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match=r"pip install statsmodels`, or forecast your own file with --csv"):
        load_embedded("co2")
    config = ForecastConfig(window=12, horizon=4)
    prepared = data_lib.prepare(config, make_series(seasonal_with_trend(200)))
    origins = prepared.split.origins("test", 12, 4)
    forecasts, notes, intervals = evaluate_lib.baseline_forecasts(prepared, config, origins)
    assert intervals == {}
    assert set(forecasts) == {"last_value", "seasonal_naive", "linear_ar"}
    assert "pip install statsmodels" in notes["holt_winters"] and "pip install statsmodels" in notes["harmonic_arima"]
    truth = targets_at(prepared.series.target, origins, 4)
    message = evaluate_lib.plot_forecasts(str(tmp_path / "plot.png"), prepared, origins, truth, forecasts, config)
    assert "pip install matplotlib" in message and not (tmp_path / "plot.png").exists()


# ----------------------------------------------------------------------------- seasonal structure and intervals


def _zero_head(model):
    """Set every Dense layer's weights to zero: the network then adds no change of its own."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    return model


def test_fourier_terms_layer_equals_the_numpy_terms_far_from_step_zero():
    from zoo.forecast.model import FourierTerms

    steps = np.array([0.0, 17.0, 2283.0, 1_000_003.0], np.float32)
    layer = FourierTerms(period=52.18, harmonics=3, offsets=[-2, -1, 0, 1, 26])
    got = np.asarray(layer(steps))
    wanted = np.stack(
        [baselines.fourier_terms(step + np.array([-2, -1, 0, 1, 26]), 52.18, 3) for step in steps.astype(np.float64)]
    )
    assert got.shape == (4, 5, 6)
    np.testing.assert_allclose(got, wanted, atol=2e-5)
    # sin and cos of the first harmonic, then the second: the layout of the classical regressors.
    np.testing.assert_allclose(wanted[0, 2], [0, 1, 0, 1, 0, 1], atol=1e-12)


def test_harmonic_fit_recovers_a_known_season_and_slope():
    steps = np.arange(240.0)
    series = 3.0 + 0.02 * steps + 1.5 * np.sin(2 * np.pi * steps / 12) - 0.5 * np.cos(4 * np.pi * steps / 12)
    coefficients, slope = baselines.harmonic_fit(series, 12.0, 2)
    np.testing.assert_allclose(coefficients, [1.5, 0.0, 0.0, -0.5], atol=1e-9)
    assert slope == pytest.approx(0.02)


@pytest.mark.parametrize("transform", ["deseasonalize", "residual"])
def test_a_network_that_adds_nothing_forecasts_the_harmonic_fits_change(transform):
    """With zero head weights the forecast is the last value plus the fit's change from the window's end."""
    config = ForecastConfig(window=6, horizon=3, units=2, transform=transform, classical_models=())
    prepared = data_lib.prepare(config, make_series(seasonal_with_trend(200)))
    seasonality = prepared.seasonality
    assert seasonality.whole_period == 12 and seasonality.period == pytest.approx(12.0, abs=0.1)
    origins = np.array([40, 150])
    windows = windows_at(prepared.normalized, origins, 6)
    for name in ("lstm", "gru-autoregressive"):
        model = _zero_head(registry.build(f"forecast/{name}", config, seasonality=seasonality))
        forecast = evaluate_lib.neural_forecast(model, name, windows, 3, train_lib.window_steps(origins))

        def fit(steps):
            terms = baselines.fourier_terms(steps, seasonality.period, seasonality.harmonics)
            slope = seasonality.slope if transform == "residual" else 0.0
            return terms @ np.array(seasonality.coefficients) + slope * steps

        future = origins[:, None] + np.arange(1, 4)[None, :]
        wanted = windows[:, -1, :1] + fit(future.ravel()).reshape(2, 3) - fit(origins)[:, None]
        np.testing.assert_allclose(forecast, wanted, atol=1e-4, err_msg=name)


def test_a_seasonal_difference_network_that_adds_nothing_is_the_seasonal_naive_forecast():
    config = ForecastConfig(window=16, horizon=5, units=2, transform="difference", season_period=12)
    prepared = data_lib.prepare(config, make_series(seasonal_with_trend(200)))
    origins = np.array([30, 101])
    windows = windows_at(prepared.normalized, origins, 16)
    naive = baselines.seasonal_naive_forecast(prepared.normalized[:, 0], origins, 5, 12)
    for name in ("conv", "rnn-autoregressive"):
        model = _zero_head(registry.build(f"forecast/{name}", config, seasonality=prepared.seasonality))
        # The network reads 16 - 12 = 4 differences; with nothing learnt, each difference stays the last one.
        last_difference = windows[:, -1, 0] - windows[:, -13, 0]
        wanted = naive + last_difference[:, None]
        forecast = evaluate_lib.neural_forecast(model, name, windows, 5)
        np.testing.assert_allclose(forecast, wanted, atol=1e-5, err_msg=name)


def test_structure_options_are_refused_where_the_series_cannot_serve_them():
    series = make_series(seasonal_with_trend(200))
    with pytest.raises(ValueError, match=r"features=fourier, which need a seasonal period.*period 1\)"):
        data_lib.prepare(ForecastConfig(window=12, horizon=4, features="fourier", season_period=1), series)
    with pytest.raises(
        ValueError, match=r"transform=difference` with window=12, horizon=4 and a seasonal period of 12"
    ):
        data_lib.prepare(ForecastConfig(window=12, horizon=4, transform="difference"), series)
    with pytest.raises(ValueError, match=r"without the series' seasonality"):
        registry.build("forecast/lstm", ForecastConfig(window=12, horizon=4, features="fourier"))
    with pytest.raises(
        ValueError, match=r"intervals=quantile` with the autoregressive models \['gru-autoregressive'\]"
    ):
        ForecastConfig(models=("lstm", "gru-autoregressive"), intervals="quantile").validate()
    with pytest.raises(ValueError, match=r"seed=2147483000` with `seeds=3`"):
        ForecastConfig(seed=2_147_483_000, seeds=3).validate()
    with pytest.raises(ValueError, match=r"`transform`: 'log'"):
        ForecastConfig(transform="log").validate()
    with pytest.raises(ValueError, match=r"at least 19 validation windows.*gives 17"):
        data_lib.prepare(ForecastConfig(window=12, horizon=4, validation_fraction=0.1), series)


def test_quantile_heads_are_ordered_and_the_pinball_loss_is_right_by_hand():
    from zoo.forecast.model import OrderedQuantiles, PinballLoss

    raw = np.random.default_rng(0).normal(size=(3, 2 * 5)).astype(np.float32) * 3
    ordered = np.asarray(OrderedQuantiles(2, (0.025, 0.1, 0.5, 0.9, 0.975))(raw))
    assert ordered.shape == (3, 2, 5) and np.all(np.diff(ordered, axis=-1) > 0)
    np.testing.assert_allclose(ordered[:, :, 2], raw.reshape(3, 2, 5)[:, :, 2])  # the median is the raw middle output
    loss = PinballLoss((0.1, 0.5, 0.9))
    truth = np.array([[1.0, 2.0]], np.float32)
    quantiles = np.array([[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]], np.float32)
    # Step 1: errors 1, 0, -2 -> 0.1*1, 0, 0.1*2; step 2: all zero. Mean over the 6 = 0.3 / 6.
    assert float(loss(truth, quantiles)) == pytest.approx(0.05)


def test_conformal_half_widths_and_interval_scores_by_hand():
    residuals = np.array([[1.0, -4.0], [-2.0, 3.0], [3.0, 2.0], [-4.0, -1.0]])
    widths = baselines.conformal_half_widths(residuals, (0.5, 0.8))
    # n = 4: level 0.5 takes the ceil(5 * 0.5) = 3rd smallest |residual| per step, level 0.8 the 4th.
    np.testing.assert_array_equal(widths[0.5], [3.0, 3.0])
    np.testing.assert_array_equal(widths[0.8], [4.0, 4.0])
    assert np.all(np.isinf(baselines.conformal_half_widths(residuals, (0.95,))[0.95]))
    truth = np.array([[1.0, 5.0], [2.0, 2.0]])
    scores = baselines.interval_scores({0.8: (np.zeros((2, 2)), np.full((2, 2), 2.0))}, truth)
    assert scores == {"coverage_80": 0.75, "width_80": 2.0, "coverage_80_per_step": [1.0, 0.5]}


def test_harmonic_regression_intervals_nest_and_cover_a_series_it_fits():
    pytest.importorskip("statsmodels")
    series = seasonal_with_trend(240)
    origins = np.arange(180, 230, 5)
    forecasts, _, _, intervals = baselines.harmonic_arima_forecasts(
        series, 180, origins, 6, 12.0, harmonics=2, levels=(0.8, 0.95)
    )
    (low80, high80), (low95, high95) = intervals[0.8], intervals[0.95]
    assert (
        np.all(low95 < low80) and np.all(low80 < forecasts) and np.all(forecasts < high80) and np.all(high80 < high95)
    )
    truth = targets_at(series, origins, 6)
    scores = baselines.interval_scores(intervals, truth)
    assert scores["coverage_95"] >= 0.85 and scores["width_95"] < 1.0  # noise sd 0.1: about 0.4 wide


def test_an_ensemble_averages_its_members():
    from zoo.forecast.model import build_ensemble, ensemble_members

    config = ForecastConfig(window=5, horizon=2, units=3, features="fourier", season_period=12)
    prepared = data_lib.prepare(config, make_series(seasonal_with_trend(200)))
    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        members.append(registry.build("forecast/gru", config, seasonality=prepared.seasonality))
    windows = np.random.default_rng(0).normal(size=(3, 5, 1)).astype(np.float32)
    steps = np.array([4.0, 50.0, 99.0], np.float32)
    alone = [np.asarray(member([windows, steps])) for member in members]
    ensemble = build_ensemble(members)
    assert ensemble_members(ensemble) == members and ensemble_members(members[0]) == [members[0]]
    np.testing.assert_allclose(np.asarray(ensemble([windows, steps])), (alone[0] + alone[1]) / 2, atol=1e-6)


def test_windows_dataset_shuffles_every_row_and_keeps_step_inputs_aligned():
    windows = np.arange(100, dtype=np.float32).reshape(100, 1, 1)
    steps = np.arange(100, dtype=np.float32)
    dataset = data_lib.windows_dataset((windows, steps), steps * 2, batch_size=100, shuffle_seed=0)
    (batch_windows, batch_steps), targets = next(iter(dataset))
    order = np.asarray(batch_steps).astype(int)
    assert sorted(order) == list(range(100))
    # A shuffle over the whole set moves rows far, not only among neighbours.
    assert np.abs(order - np.arange(100)).max() > 50
    np.testing.assert_array_equal(np.asarray(batch_windows)[:, 0, 0], order)
    np.testing.assert_array_equal(np.asarray(targets), 2 * order)
