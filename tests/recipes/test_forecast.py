"""recipes.forecast end to end on a tiny CSV: train, evaluate, export (fresh process), CLI errors."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from recipes import forecast
from tests.support import REPO, run_in_fresh_python
from zoo import onnx_export
from zoo.files import read_json
from zoo.forecast import data as data_lib
from zoo.forecast import evaluate as evaluate_lib
from zoo.forecast import export as export_lib
from zoo.forecast import train as train_lib
from zoo.forecast.config import ForecastConfig

TINY = ["window=12", "horizon=4", "units=4", "epochs=1", "batch_size=64", "max_minutes=2"]


def write_series(path, length=160, with_input=False, gap=True):
    steps = np.arange(length)
    rng = np.random.default_rng(0)
    driver = np.cos(2 * np.pi * steps / 12)
    target = 50 + 0.1 * steps + 3 * np.sin(2 * np.pi * steps / 12) + rng.normal(0, 0.2, length)
    lines = ["day,demand,driver" if with_input else "day,demand"]
    for step in steps:
        value = "" if gap and step in (30, 31) else f"{target[step]:.4f}"
        lines.append(f"{step},{value},{driver[step]:.4f}" if with_input else f"{step},{value}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_train_evaluate_export_end_to_end(tmp_path, capsys):
    csv_path = write_series(tmp_path / "demand.csv")
    workdir = str(tmp_path / "run")
    arguments = ["--workdir", workdir, "--csv", csv_path, "--target", "demand", "--time-column", "day", "--seed", "3"]
    overrides = [item for setting in [*TINY, "models=simple_rnn,gru-autoregressive"] for item in ("--set", setting)]
    assert forecast.main(["train", *arguments, *overrides, "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert "missing values (interpolate): demand: 2" in printed and "season period 12 (inferred)" in printed
    assert "Best recurrent model" in printed
    metrics = read_json(os.path.join(workdir, "metrics.json"))
    classical = {"holt_winters", "harmonic_arima"} if _has_statsmodels() else set()
    assert (
        set(metrics["models"])
        == {"last_value", "seasonal_naive", "linear_ar", "simple_rnn", "gru-autoregressive"} | classical
    )
    assert metrics["split"] == {"train": 112, "validation": 24, "test": 24}
    assert metrics["test_windows"] == 24 - 4 + 1
    assert len(metrics["models"]["simple_rnn"]["mase_per_step"]) == 4
    for name in ("simple_rnn", "gru-autoregressive", *(["harmonic_arima"] if _has_statsmodels() else [])):
        scores = metrics["models"][name]
        assert 0 <= scores["coverage_80"] <= scores["coverage_95"] <= 1 and 0 < scores["width_80"] < scores["width_95"]
        assert len(scores["coverage_95_per_step"]) == 4
    assert "split conformal" in metrics["notes"]["simple_rnn"] and "coverage_80" not in metrics["models"]["linear_ar"]
    # On this seasonal series with trend, AR(12) must beat the last value by far.
    assert metrics["models"]["linear_ar"]["mase"] < 0.5 * metrics["models"]["last_value"]["mase"]
    for name in (
        "config.json",
        "forecast.png",
        "models/simple_rnn/checkpoints/best.keras",
        "models/gru-autoregressive/training.json",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name

    # evaluate reproduces the numbers from the saved config and checkpoints.
    assert forecast.main(["evaluate", "--workdir", workdir]) == 0
    again = read_json(os.path.join(workdir, "metrics.json"))
    for name, scores in metrics["models"].items():
        assert again["models"][name]["mae"] == pytest.approx(scores["mae"], rel=1e-6), name

    # Training the same run again into the same workdir is refused.
    with pytest.raises(ValueError, match="already holds"):
        forecast.main(["train", *arguments, *overrides, "--verbose", "0"])

    config = ForecastConfig(**{**read_json(os.path.join(workdir, "config.json")), "input_columns": ()})
    prepared = data_lib.prepare(config)
    origins = prepared.split.origins("test", 12, 4)[:3]
    raw_windows = prepared.series.values[origins[:, None] + np.arange(-11, 1)][:, :, 0]
    for name in ("simple_rnn", "gru-autoregressive"):
        assert forecast.main(["export", "--workdir", workdir, "--model", name]) == 0
        expected = prepared.normalizer.denormalize_target(
            evaluate_lib.neural_forecast(
                evaluate_lib.load_trained(workdir, name),
                name,
                prepared.normalized[origins[:, None] + np.arange(-11, 1)],
                4,
            )
        )
        result = run_in_fresh_python(
            f"""
            import json, numpy as np, tensorflow as tf
            loaded = tf.saved_model.load({os.path.join(workdir, "export", name)!r})
            serve = loaded.signatures["serving_default"]
            out = serve(window=tf.constant(np.array({raw_windows.tolist()!r}, np.float32)))
            outputs = {{key: value.numpy().tolist() for key, value in out.items()}}
            print(json.dumps({{**outputs, "shape": serve.structured_input_signature[1]["window"].shape.as_list()}}))
            """,
            cwd=str(tmp_path),
        )
        assert result["shape"] == [None, 12]
        # Original units in and out: forecasts near the series level (about 60), equal to the in-process ones.
        np.testing.assert_allclose(result["forecast"], expected, rtol=1e-4)
        assert 40 < np.mean(result["forecast"]) < 90
        # Conformal intervals (the default): the forecast -+ one half-width per step, the 95% one the wider.
        half_80 = np.subtract(result["upper_80"], result["forecast"])
        half_95 = np.subtract(result["forecast"], result["lower_95"])
        np.testing.assert_allclose(half_80, np.broadcast_to(half_80[0], half_80.shape), atol=1e-4)
        assert np.all(half_95[0] >= half_80[0]) and np.all(half_80[0] > 0)


def test_multivariate_inputs_train_and_export_signature(tmp_path):
    csv_path = write_series(tmp_path / "two.csv", with_input=True, gap=False)
    config = ForecastConfig(
        csv_path=csv_path,
        target="demand",
        input_columns=("driver",),
        models=("conv",),
        window=12,
        horizon=4,
        units=4,
        epochs=1,
        seed=1,
        classical_models=(),
    )
    train_lib.train(config, str(tmp_path / "run"))
    metrics = evaluate_lib.evaluate(config, str(tmp_path / "run"), plot=False)
    assert metrics["missing_filled"] == {"demand": 0, "driver": 0}
    path = export_lib.export(config, str(tmp_path / "run"), "conv")
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve.structured_input_signature[1]["window"].shape.as_list() == [None, 12, 2]


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, capsys):
    csv_path = write_series(tmp_path / "demand.csv")
    workdir = str(tmp_path / "new")
    overrides = [item for setting in [*TINY, "models=simple_rnn", "classical_models="] for item in ("--set", setting)]
    arguments = ["train", "--workdir", workdir, "--csv", csv_path, "--target", "demand", "--time-column", "day"]
    assert forecast.main([*arguments, *overrides, "--verbose", "0", "--resume"]) == 0
    assert "simple_rnn: nothing to resume: starting fresh" in capsys.readouterr().out.splitlines()
    assert read_json(os.path.join(workdir, "models", "simple_rnn", "training.json"))["epochs"] == 1
    assert "simple_rnn" in read_json(os.path.join(workdir, "metrics.json"))["models"]


def test_same_seed_same_numbers(tmp_path):
    csv_path = write_series(tmp_path / "demand.csv")
    results = []
    for run in ("a", "b"):
        config = ForecastConfig(
            csv_path=csv_path,
            target="demand",
            models=("conv",),
            window=12,
            horizon=4,
            units=4,
            epochs=1,
            seed=5,
            classical_models=(),
        )
        train_lib.train(config, str(tmp_path / run))
        results.append(evaluate_lib.evaluate(config, str(tmp_path / run), plot=False)["models"]["conv"]["mae"])
    assert results[0] == results[1]


def _has_statsmodels():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["train", "--workdir", "{tmp}/w", "--csv", "{tmp}/demand.csv", "--target", "price"],
            "Column 'price' (from --target) is not in",
        ),
    ],
)
def test_command_line_errors_are_one_line(tmp_path, arguments, message):
    write_series(tmp_path / "demand.csv")
    completed = subprocess.run(
        [sys.executable, "-m", "recipes.forecast", *[argument.format(tmp=tmp_path) for argument in arguments]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "error: " in completed.stderr and message in completed.stderr, completed.stderr


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (
            ["train", "--workdir", "{tmp}/w", "--csv", "{tmp}/absent.csv", "--target", "y"],
            FileNotFoundError,
            "No CSV file at",
        ),
        (["train", "--workdir", "{tmp}/w", "--target", "y"], ValueError, "pass it with --csv PATH"),
        (["train", "--workdir", "{tmp}/w", "--set", "windw=3"], ValueError, "Unknown config field 'windw'"),
        (
            ["train", "--workdir", "{tmp}/w", "--csv", "{tmp}/demand.csv", "--target", "demand", "--set", "window=150"],
            ValueError,
            "too short",
        ),
        (
            [
                "train",
                "--workdir",
                "{tmp}/w",
                "--csv",
                "{tmp}/demand.csv",
                "--target",
                "demand",
                "--set",
                "missing=refuse",
            ],
            ValueError,
            "missing=refuse",
        ),
        (["evaluate", "--workdir", "{tmp}/w", "--set", "horizon=3"], ValueError, "only apply to `train`"),
        (["evaluate", "--workdir", "{tmp}/nothing"], FileNotFoundError, "No config file"),
    ],
)
def test_bad_arguments_raise_errors_the_cli_prints(tmp_path, arguments, error, message):
    write_series(tmp_path / "demand.csv")
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        forecast.main([argument.format(tmp=tmp_path) for argument in arguments])


def test_table_and_verdict_say_who_wins():
    metrics = {
        "horizon": 4,
        "models": {
            name: {"mae": mase, "rmse": mase, "mase": mase, "mase_per_step": [mase] * 4}
            for name, mase in {
                "seasonal_naive": 1.0,
                "linear_ar": 0.5,
                "lstm": 0.6,
                "gru": 0.8,
                "holt_winters": 0.4,
            }.items()
        },
    }
    table = forecast.format_table(metrics)
    assert [line.split()[0] for line in table.splitlines()[2:]] == [
        "holt_winters",
        "linear_ar",
        "lstm",
        "gru",
        "seasonal_naive",
    ]
    text = forecast.verdict(metrics)
    assert "Best recurrent model: lstm (MASE 0.600)" in text
    assert "beats seasonal_naive" in text and "does NOT beat linear_ar" in text and "does NOT beat holt_winters" in text


def test_benchmark_runs_keras_only_where_it_has_a_built_in_layer(tmp_path):
    import keras

    from zoo.forecast.model import build_model

    config = ForecastConfig(models=("conv", "lstm", "layernorm_gru", "simple_rnn-autoregressive"))
    (ours, ours_dir), (theirs, theirs_dir) = forecast._benchmark_runs(config, ("ours", "keras"), str(tmp_path))
    assert (ours_dir, theirs_dir) == (str(tmp_path / "ours"), str(tmp_path / "keras"))
    assert ours.models == config.models and ours.implementation == "ours"
    assert theirs.models == ("lstm", "simple_rnn-autoregressive") and theirs.implementation == "keras"
    assert theirs.classical_models == () and ours.classical_models == config.classical_models
    ((alone, _),) = forecast._benchmark_runs(config, ("keras",), str(tmp_path))
    assert alone.classical_models == config.classical_models
    model = build_model(theirs, "simple_rnn-autoregressive")
    assert [type(layer) for layer in model.layers if isinstance(layer, keras.layers.RNN)] == [keras.layers.SimpleRNN]
    with pytest.raises(ValueError, match=r"none of the models \(conv, peephole_lstm\) has a Keras built-in layer"):
        forecast._benchmark_runs(ForecastConfig(models=("conv", "peephole_lstm")), ("ours", "keras"), str(tmp_path))


def test_interleaved_runs_alternate_model_by_model(tmp_path, monkeypatch):
    calls = []

    def train_model(config, workdir, prepared, name, distribution, resume, verbose, log):
        calls.append((config.implementation, name))
        return {"epochs": 1}

    monkeypatch.setattr(train_lib, "_train_model", train_model)
    base = ForecastConfig(window=12, horizon=4, classical_models=())
    runs = [
        (ForecastConfig(**{**vars(base), "models": ("conv", "lstm", "gru")}), str(tmp_path / "ours"), print),
        (
            ForecastConfig(**{**vars(base), "models": ("lstm", "gru"), "implementation": "keras"}),
            str(tmp_path / "k"),
            print,
        ),
    ]
    summaries = train_lib.train_interleaved(runs)
    assert calls == [("ours", "conv"), ("keras", "lstm"), ("ours", "lstm"), ("ours", "gru"), ("keras", "gru")]
    assert [list(summary) for summary in summaries] == [["conv", "lstm", "gru"], ["lstm", "gru"]]


def test_side_by_side_puts_each_model_of_both_runs_in_a_row():
    def summary(seconds):
        return {"epochs": len(seconds), "epoch_seconds": seconds}

    trained = {
        "ours": {"conv": summary([3.0, 1.0]), "lstm": summary([5.0, 1.0, 2.0, 3.0]), "gru": summary([4.0])},
        "keras": {"lstm": summary([6.0, 3.0, 4.0, 6.0]), "gru": summary([2.0])},
    }
    scored = {
        "ours": {"models": {"conv": {"mase": 0.5}, "lstm": {"mase": 0.6}, "gru": {"mase": 0.7}}},
        "keras": {"models": {"lstm": {"mase": 0.61}, "gru": {"mase": 0.72}}},
    }
    lines = forecast.side_by_side(trained, scored).splitlines()
    assert lines[0].split()[:2] == ["model", "first"] and len(lines) == 4
    lstm, gru = lines[2].split(), lines[3].split()
    # first 5 / 6 s; median after the first 2 / 4 s: keras / ours 2x; 4 epochs each; MASE 0.600 / 0.610
    assert lstm == ["lstm", "5.00", "6.00", "2.000", "4.000", "2.00x", "4", "4", "0.600", "0.610"]
    # One epoch: no median, no ratio.
    assert gru == ["gru", "4.00", "2.00", "-", "-", "-", "1", "1", "0.700", "0.720"]


def _structured_run(tmp_path, model, seeds, capsys):
    """Train `model` on the tiny series with features=fourier, transform=deseasonalize and intervals=quantile."""
    csv_path = write_series(tmp_path / "demand.csv")
    workdir = str(tmp_path / "run")
    settings = [*TINY, f"models={model}", "classical_models=", f"seeds={seeds}"]
    settings += ["features=fourier", "transform=deseasonalize", "intervals=quantile"]
    arguments = ["--workdir", workdir, "--csv", csv_path, "--target", "demand", "--time-column", "day"]
    arguments += [item for setting in settings for item in ("--set", setting)]
    assert forecast.main(["train", *arguments, "--verbose", "0"]) == 0
    return workdir, arguments, capsys.readouterr().out


def test_structured_quantile_ensemble_trains_resumes_and_exports(tmp_path, capsys):
    """features=fourier, transform=deseasonalize, intervals=quantile and seeds=2 through train, resume and export."""
    workdir, arguments, printed = _structured_run(tmp_path, "conv", 2, capsys)
    assert "conv member 2/2: 1 epochs" in printed and "conv: ensemble of 2 members saved" in printed
    assert "cover80  width80  cover95  width95" in printed
    metrics = read_json(os.path.join(workdir, "metrics.json"))
    scores = metrics["models"]["conv"]
    assert 0 <= scores["coverage_80"] <= scores["coverage_95"] <= 1 and 0 < scores["width_80"] < scores["width_95"]
    assert "quantile heads" in metrics["notes"]["conv"]
    # |mean of forecasts - truth| is at most the mean of |forecast - truth|: the ensemble errs no more than its average member.
    members = metrics["member_mase"]["conv"]
    assert len(members) == 2 and scores["mase"] <= np.mean(members) + 1e-9
    assert f"conv: an ensemble of 2; its members' own MASE {members[0]:.3f}, {members[1]:.3f}" in printed
    model = evaluate_lib.load_trained(workdir, "conv")
    assert [layer.name for layer in model.layers if hasattr(layer, "layers")] == ["member_1", "member_2"]

    # A run killed after member 1 finished: --resume reuses it and member 2's finished run, and rebuilds the ensemble.
    os.remove(os.path.join(workdir, "models", "conv", "training.json"))
    os.remove(os.path.join(workdir, "models", "conv", "member-2", "training.json"))
    assert forecast.main(["train", *arguments, "--verbose", "0", "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("conv member 1/2: finished earlier, reusing") for line in lines)
    assert any(line.startswith("conv member 2/2: already finished (1 epochs") for line in lines)
    again = read_json(os.path.join(workdir, "metrics.json"))
    assert again["models"]["conv"]["mae"] == pytest.approx(scores["mae"], rel=1e-6)

    # The exports take the window and its position in the series, and return the quantile bounds.
    config = ForecastConfig(**{**read_json(os.path.join(workdir, "config.json")), "input_columns": ()})
    prepared = data_lib.prepare(config)
    origins = prepared.split.origins("test", 12, 4)[:3]
    point, bounds, _ = evaluate_lib.neural_forecasts(model, "conv", config, prepared, origins)
    raw_windows = prepared.series.values[origins[:, None] + np.arange(-11, 1)][:, :, 0].astype(np.float32)
    assert forecast.main(["export", "--workdir", workdir, "--model", "conv"]) == 0
    assert "window and step" in capsys.readouterr().out
    import tensorflow as tf

    serve = tf.saved_model.load(os.path.join(workdir, "export", "conv")).signatures["serving_default"]
    out = serve(window=tf.constant(raw_windows), step=tf.constant(origins, tf.float32))
    assert sorted(out) == ["forecast", "lower_80", "lower_95", "upper_80", "upper_95"]
    np.testing.assert_allclose(out["forecast"].numpy(), point, rtol=1e-4)
    np.testing.assert_allclose(out["lower_95"].numpy(), bounds[0.95][0], rtol=1e-4)
    np.testing.assert_allclose(out["upper_80"].numpy(), bounds[0.8][1], rtol=1e-4)
    # LiteRT: checked against Keras on every output before it is written; an ensemble has no step signature.
    assert forecast.main(["export", "--workdir", workdir, "--model", "conv", "--format", "litert"]) == 0
    with pytest.raises(ValueError, match=r"--step, but model 'conv' is an ensemble \(seeds > 1\)"):
        forecast.main(["export", "--workdir", workdir, "--model", "conv", "--format", "litert", "--step"])
    if importlib.util.find_spec("tf2onnx") is not None and importlib.util.find_spec("onnxruntime") is not None:
        capsys.readouterr()
        assert forecast.main(["export", "--workdir", workdir, "--model", "conv", "--format", "onnx"]) == 0
        path = os.path.join(workdir, "export", "conv.onnx")
        got = onnx_export.run(path, {"window": raw_windows, "step": origins.astype(np.float32)})
        np.testing.assert_allclose(got["forecast"], point, rtol=1e-5)
        np.testing.assert_allclose(got["lower_95"], bounds[0.95][0], rtol=1e-5)


@pytest.mark.slow
def test_structured_lstm_exports_load_without_the_project_and_fuse(tmp_path, capsys):
    """An LSTM with Fourier inputs and quantile heads: its SavedModel in a fresh process, its .tflite fused."""
    workdir, _, _ = _structured_run(tmp_path, "lstm", 1, capsys)
    config = ForecastConfig(**{**read_json(os.path.join(workdir, "config.json")), "input_columns": ()})
    prepared = data_lib.prepare(config)
    origins = prepared.split.origins("test", 12, 4)[:3]
    model = evaluate_lib.load_trained(workdir, "lstm")
    point, bounds, _ = evaluate_lib.neural_forecasts(model, "lstm", config, prepared, origins)
    raw_windows = prepared.series.values[origins[:, None] + np.arange(-11, 1)][:, :, 0]
    assert forecast.main(["export", "--workdir", workdir, "--model", "lstm"]) == 0
    result = run_in_fresh_python(
        f"""
        import json, numpy as np, tensorflow as tf
        serve = tf.saved_model.load({os.path.join(workdir, "export", "lstm")!r}).signatures["serving_default"]
        out = serve(window=tf.constant(np.array({raw_windows.tolist()!r}, np.float32)),
                    step=tf.constant({origins.astype(float).tolist()!r}, tf.float32))
        print(json.dumps({{name: value.numpy().tolist() for name, value in out.items()}}))
        """,
        cwd=str(tmp_path),
    )
    np.testing.assert_allclose(result["forecast"], point, rtol=1e-4)
    np.testing.assert_allclose(result["upper_95"], bounds[0.95][1], rtol=1e-4)
    with pytest.raises(ValueError, match=r"reads more than its window or has quantile heads"):
        forecast.main(["export", "--workdir", workdir, "--model", "lstm", "--format", "litert", "--step"])
    capsys.readouterr()
    assert forecast.main(["export", "--workdir", workdir, "--model", "lstm", "--format", "litert"]) == 0
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM x1" in capsys.readouterr().out
    if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        return
    # ONNX: the same two inputs and five outputs, the LSTM one ONNX operator, any batch size.
    assert forecast.main(["export", "--workdir", workdir, "--model", "lstm", "--format", "onnx"]) == 0
    assert "recurrent operators: LSTM (forward) x1" in capsys.readouterr().out
    path = os.path.join(workdir, "export", "lstm.onnx")
    got = onnx_export.run(path, {"window": raw_windows.astype(np.float32), "step": origins.astype(np.float32)})
    assert sorted(got) == ["forecast", "lower_80", "lower_95", "upper_80", "upper_95"]
    np.testing.assert_allclose(got["forecast"], point, rtol=1e-5)
    np.testing.assert_allclose(got["lower_80"], bounds[0.8][0], rtol=1e-5)
    np.testing.assert_allclose(got["upper_95"], bounds[0.95][1], rtol=1e-5)
    assert sorted(onnx_export.metadata(path)["inputs"]) == ["step", "window"]


def test_variants_table_lines_up_each_variant_with_the_reference():
    def metrics(lstm, gru, coverage):
        scores = {"mase": 0.0, "coverage_80": coverage, "width_80": 1.5, "coverage_95": 0.9, "width_95": 2.5}
        return {
            "models": {
                "lstm": {**scores, "mase": lstm},
                "gru": {**scores, "mase": gru},
                "harmonic_arima": {**scores, "mase": 0.362},
            }
        }

    results = {("plain", "co2"): metrics(0.368, 0.4, 0.77), ("fourier", "co2"): metrics(0.35, 0.39, 0.81)}
    results["fourier", "co2"]["member_mase"] = {"gru": [0.41, 0.388]}
    table = forecast.variants_table(results, ("plain", "fourier"), ("co2",)).splitlines()
    assert table[0] == "| variant | co2 lstm MASE | co2 gru MASE |"
    assert table[2:5] == [
        "| harmonic_arima (statsmodels) | 0.362 | 0.362 |",
        "| plain | 0.368 | 0.400 |",
        "| fourier | 0.350 | 0.390 (0.388-0.410) |",
    ]
    assert table[-1] == "| fourier | 0.810 / 1.5 | 0.900 / 2.5 | 0.810 / 1.5 | 0.900 / 2.5 |"
    with pytest.raises(ValueError, match=r"`--only`: 'plain,fancy'"):
        forecast.main(["variants", "--workdir", "unused", "--only", "plain,fancy"])


def test_help_lists_every_config_field_with_its_comment():
    import dataclasses

    lines = forecast.config_help().splitlines()[1:]
    assert [line.split()[0] for line in lines] == [field.name for field in dataclasses.fields(ForecastConfig)]
    assert all(len(line.split(None, 2)) == 3 for line in lines), lines  # name, default, comment
    assert any(line.split()[:2] == ["intervals", ForecastConfig().intervals] for line in lines)
