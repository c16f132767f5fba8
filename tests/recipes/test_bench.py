"""`python -m recipes.bench`: runs, reports every contender, rejects bad flags."""

import json
import os
import subprocess
import sys

import pytest

from recipes import bench
from zoo.errors import UserError

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_run_times_every_contender_and_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cells", "GRU", "--seed", "3", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["arguments"] == {
        "mode": "layer",
        "seed": 3,
        "repeats": 3,
        "grid": "quick",
        "cells": ["GRU"],
        "xla": "off",
        "threads": 0,
        "whole_batch": False,
    }
    assert report["machine"]["cores"] == os.cpu_count()
    (case,) = report["timing"]
    assert (case["cell"], case["batch"], case["steps"], case["inputs"], case["units"]) == ("GRU", 4, 6, 3, 5)
    for mode in ("train", "forward"):
        assert set(case[mode]) == {"fused", "fused-graph", "cell", "keras", "floor"}
        assert case[mode]["keras"]["speedup"] == pytest.approx(1.0)
        assert case[mode]["keras"]["paired_speedup"] == pytest.approx(1.0)
        floor = case[mode]["floor"]
        assert floor["layout"] in bench.FLOOR_LAYOUTS and floor["floor_multiple"] == pytest.approx(1.0)
        # The floor's "speed-up" is Keras's time over the floor's.
        assert floor["speedup"] == pytest.approx(case[mode]["keras"]["floor_multiple"])
        for entry in case[mode].values():
            assert entry["median_ms"] > 0 and entry["min_ms"] <= entry["median_ms"]
            assert entry["xla"] is False
            assert entry["paired_speedup"] > 0


def test_variant_layers_are_timed_against_our_cell_without_a_floor(tmp_path):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cells", "ProjectionLSTM", "--json", str(path)]) == 0
    (case,) = json.loads(path.read_text())["timing"]
    assert case["cell"] == "ProjectionLSTM" and case["reference"] == "cell"
    for mode in ("train", "forward"):
        assert set(case[mode]) == {"fused", "fused-graph", "cell"}
        assert case[mode]["cell"]["speedup"] == pytest.approx(1.0)
        for entry in case[mode].values():
            assert entry["median_ms"] > 0 and entry["floor_multiple"] is None
    # The fused contenders ran fused (`benchmark_case` raises otherwise), at half the units projected.
    assert bench.output_width("ProjectionLSTM", 256) == 128 and bench.output_width("LayerNormLSTM", 256) == 256


def test_whole_batch_adds_our_layer_traced_without_the_split(tmp_path, monkeypatch):
    from layers.fused import policy

    decisions = []
    original = policy.splits_batch
    monkeypatch.setattr(policy, "splits_batch", lambda *args: decisions.append(original(*args)) or decisions[-1])
    monkeypatch.setattr(bench, "QUICK_SIZES", [(16, 4, 3, 5)])  # a batch that splits by default
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cells", "SimpleRNN", "--whole-batch", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["arguments"]["whole_batch"] is True
    (case,) = report["timing"]
    for mode in ("train", "forward"):
        assert set(case[mode]) == {"fused", "fused-whole", "fused-graph", "cell", "keras", "floor"}
    # `fused` split its batch (training and inference); `fused-whole` did not.
    assert True in decisions and False in decisions


def test_paired_speedup_pairs_the_repeats():
    # Per repeat 2, 1 and 0.5 times as fast: the median is 1, where the
    # medians' ratio (1 / 2) would see a contender twice as slow.
    assert bench.paired_speedup([10.0, 1.0, 1.0], [5.0, 1.0, 2.0]) == pytest.approx(1.0)
    assert bench.paired_speedup([3.0, 3.0], [1.0, 3.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bench.paired_speedup([1.0, 2.0], [1.0])


def test_xla_both_times_every_contender_under_both_settings(tmp_path):
    path = tmp_path / "bench.json"
    arguments = ["--quick", "--cells", "SimpleRNN", "--xla", "both", "--json", str(path)]
    assert bench.main(arguments) == 0
    (case,) = json.loads(path.read_text())["timing"]
    for mode in ("train", "forward"):
        labels = {"fused", "fused-graph", "cell", "keras", "floor"}
        assert set(case[mode]) == labels | {f"{label}+xla" for label in labels}
        for label, entry in case[mode].items():
            assert entry["xla"] is label.endswith("+xla")
        # Ratios are against Keras under the same compile setting.
        assert case[mode]["keras+xla"]["speedup"] == pytest.approx(1.0)
        assert case[mode]["floor+xla"]["floor_multiple"] == pytest.approx(1.0)


def test_threads_are_set_in_a_fresh_process(tmp_path):
    path = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "recipes.bench",
            "--quick",
            "--cells",
            "SimpleRNN",
            "--threads",
            "1",
            "--size",
            "2,3,4,5",
            "--json",
            str(path),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "threads 1" in completed.stdout.splitlines()[0]
    report = json.loads(path.read_text())
    assert report["arguments"]["threads"] == 1
    # --quick wins over --size: the quick size is timed.
    assert [(case["batch"], case["units"]) for case in report["timing"]] == [(4, 5)]


@pytest.mark.parametrize("kind, gates", [("SimpleRNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("layout", bench.FLOOR_LAYOUTS)
def test_floor_runs_the_products_of_each_cell(kind, gates, layout):
    train, forward, details = bench.floor_functions(kind, (2, 3, 4, 5), seed=0, layout=layout)
    assert details["weight_gradients"] in (("whole",) if gates == 1 else ("whole", "blocks"))
    # The last values are entries of d_recurrent_kernel and d_kernel, which
    # are [units, gates * units] and [inputs, gates * units] products.
    assert len(train()) == 4 and len(forward()) == 2
    assert bench.GATES[kind] == gates


def test_floor_rejects_an_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        bench.floor_functions("LSTM", (2, 3, 4, 5), seed=0, layout="diagonal")


@pytest.mark.slow  # about 20 s: several sequence lengths in fresh processes
def test_memory_probe_reports_growth_that_increases_with_length():
    short = bench.memory_point("fused", "SimpleRNN", 20, 0)
    long = bench.memory_point("fused", "SimpleRNN", 400, 0)
    assert 0 < short["first_step_mib"] < long["first_step_mib"]
    assert 0 < short["later_steps_mib"] < long["later_steps_mib"]
    lines = bench.format_memory_table(
        [{"cell": "SimpleRNN", "steps": 400, "fused": long, "fused-graph": long, "keras": short}]
    ).splitlines()
    assert lines[-1].split()[-1] == f"{long['later_steps_mib'] / short['later_steps_mib']:.2f}"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--cells", "LSTM,Transformer"], "--cells"),
        (["--repeats", "0"], "--repeats"),
        (["--size", "64,100,64"], "--size"),
        (["--size", "64,0,64,256"], "--size"),
        (["--threads", "-1"], "--threads"),
        (["--memory", "--cells", "LSTM,LayerNormLSTM"], "--memory"),
    ],
)
def test_bad_flags_print_one_line_and_exit_non_zero(arguments, message):
    completed = subprocess.run(
        [sys.executable, "-m", "recipes.bench", *arguments],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("error:") and message in completed.stderr
    assert "Traceback" not in completed.stderr


# ------------------------------------------------------------- --mode fit
def _fit_mode_rows(arguments, capsys):
    """Run `--mode fit` with `arguments`; its printed rows, each checked, and its JSON report."""
    import math

    from recipes import _bench_fit

    assert bench.main(["--mode", "fit", *arguments]) == 0
    rows = _bench_fit.parse_rows(capsys.readouterr().out)
    assert rows
    for row in rows:
        for name in ("median_ms", "speedup", "paired_speedup", "paired_min", "paired_max", "cpu_median_ms"):
            assert math.isfinite(row[name]) and row[name] > 0, (row, name)
        assert row["paired_min"] <= row["paired_speedup"] <= row["paired_max"]
        if row["contender"] == "keras":
            assert row["loops"] == "-" and row["paired_speedup"] == pytest.approx(1.0)
    return rows


def test_fit_mode_times_fit_and_predict_of_every_contender(tmp_path, capsys):
    path = tmp_path / "fit.json"
    arguments = ["--cells", "GRU", "--size", "4,5,3,6", "--paths", "padded", "--outputs", "last"]
    rows = _fit_mode_rows([*arguments, "--rounds", "2", "--batches", "2", "--json", str(path)], capsys)
    keys = [(row["mode"], row["contender"]) for row in rows]
    assert sorted(keys) == sorted((m, c) for m in ("fit", "predict") for c in ("fused", "fused-graph", "keras"))
    for row in rows:
        assert (row["cell"], row["size"], row["path"], row["outputs"]) == ("GRU", (4, 5, 3, 6), "padded", "last")
        # Lengths unknown to the traced step: graph loops.
        assert row["loops"] in ("graph", "-")
    report = json.loads(path.read_text())
    assert report["arguments"]["mode"] == "fit" and report["arguments"]["rounds"] == 2
    (case,) = report["fit"]
    for mode in ("fit", "predict"):
        for entry in case[mode].values():
            # Every timed batch: 2 rounds of 2 batches.
            assert entry["batches"] == 4 and len(entry["round_ratios"]) == 2


@pytest.mark.slow  # about a minute: every path and output, four contenders
def test_fit_mode_runs_every_path_and_output(capsys):
    arguments = ["--cells", "SimpleRNN", "--size", "16,5,3,6", "--rounds", "1", "--batches", "2", "--whole-batch"]
    rows = _fit_mode_rows(arguments, capsys)
    assert len(rows) == 3 * 2 * 2 * 4  # paths, outputs, modes, contenders
    loops = {(row["path"], row["mode"], row["contender"]): row["loops"] for row in rows if row["outputs"] == "last"}
    # Known shapes compile the loops (a batch of 16 in halves) unless the
    # contender says otherwise; unknown lengths (padded) run graph loops.
    assert loops[("arrays", "fit", "fused")] == "compiled-halves"
    assert loops[("arrays", "fit", "fused-whole")] == "compiled"
    assert loops[("arrays", "fit", "fused-graph")] == "graph"
    assert loops[("padded", "fit", "fused")] == "graph"


def test_fit_mode_padded_batches_have_their_own_lengths():
    import numpy as np

    from recipes import _bench_fit

    case = _bench_fit.Case("LSTM", (4, 10, 3, 2), "padded", "sequences")
    (dataset,) = _bench_fit.make_inputs(case, batches=3, seed=0).fit_args
    lengths = []
    for x, y in dataset:
        assert x.shape[0] == 4 and y.shape == (4, 1)
        steps = np.abs(x.numpy()).sum(axis=-1) > 0
        # Zeros only after each sequence's end, and the longest fills the batch.
        assert (np.sort(steps, axis=1)[:, ::-1] == steps).all() and steps[:, -1].any()
        lengths.append(x.shape[1])
    assert min(lengths) >= 5 and max(lengths) <= 10


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--mode", "fit", "--cells", "LayerNormLSTM"], "--cells"),
        (["--mode", "fit", "--paths", "arrays,csv"], "--paths"),
        (["--mode", "fit", "--outputs", "all"], "--outputs"),
        (["--mode", "fit", "--rounds", "0"], "--rounds"),
        (["--mode", "fit", "--memory"], "--memory"),
        (["--mode", "fit", "--repeats", "3"], "--repeats"),
        (["--rounds", "3"], "--rounds"),
    ],
)
def test_fit_mode_flags_are_checked(arguments, message):
    with pytest.raises(UserError, match=message):
        bench.parse_arguments(arguments)
