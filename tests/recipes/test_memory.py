"""`python -m recipes.memory`: flags reach the study, printing, resume, errors, the report verb.

The study itself (metrics, tables, plots) is tested in tests/zoo/test_memory_study.py.
"""

import contextlib
import io
import json
import os

import pytest

from recipes import _cli
from recipes import memory as recipe
from zoo import memory

# One recurrent model, one length per ladder, one truncated run plus full BPTT.
TINY = [
    "--quick",
    "--models",
    "rnn",
    "--lengths",
    "8",
    "--copy-delays",
    "3",
    "--set",
    "truncation_bptt_steps=2",
    "--set",
    "truncation_models=rnn",
    "--set",
    "train_steps=4",
    "--set",
    "evaluations=1",
]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """(workdir, what the command printed) of a tiny `run`."""
    workdir = str(tmp_path_factory.mktemp("memory") / "study")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert recipe.main(["run", "--workdir", workdir, *TINY]) == 0
    return workdir, printed.getvalue()


def test_run_writes_report_metrics_and_runs(finished_study):
    workdir, _ = finished_study
    names = set(os.listdir(workdir))
    assert {"config.json", "metrics.json", "report.md", "runs"} <= names
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert metrics["complete"] is True
    assert sorted(r["name"] for r in metrics["ladder"]) == ["adding-T8-rnn", "copy-T3-rnn"]
    # The flags reached the study: --lengths 8 moved the gradient probe to T = 8,
    # --set truncation_bptt_steps=2 left one truncated run beside full BPTT.
    adding = next(r for r in metrics["ladder"] if r["task"] == "adding")
    assert len(adding["state_gradient_at_init"]) == 8 and adding["state_gradient_at_init"][-1] > 0
    assert adding["train_steps"] == 4 and adding["batch_size"] == memory.QUICK_STUDY["batch_size"]
    assert [r["bptt_steps"] for r in metrics["truncation"]] == [2, None]
    report = open(os.path.join(workdir, "report.md")).read()
    for heading in ("## Adding problem", "## Copy-memory task", "## Gradient flow", "## Truncated BPTT"):
        assert heading in report
    assert f"{adding['test_error']:.4f}" in report


def test_run_prints_each_run_and_the_report(finished_study):
    workdir, printed = finished_study
    lines = printed.splitlines()
    for name in ("adding-T8-rnn", "copy-T3-rnn", "truncation-T12-d3-rnn-k2", "truncation-T12-d3-rnn-kfull"):
        assert sum(line.startswith(f"{name}: ") for line in lines) == 1
    assert f"wrote {os.path.join(workdir, 'report.md')} " in printed
    assert open(os.path.join(workdir, "report.md")).read() in printed


def test_resume_reuses_finished_runs(finished_study, capsys):
    workdir, _ = finished_study
    before = json.load(open(os.path.join(workdir, "metrics.json")))
    assert recipe.main(["run", "--workdir", workdir, *TINY, "--resume"]) == 0
    assert capsys.readouterr().out.count("finished earlier") == 4
    after = json.load(open(os.path.join(workdir, "metrics.json")))
    assert [r["test_error"] for r in after["ladder"]] == [r["test_error"] for r in before["ladder"]]


def test_variant_cells_run_in_the_ladder_and_the_probe(tmp_path, capsys):
    workdir = str(tmp_path / "variants")
    one_run = ["--set", "copy_delays=", "--set", "truncation_models="]  # the adding problem at T = 8 only
    # The projection LSTM's state is (r, c) of two sizes (the probe is checked against autodiff in tests/zoo).
    assert recipe.main(["run", "--workdir", workdir, *TINY, *one_run, "--models", "projection_lstm"]) == 0
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    (result,) = metrics["ladder"]
    assert result["name"] == "adding-T8-projection_lstm" and result["recurrent_path"] == "fused"
    assert len(result["state_gradient_trained"]) == 8 and min(result["state_gradient_at_init"]) > 0
    assert result["parameters"] == memory.parameter_count("projection_lstm", result["width"], "adding")
    report = open(os.path.join(workdir, "report.md")).read()
    assert "| distance | projection_lstm init | projection_lstm trained |" in report


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, capsys):
    workdir = str(tmp_path / "new")
    one_run = ["--set", "copy_delays=", "--set", "truncation_models="]  # the adding problem at T = 8 only
    assert recipe.main(["run", "--workdir", workdir, *TINY, *one_run, "--resume"]) == 0
    assert "adding-T8-rnn: nothing to resume: starting fresh" in capsys.readouterr().out.splitlines()
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert metrics["complete"] is True and [run["name"] for run in metrics["ladder"]] == ["adding-T8-rnn"]


def test_reusing_a_workdir_without_resume_is_refused(finished_study, capsys):
    workdir, _ = finished_study
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(recipe.main, ["run", "--workdir", workdir, *TINY])
    assert exit_info.value.code != 0
    assert "already holds a memory study" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(finished_study, capsys):
    workdir, _ = finished_study
    with pytest.raises(SystemExit):
        _cli.run(recipe.main, ["run", "--workdir", workdir, *TINY, "--set", "batch_size=8", "--resume"])
    assert "fields ['batch_size'] differ" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--set", "models=rnn,transformer"], ["models", "transformer"]),
        (["--set", "probe_length=99"], ["probe_length=99", "adding_lengths"]),
        (["--set", "colour=red"], ["colour", "Known fields"]),
    ],
)
def test_bad_settings_exit_with_one_line(tmp_path, capsys, flags, words):
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(recipe.main, ["run", "--workdir", str(tmp_path / "w"), "--quick", *flags])
    assert exit_info.value.code == _cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err


def test_report_verb_needs_metrics(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _cli.run(recipe.main, ["report", "--workdir", str(tmp_path)])
    assert "No metrics.json" in capsys.readouterr().err


def test_report_verb_rerenders_the_report(finished_study, tmp_path, capsys):
    workdir, _ = finished_study
    copy = tmp_path / "copy"
    copy.mkdir()
    with open(os.path.join(workdir, "metrics.json")) as source:
        (copy / "metrics.json").write_text(source.read())
    assert recipe.main(["report", "--workdir", str(copy)]) == 0
    assert f"wrote {copy / 'report.md'}" in capsys.readouterr().out
    assert (copy / "report.md").read_text() == open(os.path.join(workdir, "report.md")).read()
