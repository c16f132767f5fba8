"""A run's work directory is never mixed, silently replaced or resumed with other inputs.

Regression tests for the defects of a hostile-input tour: a changed corpus
or class file on `--resume`, two runs on one directory, `--resume` on a
finished run, a diverging loss, a cut backup, a work directory under a
file, and a failed start that left a half-made run behind.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from recipes import _cli, char_lm
from recipes import forecast as forecast_recipe
from recipes import memory as memory_recipe
from recipes import sentiment as sentiment_recipe
from tests.support import REPO

CHAR_LM = [
    "--set",
    "units=16",
    "--set",
    "embedding_dim=8",
    "--set",
    "seq_len=20",
    "--set",
    "batch_size=8",
    "--set",
    "epochs=1",
    "--set",
    "markov_orders=1,2",
]


def _cli_run(main, argv, capsys):
    """(exit code, stdout, stderr) of the recipe run as the command line runs it."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _snapshot(directory):
    """Every file below `directory` (but the lock) with its bytes."""
    files = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            if name != ".lock":
                path = os.path.join(root, name)
                files[os.path.relpath(path, directory)] = open(path, "rb").read()
    return files


def _text(seed, length=3000):
    words = np.array(["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis"])
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(words, size=length // 3))[:length] + "\n"


def _finished_char_lm(tmp_path):
    """A finished tiny char LM run in `tmp_path/run`: (workdir, text path, its arguments)."""
    text = tmp_path / "corpus.txt"
    text.write_text(_text(0), encoding="utf-8")
    workdir = str(tmp_path / "run")
    arguments = ["train", "--workdir", workdir, "--text", str(text), "--quiet", "--no-tensorboard", *CHAR_LM]
    assert char_lm.main(arguments) == 0
    return workdir, text, arguments


def test_resume_with_a_changed_corpus_is_refused_and_the_run_stays_usable(tmp_path, capsys):
    workdir, text, arguments = _finished_char_lm(tmp_path)
    before = _snapshot(workdir)
    original = text.read_text(encoding="utf-8")
    text.write_text(original.replace("question", "ANSWERS!"), encoding="utf-8")  # same size, new characters
    code, _out, err = _cli_run(char_lm.main, [*arguments, "--resume"], capsys)
    assert code == 2
    assert "the corpus (file" in err and "changed (same size" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(workdir) == before  # vocabulary.json, checkpoints and metrics untouched
    code, out, _err = _cli_run(char_lm.main, ["sample", "--workdir", workdir, "--length", "20", "--seed", "1"], capsys)
    assert code == 0 and out.strip()


def test_resume_on_a_finished_run_trains_nothing_and_rewrites_nothing(tmp_path, capsys):
    workdir, _text_path, arguments = _finished_char_lm(tmp_path)
    before = _snapshot(workdir)
    code, out, _err = _cli_run(char_lm.main, [*arguments, "--resume"], capsys)
    assert code == 0
    assert "already finished (1 epochs, at " in out and "nothing to resume" in out
    assert _snapshot(workdir) == before


SENTIMENT = ["--no-baseline"] + [
    argument
    for setting in ("units=4", "embedding_dim=6", "epochs=2", "batch_size=16", "vocabulary_size=60")
    for argument in ("--set", setting)
]


def _class_files(directory, negative_word="dreadful"):
    positive = ["a splendid film", "fine and moving", "the cast is splendid", "a fine story"] * 4
    negative = [f"a {negative_word} film", "dull and flat", f"the cast is {negative_word}", "a dull story"] * 4
    paths = []
    for name, sentences in (("pos", positive), ("neg", negative)):
        path = directory / f"{name}.txt"
        path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        paths += ["--class-file", f"{name}={path}"]
    return paths


def test_sentiment_resume_checks_the_class_files_and_keeps_a_finished_run(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    argv = ["train", "--workdir", workdir, *_class_files(tmp_path), *SENTIMENT]
    assert sentiment_recipe.main(argv) == 0
    capsys.readouterr()
    before = _snapshot(workdir)
    code, out, _err = _cli_run(sentiment_recipe.main, [*argv, "--resume"], capsys)
    assert code == 0 and "already finished (" in out
    after = _snapshot(workdir)
    assert {name: data for name, data in after.items() if name != "metrics.json"} == {
        name: data for name, data in before.items() if name != "metrics.json"
    }  # model, checkpoints and logs untouched; metrics.json is written again from them
    assert json.loads(after["metrics.json"])["models"] == json.loads(before["metrics.json"])["models"]
    _class_files(tmp_path, negative_word="awful")  # the same paths, other contents
    code, _out, err = _cli_run(sentiment_recipe.main, [*argv, "--resume"], capsys)
    assert code == 2 and "the class file neg=" in err and "changed (size" in err
    assert _snapshot(workdir) == after


def test_a_second_run_on_a_busy_workdir_fails_at_once_naming_the_holder(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom zoo import workdir\nwith workdir.locked(sys.argv[1]):\n"
            "    print('held', flush=True); time.sleep(120)",
            workdir,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for main, argv in (
            (char_lm.main, ["train", "--workdir", workdir, *CHAR_LM]),
            (forecast_recipe.main, ["train", "--workdir", workdir, "--set", "models=lstm", "--set", "epochs=1"]),
            (memory_recipe.main, ["run", "--workdir", workdir, "--quick"]),
        ):
            code, _out, err = _cli_run(main, argv, capsys)
            assert code == 2 and f"is in use by PID {holder.pid}" in err, err
        assert sorted(os.listdir(workdir)) == [".lock"]  # nothing written beside the holder's run
    finally:
        holder.kill()
        holder.wait()


def test_a_diverging_loss_stops_cleanly_without_a_traceback(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(_text(1), encoding="utf-8")
    workdir = str(tmp_path / "run")
    argv = ["train", "--workdir", workdir, "--text", str(text), "--quiet", "--no-tensorboard", *CHAR_LM]
    code, _out, err = _cli_run(char_lm.main, [*argv, "--set", "learning_rate=1e6"], capsys)
    assert code == 1
    assert err.startswith("error: The training loss ") and "Traceback" not in err
    assert "divergence_factor=10" in err or "became nan" in err.lower()
    assert "No checkpoint was saved" in err
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "last.keras"))


def _cut(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _foreign_states(path):
    # Stream states of another model: the right names, a wrong width.
    with np.load(path) as arrays:
        np.savez(path, **{key: np.zeros(arrays[key].shape[:1] + (3,), "float32") for key in arrays.files})


def _renamed_states(path):
    with np.load(path) as arrays:
        np.savez(path, **{f"{key}0": arrays[key] for key in arrays.files})


@pytest.mark.parametrize(
    "name, damage, says",
    [
        ("weights.weights.h5", _cut, "OSError"),
        ("carried.npz", _cut, "BadZipFile"),
        ("carried.npz", _foreign_states, "Received stream states of shapes"),
        ("carried.npz", _renamed_states, "Received stream states named"),
    ],
    ids=["cut-weights", "cut-states", "foreign-states", "renamed-states"],
)
def test_a_damaged_backup_on_resume_is_named_not_a_traceback(tmp_path, capsys, name, damage, says):
    text = tmp_path / "corpus.txt"
    text.write_text(_text(2), encoding="utf-8")
    workdir = str(tmp_path / "run")
    argv = ["train", "--workdir", workdir, "--text", str(text), "--quiet", "--no-tensorboard", *CHAR_LM]
    assert char_lm.main([*argv, "--set", "max_minutes=0.00001"]) == 0  # the budget ends it after a batch
    # Stopped mid-epoch, the backup holds the weights and the streams' states.
    path = os.path.join(workdir, "backup", "latest", name)
    damage(path)
    code, _out, err = _cli_run(char_lm.main, [*argv, "--set", "max_minutes=0.00001", "--resume"], capsys)
    assert code == 2 and "Cannot resume from the backup" in err and path in err and says in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "main, argv",
    [
        (char_lm.main, ["train", *CHAR_LM]),
        (forecast_recipe.main, ["train", "--set", "models=lstm"]),
        (memory_recipe.main, ["run", "--quick"]),
        (sentiment_recipe.main, ["train", "--class-file", "pos=a.txt", "--class-file", "neg=b.txt"]),
    ],
    ids=["char_lm", "forecast", "memory", "sentiment"],
)
def test_a_workdir_under_a_regular_file_is_an_error_not_a_traceback(main, argv, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for workdir in (str(afile), str(afile / "sub")):
        code, _out, err = _cli_run(main, [*argv[:1], "--workdir", workdir, *argv[1:]], capsys)
        assert code == 2 and "is a file" in err and "Traceback" not in err, err


def test_a_run_that_fails_on_its_data_leaves_no_run_behind(tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("ab\n", encoding="utf-8")
    workdir = str(tmp_path / "run")
    argv = ["train", "--workdir", workdir, "--text", str(text), "--quiet", *CHAR_LM]
    code, _out, err = _cli_run(char_lm.main, argv, capsys)
    assert code == 2 and "too few" in err
    assert not os.path.exists(os.path.join(workdir, "config.json"))
    csv = tmp_path / "series.csv"
    csv.write_text("week,value\n" + "".join(f"{day},{day % 7}\n" for day in range(12)))
    argv = ["train", "--workdir", workdir, "--csv", str(csv), "--target", "value", "--set", "models=lstm"]
    code, _out, err = _cli_run(forecast_recipe.main, argv, capsys)
    assert code == 2, err
    assert not os.path.exists(os.path.join(workdir, "config.json"))
    text.write_text(_text(3), encoding="utf-8")  # with usable data the same directory trains
    argv = ["train", "--workdir", workdir, "--text", str(text), "--quiet", "--no-tensorboard", *CHAR_LM]
    assert char_lm.main(argv) == 0
    assert json.load(open(os.path.join(workdir, "metrics.json")))["epochs_completed"] == 1
