"""`python -m recipes.sentiment`: the bare command, bad inputs, and a tiny train/export/predict run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from recipes import _cli
from recipes import sentiment as recipe
from tests.support import REPO, run_in_fresh_python

TINY_SETTINGS = [
    "--set",
    "units=4",
    "--set",
    "embedding_dim=6",
    "--set",
    "epochs=2",
    "--set",
    "batch_size=16",
    "--set",
    "vocabulary_size=60",
    "--set",
    "baseline_epochs=3",
    "--set",
    "test_fraction=0.25",
    "--set",
    "baseline_learning_rate=0.05",
    "--set",
    "dropout=0.0",
]
POSITIVE = [
    "a splendid film",
    "splendid acting and a fine story",
    "fine , moving and splendid",
    "a moving story",
    "the cast is splendid",
    "a fine fine film",
]
NEGATIVE = [
    "a dreadful film",
    "dreadful acting and a dull story",
    "dull , flat and dreadful",
    "a dull story",
    "the cast is dreadful",
    "a flat flat film",
]


@pytest.fixture(scope="module")
def class_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    paths = {}
    for name, sentences in (("pos", POSITIVE), ("neg", NEGATIVE)):
        paths[name] = directory / f"{name}.txt"
        paths[name].write_text("\n".join(sentences * 4) + "\n", encoding="utf-8")
    return ["--class-file", f"pos={paths['pos']}", "--class-file", f"neg={paths['neg']}"]


def run_cli(argv, capsys):
    """Run the recipe like the command line does: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(recipe.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_bare_command_says_how_to_get_data_and_exits_non_zero():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "recipes.sentiment"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    for expected in (
        "--class-file",
        "rt-polarity.pos",
        "--data",
        "--text-column",
        "--tfds imdb_reviews",
        "--download",
        "cornell.edu",
    ):
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_train_without_data_prints_the_same_help(tmp_path, capsys):
    code, _, err = run_cli(["train", "--workdir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert err.startswith("error: no data given") and "--class-file pos=rt-polarity.pos" in err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, class_files):
    workdir = str(tmp_path / "run")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"un film \xe9mouvant\n")
    table = tmp_path / "table.csv"
    table.write_text("text,label\ngood,pos\nbad,neg\nodd,meh\n", encoding="utf-8")
    cases = [
        (
            ["--class-file", f"pos={latin}", "--class-file", f"neg={latin}"],
            r"latin.txt' is not valid utf-8: byte(s) 0xe9 at byte offset 8",
        ),
        (["--data", str(table), "--text-column", "review"], "text column 'review' is missing"),
        (["--data", str(table), "--labels", "neg,pos"], "Unknown label value 'meh' at line 4"),
        (class_files[:2], "only 1 class(es) (pos)"),
        (["--class-file", "pos"], "expected NAME=PATH"),
        (["--data", str(table), *class_files], "several data sources"),
        ([*class_files, "--set", "units=-3"], "`units`: -3"),
        ([*class_files, "--set", "colour=red"], "Unknown config field 'colour'"),
        ([*class_files, "--set", "proj_units=4"], "proj_units=4 with cell=lstm; proj_units applies to projection_lstm"),
    ]
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    cases.append((["--data", str(empty)], "empty.csv' is empty"))
    for arguments, message in cases:
        code, _, err = run_cli(["train", "--workdir", workdir, *arguments], capsys)
        assert code == 2, arguments
        assert message in err, (arguments, err)
        assert "Traceback" not in err
    code, _, err = run_cli(["predict", "--workdir", workdir, "fine"], capsys)
    assert code == 2 and "No metrics.json" in err
    code, _, err = run_cli(
        ["benchmark", "--workdir", workdir, *class_files, "--cells", "layernorm_gru,lstm", "--set", "proj_units=4"],
        capsys,
    )
    assert code == 2 and "proj_units=4 with --cells=layernorm_gru,lstm" in err


def test_tfds_source_through_the_command_line(tmp_path, capsys):
    import tensorflow_datasets as tfds

    parser = recipe.build_parser()
    args = parser.parse_args(
        ["train", "--workdir", str(tmp_path), "--tfds", "imdb_reviews", "--data-dir", str(tmp_path)]
    )
    with tfds.testing.mock_data(num_examples=6):
        data = recipe.load_data(args)
    assert len(data) == 6 and data.class_names == ("neg", "pos")
    code, _, err = run_cli(
        [
            "train",
            "--workdir",
            str(tmp_path / "run"),
            "--tfds",
            "imdb_reviews",
            "--data-dir",
            str(tmp_path / "nothing"),
        ],
        capsys,
    )
    assert code == 2 and "Pass --download" in err


def test_train_evaluate_export_predict_end_to_end(tmp_path, capsys, class_files):
    workdir = str(tmp_path / "run")
    assert recipe.main(["train", "--workdir", workdir, *class_files, *TINY_SETTINGS, "--seed", "3", "--quiet"]) == 0
    metrics = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert metrics["class_names"] == ["neg", "pos"]
    assert set(metrics["models"]) == {"bilstm", "baseline"}
    for model_metrics in metrics["models"].values():
        assert model_metrics["examples"] == 12
        assert np.sum(model_metrics["confusion_matrix"]) == 12
        assert 0.0 <= model_metrics["roc_auc"] <= 1.0
    # The separating words are in every sentence: the baseline gets them all right.
    assert metrics["models"]["baseline"]["accuracy"] == 1.0
    for name in ("config.json", "model.keras", "checkpoints/best.keras", "logs/history.csv", "baseline/model.keras"):
        assert os.path.exists(os.path.join(workdir, name)), name
    capsys.readouterr()

    # Re-evaluating the saved model on the same test split reproduces the training run's numbers.
    assert recipe.main(["evaluate", "--workdir", workdir, *class_files]) == 0
    evaluation = json.loads(open(os.path.join(workdir, "evaluation-test.json")).read())
    assert evaluation["models"]["bilstm"]["accuracy"] == metrics["models"]["bilstm"]["accuracy"]
    assert evaluation["models"]["bilstm"]["confusion_matrix"] == metrics["models"]["bilstm"]["confusion_matrix"]

    export = os.path.join(workdir, "export")
    assert recipe.main(["export", "--workdir", workdir]) == 0
    sentences = ["the cast is splendid", "a dull , dreadful story"]
    capsys.readouterr()
    assert recipe.main(["predict", "--workdir", workdir, *sentences]) == 0
    from_keras = capsys.readouterr().out.strip().splitlines()
    assert recipe.main(["predict", "--export", export, *sentences]) == 0
    from_export = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in from_keras] == [line.split("\t")[0] for line in from_export]
    for keras_line, export_line in zip(from_keras, from_export):
        assert abs(float(keras_line.split("\t")[1]) - float(export_line.split("\t")[1])) < 1e-4
        assert keras_line.split("\t")[2] in sentences

    # The export runs in a process that cannot import this project.
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    expected = np.asarray(model(tf.constant(sentences)))
    result = run_in_fresh_python(
        f"""
        import json
        import tensorflow as tf
        serve = tf.saved_model.load({export!r}).signatures["serving_default"]
        outputs = serve(texts=tf.constant({sentences!r}))
        print(json.dumps({{key: value.numpy().tolist() if value.dtype != tf.string
                          else [item.decode() for item in value.numpy().reshape(-1)]
                          for key, value in outputs.items()}}))
        """,
        cwd=str(tmp_path),
    )
    assert result["class_names"] == ["neg", "pos"]
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)
    assert result["label"] == [["neg", "pos"][index] for index in expected.argmax(axis=1)]

    # A finished run is not overwritten by accident.
    code, _, err = run_cli(["train", "--workdir", workdir, *class_files, *TINY_SETTINGS, "--seed", "3"], capsys)
    assert code == 2 and "already holds a run" in err


def _cross_validation(tmp_path, class_files, implementations):
    workdir = str(tmp_path / "cv")
    argv = [
        "benchmark",
        "--workdir",
        workdir,
        *class_files,
        *TINY_SETTINGS,
        "--folds",
        "2",
        "--cells",
        "gru",
        "--implementations",
        implementations,
        "--set",
        "bidirectional=false",
        "--set",
        "epochs=1",
        "--quiet",
    ]
    assert recipe.main(argv) == 0
    return workdir, argv


def test_cross_validation_reports_mean_and_std_over_folds(tmp_path, capsys, class_files):
    # Keras's GRU (`implementation=keras`), so that the default suite trains the recipe with it once.
    workdir, argv = _cross_validation(tmp_path, class_files, "keras")
    out = capsys.readouterr().out
    report = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert report["protocol"] == "stratified 2-fold cross-validation, seed 0"
    assert [fold["examples"]["test"] for fold in report["folds"]] == [24, 24]
    assert set(report["summary"]) == {"gru-keras", "baseline"} and "ours_against_keras" not in report
    for name in ("gru-keras", "baseline"):
        accuracy = report["summary"][name]["accuracy"]
        values = [fold["models"][name]["accuracy"] for fold in report["folds"]]
        assert accuracy["values"] == values
        assert accuracy["mean"] == pytest.approx(np.mean(values))
        assert accuracy["std"] == pytest.approx(np.std(values, ddof=1))
        assert name in out
    assert "CNN-rand" in out and "76.10" in out
    # Resuming reuses the finished folds instead of training again.
    assert recipe.main([*argv, "--resume"]) == 0
    assert "reusing" not in capsys.readouterr().out  # --quiet
    again = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert again["summary"] == report["summary"]


@pytest.mark.slow
def test_benchmark_trains_ours_and_keras_in_every_fold_side_by_side(tmp_path, capsys, class_files):
    workdir, _ = _cross_validation(tmp_path, class_files, "ours,keras")
    out = capsys.readouterr().out
    report = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert set(report["summary"]) == {"gru", "gru-keras", "baseline"}
    (row,) = report["ours_against_keras"]
    assert (row["model"], row["ours"], row["keras"], row["folds"]) == ("gru", "gru", "gru-keras", 2)
    assert row["ours_seconds_per_fold"] > 0 and row["keras_seconds_per_fold"] > 0
    differences = [
        fold["models"]["gru-keras"]["accuracy"] - fold["models"]["gru"]["accuracy"] for fold in report["folds"]
    ]
    assert row["accuracy_difference"][0] == pytest.approx(np.mean(differences))
    assert "ours against Keras's" in out


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, capsys, class_files):
    workdir = str(tmp_path / "new")
    argv = [
        "train",
        "--workdir",
        workdir,
        *class_files,
        *TINY_SETTINGS,
        "--folds",
        "2",
        "--max-folds",
        "1",
        "--set",
        "cell=gru",
        "--set",
        "bidirectional=false",
        "--set",
        "epochs=1",
        "--resume",
    ]
    assert recipe.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("gru", "baseline"):
        assert f"fold 1/2 {name}: nothing to resume: starting fresh" in lines
    report = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    assert report["protocol"] == "stratified 2-fold cross-validation, seed 0 (first 1 of 2 folds run)"
