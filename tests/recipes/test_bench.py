"""`python -m recipes.bench`: runs, reports every contender, rejects bad flags."""

import json
import os
import subprocess
import sys

import pytest

from recipes import bench

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_run_times_every_contender_and_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cells", "GRU", "--seed", "3", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["arguments"] == {"seed": 3, "repeats": 3, "grid": "quick", "cells": ["GRU"]}
    assert report["machine"]["cores"] == os.cpu_count()
    (case,) = report["timing"]
    assert (case["cell"], case["batch"], case["steps"], case["inputs"], case["units"]) == ("GRU", 4, 6, 3, 5)
    for mode in ("train", "forward"):
        assert set(case[mode]) == {"fused", "cell", "keras"}
        assert case[mode]["keras"]["speedup"] == pytest.approx(1.0)
        for entry in case[mode].values():
            assert entry["median_ms"] > 0 and entry["min_ms"] <= entry["median_ms"]


def test_memory_probe_reports_growth_that_increases_with_length():
    short = bench.memory_point("fused", "SimpleRNN", 20, 0)
    long = bench.memory_point("fused", "SimpleRNN", 400, 0)
    assert 0 < short < long


@pytest.mark.parametrize(
    "arguments, message",
    [(["--cells", "LSTM,Transformer"], "--cells"), (["--repeats", "0"], "--repeats")],
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
