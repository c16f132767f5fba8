"""The recipes fed nonsense: each test reproduces a defect a hostile-input tour found.

Every bad input must end in one `error: ...` line (exit 2) that names the flag,
field or file; nothing may crash, print a traceback, or be accepted silently.
The tiny trained runs are shared by the whole module.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recipes import _cli, char_lm, forecast, memory, sentiment
from tests.support import REPO

# The tiny char_lm run of the tour, with a validation part that fits its batches.
CHAR_TINY = [
    "units=16",
    "embedding_dim=8",
    "seq_len=20",
    "batch_size=8",
    "epochs=1",
    "max_minutes=1",
    "markov_orders=1,2",
]
FORECAST_TINY = ["window=12", "horizon=4", "units=4", "epochs=1", "batch_size=64", "max_minutes=2"]
FORECAST_TINY += ["models=lstm", "classical_models="]
SENTIMENT_TINY = ["units=4", "embedding_dim=6", "epochs=1", "batch_size=16", "vocabulary_size=60"]
SENTIMENT_TINY += ["baseline_epochs=1", "test_fraction=0.25"]
POSITIVE = ["a splendid film", "splendid acting and a fine story", "a moving story", "the cast is splendid"]
NEGATIVE = ["a dreadful film", "dreadful acting and a dull story", "a dull story", "the cast is dreadful"]


def _sets(overrides):
    return [argument for override in overrides for argument in ("--set", override)]


def _run(main, argv, capsys):
    """Run a recipe as its command line does: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _refused(main, argv, capsys, *fragments):
    """Assert `argv` ends in one `error:` line holding every fragment; returns that line."""
    code, _, err = _run(main, argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def _words_text(length):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "to", "dog"]
    rng = np.random.default_rng(0)
    text = ""
    while len(text) < length:
        text += " ".join(rng.choice(words, size=6)) + ".\n"
    return text[:length]


def _series_csv(path, values=None, times=None):
    steps = np.arange(160)
    if values is None:
        values = 50 + 0.1 * steps + 3 * np.sin(2 * np.pi * steps / 12) + np.random.default_rng(0).normal(0, 0.2, 160)
    times = [str(step) for step in steps] if times is None else times
    path.write_text("day,demand\n" + "".join(f"{time},{float(value)!r}\n" for time, value in zip(times, values)))
    return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    (directory / "corpus.txt").write_text(_words_text(1200), encoding="utf-8")
    (directory / "pos.txt").write_text("\n".join(POSITIVE * 4) + "\n", encoding="utf-8")
    (directory / "neg.txt").write_text("\n".join(NEGATIVE * 4) + "\n", encoding="utf-8")
    _series_csv(directory / "demand.csv")
    (directory / "afile").write_text("a regular file\n")
    return directory


@pytest.fixture(scope="module")
def char_lm_run(data_dir):
    workdir = str(data_dir / "char_lm")
    text = str(data_dir / "corpus.txt")
    overrides = [*CHAR_TINY, "validation_fraction=0.25"]
    argv = ["train", "--workdir", workdir, "--text", text, "--quiet", "--no-tensorboard", *_sets(overrides)]
    assert char_lm.main(argv) == 0
    return workdir


@pytest.fixture(scope="module")
def forecast_run(data_dir):
    workdir = str(data_dir / "forecast")
    csv_path = str(data_dir / "demand.csv")
    argv = ["train", "--workdir", workdir, "--csv", csv_path, "--target", "demand", "--verbose", "0"]
    assert forecast.main([*argv, *_sets(FORECAST_TINY)]) == 0
    return workdir


@pytest.fixture(scope="module")
def sentiment_run(data_dir):
    workdir = str(data_dir / "sentiment")
    classes = ["--class-file", f"pos={data_dir / 'pos.txt'}", "--class-file", f"neg={data_dir / 'neg.txt'}"]
    assert sentiment.main(["train", "--workdir", workdir, *classes, "--quiet", *_sets(SENTIMENT_TINY)]) == 0
    return workdir


def _copy(workdir, tmp_path):
    copy = str(tmp_path / os.path.basename(workdir))
    shutil.copytree(workdir, copy)
    return copy


# ----------------------------------------------------------------- 6: numeric flags out of range


def test_sample_length_past_int32_is_one_error_line_not_a_segfault(char_lm_run):
    # Was: exit 139 (segmentation fault) and no message at all.
    result = subprocess.run(
        [sys.executable, "-m", "recipes.char_lm", "sample", "--workdir", char_lm_run, "--length", "99999999999"],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Received an invalid value for `--length`: 99999999999; expected an integer from 0 to 1,000,000."
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--length", "2147483648"], "`--length`: 2147483648"),  # was a TensorFlow "Dimension -2147483648" error
        (["--length", "-1"], "`--length`: -1"),
        (["--temperature", "inf"], "`--temperature`: inf; expected a finite number >= 0"),  # was accepted
        (["--temperature", "nan"], "`--temperature`: nan"),
        (["--top-k", "-2"], "`--top-k`: -2"),
        (["--seed", "-1"], "`--seed`: -1; expected an integer from 0 to 2,147,483,647"),  # was accepted
        (["--seed", "9999999999999999999999"], "`--seed`: 9999999999999999999999"),  # was a TypeError traceback
    ],
)
def test_sample_flags_out_of_range_name_the_flag(char_lm_run, capsys, flags, fragment):
    _refused(char_lm.main, ["sample", "--workdir", char_lm_run, *flags], capsys, fragment)


def test_sample_top_k_beyond_the_vocabulary_means_all_characters(char_lm_run, capsys):
    outputs = []
    for top_k in ("0", "99999999999"):
        assert char_lm.main(["sample", "--workdir", char_lm_run, "--length", "40", "--top-k", top_k]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0]) == len("\n") + 40 + 1


def test_sentiment_folds_zero_is_refused_not_ignored(tmp_path, capsys, data_dir):
    # Was: --folds 0 silently trained on one train/test split.
    classes = ["--class-file", f"pos={data_dir / 'pos.txt'}", "--class-file", f"neg={data_dir / 'neg.txt'}"]
    workdir = tmp_path / "run"
    for flags, fragment in (
        (["--folds", "0"], "`--folds`: 0"),
        (["--folds", "3", "--max-folds", "0"], "`--max-folds`"),
    ):
        _refused(sentiment.main, ["train", "--workdir", str(workdir), *classes, *flags], capsys, fragment)
    assert not workdir.exists()


def test_memory_lengths_past_the_limit_are_refused(tmp_path, capsys):
    # Was: NumPy "Unable to allocate 46.6 TiB" traceback.
    workdir = tmp_path / "study"
    argv = ["run", "--workdir", str(workdir), "--quick", "--lengths", "99999999999"]
    _refused(memory.main, argv, capsys, "`adding_lengths`: 99999999999; expected lengths from 1 to 10,000")
    assert not workdir.exists()


# ----------------------------------------------------------------- 7: tracebacks


def test_export_under_a_regular_file_names_it(char_lm_run, forecast_run, sentiment_run, data_dir, capsys):
    # Was: FileExistsError traceback from os.makedirs in every recipe with export.
    afile = str(data_dir / "afile")
    target = os.path.join(afile, "sub")
    for main, workdir, flag in (
        (char_lm.main, char_lm_run, "--path"),
        (forecast.main, forecast_run, "--output"),
        (sentiment.main, sentiment_run, "--output"),
    ):
        argv = ["export", "--workdir", workdir, flag]
        problem = f"but '{afile}' is a file, not a directory; expected"
        _refused(main, [*argv, target], capsys, f"`{flag}='{target}'`, {problem} a directory for the SavedModel")
        litert = [*argv, target + ".tflite", "--format", "litert"]
        _refused(main, litert, capsys, f"`{flag}='{target}.tflite'`, {problem} a path for the .tflite file")


def test_litert_batch_size_past_the_limit_is_refused(char_lm_run, capsys):
    # Was: NumPy "Unable to allocate 2.91 TiB" padding the check rows to one batch.
    argv = ["export", "--workdir", char_lm_run, "--format", "litert", "--batch-size", "99999999999"]
    _refused(char_lm.main, argv, capsys, "`--batch-size`: 99999999999; expected an integer from 1 to 4,096")


def test_sentiment_texts_all_empty_are_refused_naming_the_file(tmp_path, capsys):
    # Was: tensorflow FailedPreconditionError "Table not initialized" after training began.
    table = tmp_path / "empty-texts.csv"
    table.write_text("text,label\n" + '"",pos\n"",neg\n' * 12, encoding="utf-8")
    workdir = tmp_path / "run"
    argv = ["train", "--workdir", str(workdir), "--data", str(table), "--quiet", *_sets(SENTIMENT_TINY)]
    _refused(sentiment.main, argv, capsys, f"Every one of the 24 texts from {table} is empty or white space")
    assert not workdir.exists() or os.listdir(workdir) == []  # refused before anything was written


@pytest.mark.parametrize("content", ["{}", "[]", "{not json"])
def test_memory_report_on_metrics_that_are_not_a_study_names_the_file(tmp_path, capsys, content):
    # Was: KeyError 'config' (or a JSONDecodeError) traceback.
    (tmp_path / "metrics.json").write_text(content)
    path = str(tmp_path / "metrics.json")
    err = _refused(memory.main, ["report", "--workdir", str(tmp_path)], capsys, f"The metrics file '{path}'")
    assert "the metrics.json that `python -m recipes.memory run` writes" in err


def test_memory_report_on_another_recipes_workdir_names_the_file(char_lm_run, capsys):
    path = os.path.join(char_lm_run, "metrics.json")
    _refused(memory.main, ["report", "--workdir", char_lm_run], capsys, f"'{path}' is not a memory study's")


# ----------------------------------------------------------------- 8: nonsense accepted silently


def test_char_lm_baselines_refuse_an_empty_validation_split(tmp_path, capsys):
    # Was: "0.0000" nats/char over 0 validation characters. One batch of 8 streams of 21
    # characters needs a validation part of 168: 1676 - round(0.9 * 1676) = 168, one less gives 167.
    short, enough = tmp_path / "short.txt", tmp_path / "enough.txt"
    short.write_text(_words_text(1675), encoding="utf-8")
    enough.write_text(_words_text(1676), encoding="utf-8")
    argv = ["baselines", *_sets(CHAR_TINY), "--text"]
    _refused(
        char_lm.main,
        [*argv, str(short)],
        capsys,
        "The validation text has 167 characters, shorter than one batch of 8 streams x 21 characters (168)",
        "so the validation split is empty",
        "use a text of at least 1676 characters",
    )
    assert char_lm.main([*argv, str(enough)]) == 0
    printed = capsys.readouterr().out
    assert "validation characters scored: 160" in printed  # 8 streams x 20 targets
    assert float(printed.split("markov order 1 (KN)")[1].split()[0]) > 0.5


@pytest.mark.parametrize(
    "values, times, fragments",
    [
        # Was: the standard deviation overflowed to inf and "Best model overall: last_value (MASE 0.000)".
        ([1e308] + [float(step % 12) for step in range(1, 160)], None, ["['demand'] overflow float64"]),
        (None, [str(step) if step != 5 else "nan" for step in range(160)], ["'nan' on line 7 of '{csv}'"]),
        (None, [str(step) if step != 159 else "inf" for step in range(160)], ["'inf' on line 161 of '{csv}'"]),
    ],
)
def test_forecast_refuses_overflowing_values_and_non_finite_times(tmp_path, capsys, values, times, fragments):
    csv_path = _series_csv(tmp_path / "series.csv", values, times)
    argv = ["train", "--workdir", str(tmp_path / "run"), "--csv", csv_path, "--target", "demand"]
    argv += ["--time-column", "day", "--verbose", "0", *_sets(FORECAST_TINY)]
    _refused(forecast.main, argv, capsys, *(fragment.format(csv=csv_path) for fragment in fragments))


@pytest.mark.parametrize(
    "main, verb, override",
    [
        (char_lm.main, "train", "clip_norm=nan"),
        (char_lm.main, "train", "learning_rate=inf"),
        (forecast.main, "train", "learning_rate=inf"),
        (sentiment.main, "train", "clip_norm=nan"),
        (sentiment.main, "train", "baseline_l2=inf"),
        (memory.main, "run", "solve_fraction=nan"),
        (char_lm.main, "train", "seed=-1"),
        (forecast.main, "train", "seed=-1"),
        (sentiment.main, "train", "seed=-1"),
        (memory.main, "run", "seed=-1"),
    ],
)
def test_config_values_that_are_nonsense_name_the_field(tmp_path, capsys, main, verb, override):
    # Was: clip_norm=nan and learning_rate=inf passed validation; seed=-1 failed in NumPy naming nothing.
    name, value = override.split("=")
    workdir = tmp_path / "run"
    _refused(main, [verb, "--workdir", str(workdir), "--set", override], capsys, f"`{name}`: {value}")
    assert not workdir.exists()


@pytest.mark.parametrize("sentence", ["", "   "])
def test_sentiment_predict_refuses_an_empty_sentence(sentiment_run, capsys, sentence):
    # Was: a label and a probability for a text with nothing in it (the classifier's bias).
    argv = ["predict", "--workdir", sentiment_run, "a fine film", sentence]
    _refused(sentiment.main, argv, capsys, f"empty sentence (sentence 2: {sentence!r})")


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def test_truncated_checkpoints_are_named_corrupt(char_lm_run, forecast_run, sentiment_run, tmp_path, capsys):
    # Was: Keras's "File not found" for a file that is there.
    cases = [
        (char_lm.main, char_lm_run, "checkpoints/best.keras", ["sample", "--length", "3"]),
        (forecast.main, forecast_run, "models/lstm/checkpoints/best.keras", ["evaluate"]),
        (sentiment.main, sentiment_run, "model.keras", ["predict", "a fine film"]),
    ]
    for main, workdir, checkpoint, verb in cases:
        copy = _copy(workdir, tmp_path)
        _truncate(os.path.join(copy, checkpoint))
        argv = [verb[0], "--workdir", copy, *verb[1:]]
        _refused(main, argv, capsys, f"The model file '{os.path.join(copy, checkpoint)}' is unreadable or corrupt")


def test_damaged_json_files_are_named(char_lm_run, sentiment_run, tmp_path, capsys):
    # Was: JSONDecodeError / KeyError tracebacks that named no file.
    copy = _copy(sentiment_run, tmp_path)
    metrics = os.path.join(copy, "metrics.json")
    for content, fragment in (("{bad", "cannot be read (JSONDecodeError"), ("{}", "has no list of class names")):
        with open(metrics, "w") as handle:
            handle.write(content)
        _refused(sentiment.main, ["predict", "--workdir", copy, "fine"], capsys, f"'{metrics}'", fragment)
    copy = _copy(char_lm_run, tmp_path)
    with open(os.path.join(copy, "data.json"), "w") as handle:
        handle.write("{bad")
    path = os.path.join(copy, "data.json")
    _refused(char_lm.main, ["evaluate", "--workdir", copy], capsys, f"The corpus record '{path}' cannot be read")


def test_directory_given_for_a_csv_file_is_named(tmp_path, capsys):
    argv = ["train", "--workdir", str(tmp_path / "run"), "--csv", str(tmp_path), "--target", "demand"]
    _refused(forecast.main, argv, capsys, f"The CSV file '{tmp_path}' is a directory")
    argv = ["train", "--workdir", str(tmp_path / "run"), "--data", str(tmp_path), "--format", "csv"]
    _refused(sentiment.main, argv, capsys, f"'{tmp_path}' is a directory")


# ----------------------------------------------------------------- 9: file modes, stale temporaries


def test_json_outputs_get_the_umask_mode(data_dir, tmp_path):
    # Was: 0600 whatever the umask (the atomic write's mkstemp mode).
    previous = os.umask(0o022)
    try:
        argv = ["baselines", "--workdir", str(tmp_path), "--text", str(data_dir / "corpus.txt")]
        assert char_lm.main([*argv, *_sets([*CHAR_TINY, "validation_fraction=0.25"])]) == 0
    finally:
        os.umask(previous)
    assert oct(os.stat(tmp_path / "baselines.json").st_mode & 0o777) == oct(0o644)
    assert json.loads((tmp_path / "baselines.json").read_text())["markov"][0]["order"] == 1


def test_export_removes_the_temporary_folder_a_killed_export_left(char_lm_run, tmp_path):
    # Was: `.tmp-export-*` folders of killed exports stayed for ever.
    workdir = _copy(char_lm_run, tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f".tmp-export-{int(finished.stdout)}-0badc0de"
    live = f".tmp-export-{os.getppid()}-00c0ffee"  # a concurrent export of a live process
    for name in (dead, live):
        os.makedirs(os.path.join(workdir, name, "export", "variables"))
    assert char_lm.main(["export", "--workdir", workdir]) == 0
    assert not os.path.exists(os.path.join(workdir, dead))
    assert os.path.isdir(os.path.join(workdir, live, "export"))
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
