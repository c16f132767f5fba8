"""`python -m recipes.memory`: a tiny study end to end, resume, errors, report."""

import json
import os
import sys

import pytest

from recipes import _cli
from recipes import memory as recipe

# One recurrent model, one length per ladder, one truncated run plus full BPTT.
TINY = [
    "--quick",
    "--models", "rnn",
    "--lengths", "8",
    "--copy-delays", "3",
    "--set", "truncation_bptt_steps=2",
    "--set", "truncation_models=rnn",
    "--set", "train_steps=4",
    "--set", "evaluations=1",
]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("memory") / "study")
    assert recipe.main(["run", "--workdir", workdir, *TINY]) == 0
    return workdir


def test_run_writes_report_metrics_and_runs(finished_study):
    names = set(os.listdir(finished_study))
    assert {"config.json", "metrics.json", "report.md", "runs"} <= names
    metrics = json.load(open(os.path.join(finished_study, "metrics.json")))
    assert metrics["complete"] is True
    assert sorted(r["name"] for r in metrics["ladder"]) == ["adding-T8-rnn", "copy-T3-rnn"]
    adding = next(r for r in metrics["ladder"] if r["task"] == "adding")
    assert adding["baseline_error"] == pytest.approx(1 / 6)
    assert adding["error_over_baseline"] == pytest.approx(adding["test_error"] * 6)
    assert len(adding["state_gradient_at_init"]) == 8 and adding["state_gradient_at_init"][-1] > 0
    # T = 12, mark 3 steps back: chunks of 2 reach 1 step back, full BPTT 11.
    truncation = {r["bptt_steps"]: r for r in metrics["truncation"]}
    assert truncation[2]["expected_reach"] == truncation[2]["measured_reach"] == 1
    assert truncation[2]["input_gradient_at_mark"] == 0.0
    assert truncation[None]["measured_reach"] == 11 and truncation[None]["input_gradient_at_mark"] > 0
    # Without truncation the two measures are the same quantity.
    assert truncation[None]["forward_dependence_at_mark"] == pytest.approx(truncation[None]["input_gradient_at_mark"])
    assert truncation[2]["forward_dependence_at_mark"] > 0
    report = open(os.path.join(finished_study, "report.md")).read()
    for heading in ("## Adding problem", "## Copy-memory task", "## Gradient flow", "## Truncated BPTT"):
        assert heading in report
    assert f"{adding['test_error']:.4f}" in report
    init, trained = adding["state_gradient_at_init"], adding["state_gradient_trained"]
    assert f"| rnn | {init[0] / init[-1]:.1e} -> {trained[0] / trained[-1]:.1e} |" in report
    assert "| rnn | 2 | 1 (mark no) | 1 | 0.00e+00 | " in report


def test_resume_reuses_finished_runs(finished_study, capsys):
    before = json.load(open(os.path.join(finished_study, "metrics.json")))
    assert recipe.main(["run", "--workdir", finished_study, *TINY, "--resume"]) == 0
    assert capsys.readouterr().out.count("finished earlier") == 4
    after = json.load(open(os.path.join(finished_study, "metrics.json")))
    assert [r["test_error"] for r in after["ladder"]] == [r["test_error"] for r in before["ladder"]]


def test_reusing_a_workdir_without_resume_is_refused(finished_study, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(recipe.main, ["run", "--workdir", finished_study, *TINY])
    assert exit_info.value.code != 0
    assert "already holds a memory study" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(finished_study, capsys):
    with pytest.raises(SystemExit):
        _cli.run(recipe.main, ["run", "--workdir", finished_study, *TINY, "--set", "batch_size=8", "--resume"])
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


def test_report_without_matplotlib_keeps_tables(finished_study, tmp_path, monkeypatch):
    metrics = json.load(open(os.path.join(finished_study, "metrics.json")))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plots, problem = recipe.write_report(metrics, str(tmp_path))
    assert plots == [] and "matplotlib" in problem
    report = open(tmp_path / "report.md").read()
    assert "Plots skipped: matplotlib is not installed" in report and "## Truncated BPTT" in report
    assert not any(name.endswith(".png") for name in os.listdir(tmp_path))


def test_plots_written_when_matplotlib_is_available(finished_study):
    pytest.importorskip("matplotlib")
    for name in recipe.PLOT_FILES.values():
        with open(os.path.join(finished_study, name), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
