"""The memory study: a tiny study end to end, its metrics, resume, tables, report and plots."""

import contextlib
import dataclasses
import io
import json
import os
import sys

import pytest

from zoo import memory
from zoo.memory import study as memory_study

# One recurrent model, one length per ladder, one truncated run plus full BPTT.
TINY = dataclasses.replace(
    memory.StudyConfig(),
    **{
        **memory.QUICK_STUDY,
        "models": ("rnn",),
        "adding_lengths": (8,),
        "copy_delays": (3,),
        "probe_length": 8,
        "truncation_bptt_steps": (2,),
        "truncation_models": ("rnn",),
        "train_steps": 4,
        "evaluations": 1,
    },
)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """(workdir, metrics, what the study printed) of the tiny study, report written."""
    workdir = str(tmp_path_factory.mktemp("memory_study"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = memory_study.run_study(TINY, workdir)
    memory_study.write_report(metrics, workdir)
    return workdir, metrics, printed.getvalue()


def test_study_metrics_report_and_runs(finished_study):
    workdir, metrics, _ = finished_study
    assert metrics["complete"] is True
    assert sorted(r["name"] for r in metrics["ladder"]) == ["adding-T8-rnn", "copy-T3-rnn"]
    for result in metrics["ladder"] + metrics["truncation"]:
        with open(os.path.join(workdir, "runs", result["name"], "result.json")) as handle:
            assert json.load(handle)["test_error"] == result["test_error"]
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
    report = open(os.path.join(workdir, "report.md")).read()
    for heading in ("## Adding problem", "## Copy-memory task", "## Gradient flow", "## Truncated BPTT"):
        assert heading in report
    assert f"{adding['test_error']:.4f}" in report
    init, trained = adding["state_gradient_at_init"], adding["state_gradient_trained"]
    assert f"| rnn | {init[0] / init[-1]:.1e} -> {trained[0] / trained[-1]:.1e} |" in report
    assert "| rnn | 2 | 1 (mark no) | 1 | 0.00e+00 | " in report


def test_study_prints_nothing_by_default(finished_study):
    _, _, printed = finished_study
    assert printed == ""


def test_resume_reuses_finished_runs_and_reports_progress(finished_study):
    workdir, before, _ = finished_study
    messages, progress = [], []

    def record(metrics):  # a snapshot, as a caller writing metrics.json sees them
        progress.append(json.loads(json.dumps(metrics)))

    after = memory_study.run_study(TINY, workdir, resume=True, log=messages.append, on_progress=record)
    assert sum("finished earlier" in message for message in messages) == 4
    assert [r["test_error"] for r in after["ladder"]] == [r["test_error"] for r in before["ladder"]]
    # One call per run with the runs so far, shortest sequence first: adding
    # (8 steps), copy (3 + 2 * 3 = 9), then the two truncation runs (12).
    assert [(len(m["ladder"]), len(m["truncation"])) for m in progress] == [(1, 0), (2, 0), (2, 1), (2, 2)]
    assert [r["name"] for r in progress[1]["ladder"]] == ["adding-T8-rnn", "copy-T3-rnn"]
    assert [r["bptt_steps"] for r in progress[3]["truncation"]] == [2, None]
    assert [m["complete"] for m in progress] == [False] * 4 and after["complete"] is True


def test_solved_lengths_needs_error_strictly_below_the_fraction():
    ladder = [
        {"task": "adding", "model": "gru", "length": 25, "error_over_baseline": 0.01},
        {"task": "adding", "model": "gru", "length": 50, "error_over_baseline": 0.1},
        {"task": "adding", "model": "rnn", "length": 25, "error_over_baseline": 0.9},
        {"task": "copy", "model": "gru", "length": 10, "error_over_baseline": 0.05},
    ]
    assert memory_study.solved_lengths(ladder, 0.1) == {"adding": {"gru": [25], "rnn": []}, "copy": {"gru": [10]}}
    assert memory_study.solved_lengths(ladder, 0.2)["adding"]["gru"] == [25, 50]


def test_report_without_matplotlib_keeps_tables(finished_study, tmp_path, monkeypatch):
    _, metrics, _ = finished_study
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plots, problem = memory_study.write_report(metrics, str(tmp_path))
    assert plots == [] and "matplotlib" in problem
    report = open(tmp_path / "report.md").read()
    assert "Plots skipped: matplotlib is not installed" in report and "## Truncated BPTT" in report
    assert not any(name.endswith(".png") for name in os.listdir(tmp_path))


def test_plots_written_when_matplotlib_is_available(finished_study):
    pytest.importorskip("matplotlib")
    workdir, _, _ = finished_study
    for name in memory_study.PLOT_FILES.values():
        with open(os.path.join(workdir, name), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_partial_report_says_so(finished_study):
    _, metrics, _ = finished_study
    partial = memory_study.render_report({**metrics, "complete": False}, [], None)
    assert partial.startswith("# Long-range memory")
    assert "**Partial report" in partial and "**Partial report" not in memory_study.render_report(metrics, [], None)
