"""Tiny trained runs that the export tests share (LiteRT and ONNX): each is trained once per session.

Each test module exports what it needs into the run's directory, under its own file names.
"""

import pytest

from recipes import char_lm, forecast, sentiment
from tests.recipes.test_char_lm import TINY as CHAR_LM_TINY
from tests.recipes.test_char_lm import _sets, _words_text
from tests.recipes.test_forecast import TINY as FORECAST_TINY
from tests.recipes.test_forecast import write_series
from tests.recipes.test_sentiment import NEGATIVE, POSITIVE, TINY_SETTINGS


@pytest.fixture(scope="session")
def trained_char_lm(tmp_path_factory):
    """A char LM (LSTM) trained on `_words_text()` in `corpus.txt` beside its work directory."""
    directory = tmp_path_factory.mktemp("char_lm")
    text = directory / "corpus.txt"
    text.write_text(_words_text(), encoding="utf-8")
    workdir = str(directory / "run")
    assert char_lm.main(["train", "--workdir", workdir, "--text", str(text), "--quiet", *_sets(CHAR_LM_TINY)]) == 0
    return workdir


@pytest.fixture(scope="session")
def trained_forecast(tmp_path_factory):
    """Forecasters `lstm` and `gru-autoregressive` trained on `write_series`' demand series."""
    directory = tmp_path_factory.mktemp("forecast")
    csv_path = write_series(directory / "demand.csv")
    workdir = str(directory / "run")
    arguments = ["--workdir", workdir, "--csv", csv_path, "--target", "demand", "--time-column", "day", "--seed", "3"]
    settings = [*FORECAST_TINY, "models=lstm,gru-autoregressive", "classical_models="]
    overrides = [item for setting in settings for item in ("--set", setting)]
    assert forecast.main(["train", *arguments, *overrides, "--verbose", "0"]) == 0
    return workdir


@pytest.fixture(scope="session")
def export_class_files(tmp_path_factory):
    """`--class-file` arguments for the tiny positive and negative sentences."""
    directory = tmp_path_factory.mktemp("sentiment_data")
    paths = {}
    for name, sentences in (("pos", POSITIVE), ("neg", NEGATIVE)):
        paths[name] = directory / f"{name}.txt"
        paths[name].write_text("\n".join(sentences * 4) + "\n", encoding="utf-8")
    return ["--class-file", f"pos={paths['pos']}", "--class-file", f"neg={paths['neg']}"]


@pytest.fixture(scope="session")
def trained_sentiment(tmp_path_factory, export_class_files):
    """A BiLSTM sentiment classifier trained on `export_class_files` (no baseline)."""
    workdir = str(tmp_path_factory.mktemp("sentiment") / "run")
    argv = ["train", "--workdir", workdir, *export_class_files, *TINY_SETTINGS, "--no-baseline", "--quiet"]
    assert sentiment.main(argv) == 0
    return workdir
