"""Hostile inputs to the shared zoo pieces: each test reproduces a defect found by feeding nonsense."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import typing

import keras
import numpy as np
import pytest

from tests.support import REPO
from zoo import checkpoints, files
from zoo import config as config_lib
from zoo.char_lm import CharLMConfig
from zoo.char_lm import baselines as char_baselines
from zoo.char_lm import data as char_data
from zoo.char_lm import evaluate as char_evaluate
from zoo.errors import UserError, UserIsADirectoryError, UserTypeError
from zoo.forecast import baselines as forecast_baselines
from zoo.forecast import data as forecast_data
from zoo.forecast.config import ForecastConfig
from zoo.memory.config import MemoryConfig, StudyConfig
from zoo.memory.metrics_file import read_study_metrics
from zoo.sentiment import SentimentConfig
from zoo.sentiment.data import TextDataset
from zoo.sentiment.model import make_vectorizer

CONFIG_CLASSES = (CharLMConfig, ForecastConfig, SentimentConfig, StudyConfig, MemoryConfig)


def _float_fields(config_class):
    """Names of the fields typed `float` or `float | None`."""
    return [
        name
        for name, annotation in config_lib.field_types(config_class).items()
        if annotation is float or float in typing.get_args(annotation)
    ]


# ----------------------------------------------------------------- 8: float config fields and seeds


def test_every_config_has_float_fields_to_check():
    # The parametrisation below must not be empty by accident.
    assert {config.__name__: len(_float_fields(config)) for config in CONFIG_CLASSES} == {
        "CharLMConfig": 9,
        "ForecastConfig": 5,
        "SentimentConfig": 14,
        "StudyConfig": 5,
        "MemoryConfig": 3,
    }
    assert {"max_minutes", "clip_norm", "divergence_factor"} <= set(_float_fields(CharLMConfig))


@pytest.mark.parametrize(
    "config_class, name",
    [(config_class, name) for config_class in CONFIG_CLASSES for name in _float_fields(config_class)],
)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_float_fields_refuse_nan_and_infinity_naming_the_field(config_class, name, text):
    # clip_norm=nan and learning_rate=inf used to pass validation (NaN fails every comparison).
    with pytest.raises(UserError, match=f"`{name}`: {text.lstrip('-')}|`{name}`: -inf"):
        config_lib.apply_overrides(config_class(), [f"{name}={text}"])


@pytest.mark.parametrize(
    "config_class, name, value",
    [
        (CharLMConfig, "clip_norm", -1.0),
        (CharLMConfig, "validation_fraction", 1.0),
        (ForecastConfig, "test_fraction", 0.5),
        (SentimentConfig, "clip_norm", -0.5),
        (SentimentConfig, "baseline_l2", -1e-3),
        (SentimentConfig, "word_dropout", 1.0),
        (StudyConfig, "solve_fraction", 1.5),
        (MemoryConfig, "clipnorm", 0.0),
    ],
)
def test_float_fields_refuse_out_of_range_values(config_class, name, value):
    with pytest.raises(UserError, match=f"`{name}`: {value}; expected "):
        dataclasses.replace(config_class(), **{name: value}).validate()


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize("seed", [-1, 2**31, 99999999999])
def test_seed_out_of_range_names_the_field(config_class, seed):
    # `--set seed=-1` used to reach NumPy: "Seed must be between 0 and 2**32 - 1", no field named.
    with pytest.raises(UserError, match=rf"`seed`: {seed}; expected an integer from 0 to 2,147,483,647"):
        config_lib.apply_overrides(config_class(), [f"seed={seed}"])
    assert config_lib.apply_overrides(config_class(), [f"seed={2**31 - 1}"]).seed == 2**31 - 1


def test_require_float_bounds_and_types():
    assert config_lib.require_float("rate", 1) == 1.0
    assert config_lib.require_float("rate", 0.0, minimum=0.0, below=1.0) == 0.0
    with pytest.raises(UserError, match=r"`rate`: 1.0; expected a number in \[0, 1\)"):
        config_lib.require_float("rate", 1.0, minimum=0.0, below=1.0)
    with pytest.raises(UserError, match=r"`rate`: 0.0; expected a finite number > 0"):
        config_lib.require_float("rate", 0.0, above=0.0)
    with pytest.raises(UserError, match=r"`budget`: nan; expected a finite number > 0 or none"):
        config_lib.require_float("budget", float("nan"), above=0.0, optional=True)
    assert config_lib.require_float("budget", None, above=0.0, optional=True) is None
    for value in (True, "0.1", None):
        with pytest.raises(UserTypeError, match="`rate`"):
            config_lib.require_float("rate", value)
    with pytest.raises(UserError, match=r"`length`: 11; expected an integer from 0 to 10"):
        config_lib.require_int("length", 11, minimum=0, maximum=10)


def test_markov_orders_are_bounded():
    # markov_orders=99999999999 used to end in a MemoryError building the per-order tables.
    with pytest.raises(UserError, match=r"`markov_orders`: 99999999999; expected orders from 0 to 20"):
        config_lib.apply_overrides(CharLMConfig(), ["markov_orders=1,99999999999"])
    with pytest.raises(UserError, match="empty `markov_orders`"):
        dataclasses.replace(CharLMConfig(), markov_orders=()).validate()


def test_memory_lengths_are_bounded():
    # --lengths 99999999999 used to end in NumPy's "Unable to allocate 46.6 TiB".
    with pytest.raises(UserError, match=r"`adding_lengths`: 99999999999; expected lengths from 1 to 10,000"):
        config_lib.apply_overrides(StudyConfig(), ["adding_lengths=25,99999999999", "probe_length=25"])
    with pytest.raises(UserError, match=r"`copy_delays`: 20000"):
        config_lib.apply_overrides(StudyConfig(), ["copy_delays=20000"])
    with pytest.raises(UserError, match=r"`length`: 10001"):
        MemoryConfig(length=10001).validate()


# ----------------------------------------------------------------- 6: sampling arguments


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((99999999999, 1.0, 0, 0), r"`length`: 99999999999; expected an integer from 0 to 1,000,000"),
        ((2**31, 1.0, 0, 0), r"`length`: 2147483648"),
        ((5, float("inf"), 0, 0), r"`temperature`: inf; expected a finite number >= 0"),
        ((5, -0.5, 0, 0), r"`temperature`: -0.5"),
        ((5, 1.0, -1, 0), r"`top_k`: -1"),
        ((5, 1.0, 0, -1), r"`seed`: -1"),
        ((5, 1.0, 0, 10**22), r"`seed`: 10000000000000000000000"),
    ],
)
def test_sample_arguments_are_checked_before_tensorflow_sees_them(arguments, message):
    with pytest.raises(UserError, match=message):
        char_evaluate.check_sample_arguments(*arguments)
    flag = message.split("`")[1].replace("_", "-")
    with pytest.raises(UserError, match=f"`--{flag}`"):
        char_evaluate.check_sample_arguments(*arguments, flag_names=True)
    assert char_evaluate.check_sample_arguments(char_evaluate.MAX_SAMPLE_LENGTH, 0.0, 10**12, 2**31 - 1) == (
        1_000_000,
        0.0,
        10**12,
        2**31 - 1,
    )


# ----------------------------------------------------------------- 7: tracebacks


def test_output_path_under_a_file_is_named(tmp_path):
    # export --path afile/sub used to end in a FileExistsError traceback from os.makedirs.
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "sub", afile / "sub" / "deeper"):
        with pytest.raises(UserError, match=rf"`--path='{path}'`, but '{afile}' is a file, not a directory"):
            files.check_output_path(str(path), "--path")
        with pytest.raises(UserError, match=rf"but '{afile}' is a file, not a directory; expected a .tflite"):
            files.check_output_path(str(path / "model.tflite"), "--path", "a .tflite path", is_file=True)
    with pytest.raises(UserError, match=r"which is a file"):
        files.check_output_path(str(afile), "--path")
    with pytest.raises(UserError, match=r"which is a directory; expected a file"):
        files.check_output_path(str(tmp_path), "--path", "a file", is_file=True)
    files.check_output_path(str(tmp_path / "new" / "sub"), "--path")  # creatable: no error
    files.check_output_path(str(afile), "--path", is_file=True)  # a file to replace: no error


def test_all_empty_texts_are_refused_naming_the_source():
    # Every text "" used to reach TensorFlow: FailedPreconditionError "Table not initialized".
    dataset = TextDataset(("", "  ", "\t"), np.array([0, 1, 0]), ("neg", "pos"), source="reviews.csv")
    with pytest.raises(UserError, match=r"Every one of the 3 texts from reviews.csv is empty or white space"):
        dataset.require_text()
    TextDataset(("", "fine"), np.array([0, 1]), ("neg", "pos")).require_text()


def test_texts_without_words_after_standardisation_are_refused():
    config = dataclasses.replace(SentimentConfig(), standardize="lower_and_strip_punctuation")
    with pytest.raises(UserError, match=r"2 training texts hold no word after standardisation"):
        make_vectorizer(config, ["!!", "..."])
    with pytest.raises(UserError, match="no word"):
        make_vectorizer(config, ["!!", "..."], name="ngrams", output_mode="multi_hot", ngrams=2)
    assert make_vectorizer(config, ["!!", "a word"]).vocabulary_size() == 4


def _study_metrics():
    return {
        "config": dataclasses.asdict(StudyConfig()),
        "ladder": [],
        "truncation": [],
        "solved": {},
        "environment": {"cpu_count": 2, "load_average_at_start": [0], "load_average_at_end": [0], "seconds": 1},
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ({}, r"it lacks \['config', 'ladder', 'truncation', 'solved', 'environment'\]"),
        ([1], "it holds a JSON list"),
        ({"models": {}, "config": {"units": 3}}, r"it lacks \['ladder'"),
        ({**_study_metrics(), "config": {"seed": 0}}, r"its `config` lacks the study settings \['adding_lengths'"),
        ({**_study_metrics(), "environment": {}}, r"its `environment` lacks \['cpu_count'"),
    ],
)
def test_memory_metrics_that_are_not_a_study_are_named(tmp_path, content, message):
    # `memory report` on metrics.json = {} used to end in KeyError: 'config'.
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=rf"The metrics file '{path}' is not a memory study's: {message}"):
        read_study_metrics(str(path))


def test_memory_metrics_of_a_study_are_read(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_study_metrics()))
    assert read_study_metrics(str(path))["config"]["seed"] == 0


# ----------------------------------------------------------------- 8: nonsense accepted silently


def test_markov_baselines_refuse_an_empty_validation_split():
    # A text too short for validation used to score 0.0000 nats over 0 characters.
    config = CharLMConfig(batch_size=8, seq_len=20, validation_fraction=0.25, markov_orders=(1,))
    needed = 8 * 21  # one batch of 8 streams of seq_len + 1 characters
    text = "abcdefghij" * 100
    with pytest.raises(UserError, match=r"validation split is empty.*at least 670 characters") as error:
        char_baselines.baseline_table(char_data.prepare_corpus(text[:669], 0.25), config)
    assert f"({needed})" in str(error.value)
    rows = char_baselines.baseline_table(char_data.prepare_corpus(text[:670], 0.25), config)
    assert rows[0]["nats_per_char"] > 0


def test_training_split_too_short_says_how_long_the_text_must_be():
    with pytest.raises(UserError, match=r"training text has 20 characters.*at least 35 characters"):
        char_data.require_one_batch(20, 4, 7, what="training text", validation_fraction=0.1)
    with pytest.raises(UserError, match=r"validation text has 7 characters.*Use a longer text"):
        char_data.require_one_batch(7, 2, 3, what="validation text")
    # 35 * 0.9 = 31.5 rounds to 32 training characters, 34 * 0.9 = 30.6 to 31.
    assert [char_data.split_sizes(length, 0.1)[0] for length in (34, 35)] == [31, 32]


def _write_series(path, values, times=None):
    times = range(len(values)) if times is None else times
    path.write_text("t,y\n" + "".join(f"{time},{value}\n" for time, value in zip(times, values)))
    return str(path)


@pytest.mark.parametrize("bad_time, line", [("nan", 5), ("inf", 40), ("-inf", 2)])
def test_non_finite_times_are_refused_naming_file_and_line(tmp_path, bad_time, line):
    # nan/inf times used to pass: NaN fails every comparison, so "strictly increasing" held.
    times = [str(step) for step in range(39)]
    times[line - 2] = bad_time
    path = _write_series(tmp_path / "series.csv", [float(step % 7) for step in range(39)], times)
    with pytest.raises(UserError, match=rf"Time column 't' has '{bad_time}' on line {line} of '{path}'"):
        forecast_data.load_csv(path, "y", "t")


def test_values_that_overflow_the_statistics_are_refused(tmp_path):
    # One 1e308 made the standard deviation inf: normalised inputs 0, the neural and
    # linear models NaN, and last_value "best" with MASE 0.000.
    values = [1e308] + [float(step % 12) for step in range(1, 160)]
    config = ForecastConfig(
        csv_path=_write_series(tmp_path / "huge.csv", values), target="y", window=12, horizon=4, classical_models=()
    )
    with pytest.raises(UserError, match=r"\['y'\] overflow float64 .* largest magnitude is 1e\+308"):
        forecast_data.prepare(config)
    late = [float(step % 12) for step in range(159)] + [1e300]  # only in the test part
    config = dataclasses.replace(config, csv_path=_write_series(tmp_path / "late.csv", late))
    with pytest.raises(UserError, match=r"Column 'y' has the value 1e\+300 at step 159, too many"):
        forecast_data.prepare(config)


def test_mase_scale_that_overflows_is_refused():
    with pytest.raises(UserError, match="MASE scale .* overflows float64"):
        forecast_baselines.seasonal_naive_scale(np.array([1e308, -1e308, 1.0, 2.0]), 1)


def test_csv_value_errors_name_the_file(tmp_path):
    path = _write_series(tmp_path / "words.csv", ["1", "2", "lots"])
    with pytest.raises(UserError, match=rf"non-numeric value 'lots' on line 4 of '{path}'"):
        forecast_data.load_csv(path, "y")


def _tiny_keras_file(path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(path)
    return path


def test_damaged_keras_files_are_named_unreadable(tmp_path):
    # A truncated .keras checkpoint used to be reported by Keras as "File not found".
    intact = _tiny_keras_file(str(tmp_path / "model.keras"))
    assert checkpoints.load_model(intact).output_shape == (None, 2)
    raw = open(intact, "rb").read()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=rf"The model file '{truncated}' is unreadable or corrupt \(BadZipFile"):
        checkpoints.load_model(str(truncated))
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # inside the stored weights
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    assert checkpoints.archive_problem(str(tmp_path / "flipped.keras")) is not None
    with pytest.raises(FileNotFoundError, match="No model file"):
        checkpoints.load_model(str(tmp_path / "absent.keras"))


@pytest.mark.parametrize("content", ["{bad", "\xff"])
def test_json_errors_name_the_file(tmp_path, content):
    path = tmp_path / "record.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(UserError, match=rf"The metrics file '{path}' (cannot be read|is not valid utf-8)"):
        files.read_json(str(path), kind="metrics file")
    with pytest.raises(UserIsADirectoryError, match=rf"'{tmp_path}' is a directory"):
        files.read_json(str(tmp_path))


# ----------------------------------------------------------------- 9: modes and stale temporaries


@pytest.fixture
def umask():
    """Set the process umask for one test: `umask(0o022)`; the previous one is restored."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mask, mode):
    # JSON outputs used to be 0600 whatever the umask (tempfile.mkstemp's mode).
    umask(mask)
    files.atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    with open(tmp_path / "plain.json", "w") as handle:
        handle.write("{}")
    assert oct(os.stat(tmp_path / "metrics.json").st_mode & 0o777) == oct(mode)
    assert os.stat(tmp_path / "plain.json").st_mode & 0o777 == mode


def _python(code, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, text=True, stdout=subprocess.PIPE, **kwargs
    )


def test_stale_temporaries_of_killed_processes_are_removed_but_not_live_ones(tmp_path):
    # A killed export's `.tmp-export-*` folder used to stay for ever.
    target = str(tmp_path / "export")
    live = _python(
        f"""
        import os, sys
        from zoo.files import atomic_path
        with atomic_path({target!r}) as temporary:
            os.makedirs(temporary)
            open(os.path.join(temporary, "v"), "w").write("live")
            print("writing", flush=True)
            sys.stdin.readline()
        """,
        stdin=subprocess.PIPE,
    )
    killed = _python(
        f"""
        import os, signal
        from zoo.files import atomic_path
        with atomic_path({target!r}) as temporary:
            os.makedirs(temporary)
            open(os.path.join(temporary, "half"), "w").write("half an export")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    try:
        assert live.stdout.readline().strip() == "writing"
        assert killed.wait(timeout=60) == -signal.SIGKILL
        leftovers = sorted(name for name in os.listdir(tmp_path) if name.startswith(".tmp-export-"))
        assert len(leftovers) == 2 and all(f"-{killed.pid}-" in name or f"-{live.pid}-" in name for name in leftovers)
        with files.atomic_path(target) as temporary:
            os.makedirs(temporary)
            (open(os.path.join(temporary, "v"), "w")).write("this one")
        left = [name for name in os.listdir(tmp_path) if name.startswith(".tmp-export-")]
        assert len(left) == 1 and f"-{live.pid}-" in left[0]  # the killed one is gone, the live one kept
        assert open(os.path.join(target, "v")).read() == "this one"
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert open(os.path.join(target, "v")).read() == "live"


def test_only_temporaries_named_for_the_destination_by_a_dead_process_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    names = {
        f".tmp-m.json-{dead}-00aa": False,  # a dead writer of m.json: removed
        f".tmp-m.json-5-{dead}-00bb": True,  # a writer of "m.json-5", not of m.json
        f".tmp-other.json-{dead}-00cc": True,  # another destination
        f".tmp-m.json-{os.getpid()}-00dd": True,  # this process
        f".tmp-m.json-{10**30}-00ee": True,  # no such PID can exist; os.kill would overflow
    }
    for name in names:
        (tmp_path / name).write_text("x")
    files.atomic_write_json(tmp_path / "m.json", {})
    assert {name: (tmp_path / name).exists() for name in names} == names
