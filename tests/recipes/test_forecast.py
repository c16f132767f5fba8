"""recipes.forecast end to end on a tiny CSV: train, evaluate, export (fresh process), CLI errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from recipes import forecast
from tests.support import REPO, run_in_fresh_python
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
            out = serve(window=tf.constant(np.array({raw_windows.tolist()!r}, np.float32)))["forecast"].numpy()
            print(json.dumps({{"forecast": out.tolist(), "shape": serve.structured_input_signature[1]["window"].shape.as_list()}}))
            """,
            cwd=str(tmp_path),
        )
        assert result["shape"] == [None, 12]
        # Original units in and out: forecasts near the series level (about 60), equal to the in-process ones.
        np.testing.assert_allclose(result["forecast"], expected, rtol=1e-4)
        assert 40 < np.mean(result["forecast"]) < 90


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
