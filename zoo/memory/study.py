"""The long-range memory study: its training runs, tables, plots and report.

`run_study` trains every run of a `zoo.memory.config.StudyConfig` (the length
ladders on the adding problem and the copy task, the gradient-flow probes and
the truncated-BPTT runs) and returns a JSON-ready metrics dict;
`write_report` turns that dict into report.md and PNG plots. Nothing here
prints: progress goes to the `log` callable a caller passes (silent by
default). `python -m recipes.memory` is the command line around it.
"""

import dataclasses
import os
import time

import numpy as np

from zoo import cells, distribute, training
from zoo.files import atomic_path, atomic_write_json, atomic_write_text, read_json
from zoo.memory.evaluate import (
    input_gradient_reach,
    reachable_distance,
    untruncated_copy,
)
from zoo.memory.train import train_and_evaluate

PLOT_FILES = {
    "ladder": "ladder.png",
    "gradient_flow": "gradient_flow.png",
    "truncation": "truncation.png",
}
"""File names of the plots in the work directory, by plot."""


# ---------------------------------------------------------------- the study
def _run_once(name, runs_dir, resume, train, log):
    """Train one run, or reuse its finished result when resuming.

    `train(run_dir, log)` returns the result dict of a training run, passing
    `log` (which prefixes the run's name) to `fit`. Returns that result with
    its `name`, also saved as runs_dir/name/result.json.
    """
    run_dir = os.path.join(runs_dir, name)
    result_path = os.path.join(run_dir, "result.json")
    if resume and os.path.exists(result_path):
        log(f"{name}: finished earlier, reusing {result_path}")
        return read_json(result_path)
    result = train(run_dir, training.prefixed(log, name))
    result["name"] = name
    atomic_write_json(result_path, result)
    return result


def _describe(result):
    """One line about a run's result: test error, ratio to baseline, size, time."""
    text = (
        f"{result['test_error']:.4g} ({result['error_over_baseline']:.3f} x baseline, "
        f"{result['parameters']} weights, {result['seconds']:.0f} s)"
    )
    if "copied_letter_accuracy" in result:
        text += f", copied letters {result['copied_letter_accuracy']:.1%} right"
    return text


def _truncation_inspector(distance):
    """An `inspect` function for `train_and_evaluate` in the truncated-BPTT runs.

    It returns, for the trained layer, the input-gradient norm by distance from
    the last step, the largest distance where it is non-zero, its value at the
    first mark `distance` steps back, and the same value through an
    untruncated copy of the layer.
    """

    def inspect(model, test_inputs, _targets):
        layer = model.get_layer("recurrent")
        reach = input_gradient_reach(layer, test_inputs[:16])
        nonzero = [d for d, norm in enumerate(reach) if norm > 0.0]
        forward = input_gradient_reach(untruncated_copy(layer, test_inputs.shape), test_inputs[:16])
        return {
            "input_gradient_by_distance": reach.tolist(),
            "measured_reach": max(nonzero) if nonzero else -1,
            "input_gradient_at_mark": float(reach[distance]),
            "forward_dependence_at_mark": float(forward[distance]),
        }

    return inspect


def run_study(config, workdir, *, resume=False, strategy="default", log=training.silent, on_progress=None):
    """Every training run of the study.

    Args:
        config: A `zoo.memory.config.StudyConfig`.
        workdir: Directory whose runs/<name>/ receives each run's checkpoints
            and result.json.
        resume: Reuse the result.json of runs that finished earlier; a run
            stopped part-way continues from its backup (and says so).
        strategy: Name for `zoo.distribute.get_strategy`; models are built
            in its scope.
        log: Called with one line of text per finished run, and with the line
            `zoo.training.fit` writes when a run continues from a backup (or,
            with `resume`, finds none), prefixed with the run's name (default:
            silent).
        on_progress: Called after each run with the metrics so far
            (`"complete": False`), so an interrupted study still leaves a
            report.

    Returns:
        The JSON-ready metrics dict: `complete` (True), `config`, `ladder`
        and `truncation` (one result dict per run), `solved` (see
        `solved_lengths`) and `environment` (CPU count, load averages,
        seconds, NumPy version).
    """
    runs_dir = os.path.join(workdir, "runs")
    started = time.monotonic()
    load_before = os.getloadavg()
    scope = distribute.get_strategy(strategy).scope

    def train(run_config, probe_size=0, inspect=None):
        def go(run_dir, run_log):
            with scope():
                return train_and_evaluate(
                    run_config,
                    run_dir,
                    train_steps=config.train_steps,
                    batch_size=config.batch_size,
                    evaluations=config.evaluations,
                    test_size=config.test_size,
                    max_minutes=config.max_minutes_per_run,
                    probe_size=probe_size,
                    inspect=inspect,
                    resume=resume,
                    log=run_log,
                )

        return go

    ladder = []
    truncation = []

    def metrics_so_far(complete):
        return {
            "complete": complete,
            "config": dataclasses.asdict(config),
            "ladder": list(ladder),
            "truncation": list(truncation),
            "solved": solved_lengths(ladder, config.solve_fraction),
            "environment": {
                "cpu_count": os.cpu_count(),
                "load_average_at_start": list(load_before),
                "load_average_at_end": list(os.getloadavg()),
                "seconds": time.monotonic() - started,
                "numpy": np.__version__,
            },
        }

    def progress():
        if on_progress is not None:
            on_progress(metrics_so_far(False))

    # Every run is a job; jobs run from the shortest sequence to the longest
    # (cost grows with length), so a study stopped early has the cheap,
    # informative part of every experiment rather than one experiment whole.
    jobs = []
    for length in config.adding_lengths:
        for model in config.models:
            probe = config.probe_size if cells.is_cell(model) else 0
            jobs.append(
                ("ladder", f"adding-T{length}-{model}", config.run_config("adding", model, length), probe, None)
            )
    for model in config.truncation_models:
        for bptt_steps in (*sorted(set(config.truncation_bptt_steps)), None):
            run_config = config.run_config(
                "adding",
                model,
                config.truncation_length,
                bptt_steps=bptt_steps,
                mark_distance=config.truncation_distance,
            )
            name = (
                f"truncation-T{config.truncation_length}-d{config.truncation_distance}-{model}-k{bptt_steps or 'full'}"
            )
            jobs.append(("truncation", name, run_config, 0, _truncation_inspector(config.truncation_distance)))
    for length in config.copy_delays:
        for model in config.models:
            jobs.append(("ladder", f"copy-T{length}-{model}", config.run_config("copy", model, length), 0, None))
    jobs.sort(key=lambda job: job[2].sequence_length)

    for kind, name, run_config, probe, inspector in jobs:
        result = _run_once(name, runs_dir, resume, train(run_config, probe, inspector), log)
        if kind == "ladder":
            ladder.append(result)
            log(f"{name}: {_describe(result)}")
        else:
            result["expected_reach"] = reachable_distance(run_config.length, run_config.bptt_steps)
            truncation.append(result)
            log(
                f"{name}: {_describe(result)}; gradient reaches {result['measured_reach']} steps back "
                f"(chunking predicts {result['expected_reach']})"
            )
        progress()
    return metrics_so_far(True)


def solved_lengths(ladder, solve_fraction):
    """Returns {task: {model: [lengths solved]}}: the lengths whose test error is below
    solve_fraction x baseline, in the order of `ladder`."""
    solved = {}
    for result in ladder:
        lengths = solved.setdefault(result["task"], {}).setdefault(result["model"], [])
        if result["error_over_baseline"] < solve_fraction:
            lengths.append(result["length"])
    return solved


# ------------------------------------------------------------------- report
def _distances(length):
    """The distances from the last step shown in the gradient table, all below `length`."""
    candidates = [0, 1, 2, 5, 10, 20, 50, 100, 200, length - 1]
    return sorted({d for d in candidates if d < length})


def _ladder_table(results, task, models, lengths, solve_fraction):
    """Markdown table of one task's ladder: a row per model, a column per length, and the baseline row."""
    header = "| model | weights | " + " | ".join(f"T={t}" for t in lengths) + " |"
    lines = [header, "|" + "---|" * (len(lengths) + 2)]
    by_key = {(r["model"], r["length"]): r for r in results if r["task"] == task}
    for model in models:
        cells = []
        parameters = ""
        for length in lengths:
            result = by_key.get((model, length))
            if result is None:
                cells.append("-")
                continue
            parameters = str(result["parameters"])
            mark = " **solved**" if result["error_over_baseline"] < solve_fraction else ""
            text = f"{result['test_error']:.4f} ({result['error_over_baseline']:.2f}x){mark}"
            if "copied_letter_accuracy" in result:
                text += f", {result['copied_letter_accuracy']:.0%} letters"
            if result.get("time_budget_exhausted"):
                text += " (time cap hit)"
            cells.append(text)
        label = model
        receptive = next(
            (r.get("receptive_field") for r in results if r["model"] == model and r.get("receptive_field")), None
        )
        if receptive:
            label += f" (receptive field {receptive})"
        lines.append(f"| {label} | {parameters} | " + " | ".join(cells) + " |")
    baselines = []
    for length in lengths:
        result = next((r for r in results if r["task"] == task and r["length"] == length), None)
        baselines.append(
            "-"
            if result is None
            else f"{result['baseline_error']:.4f} (data: {result['empirical_baseline_error']:.4f})"
        )
    lines.append("| memoryless baseline | 0 | " + " | ".join(baselines) + " |")
    return "\n".join(lines)


def _gradient_table(ladder, probe_length):
    """Returns (markdown table of the gradient profiles by distance at `probe_length`, the probed results).

    The table is None and the list empty when no run at that length was probed.
    """
    probed = [
        r for r in ladder if r["task"] == "adding" and r["length"] == probe_length and "state_gradient_trained" in r
    ]
    if not probed:
        return None, []
    distances = _distances(probe_length)
    header = "| distance | " + " | ".join(f"{r['model']} init | {r['model']} trained" for r in probed) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(probed))]
    for distance in distances:
        index = probe_length - 1 - distance
        row = []
        for result in probed:
            row.append(f"{result['state_gradient_at_init'][index]:.2e}")
            row.append(f"{result['state_gradient_trained'][index]:.2e}")
        lines.append(f"| {distance} | " + " | ".join(row) + " |")
    ratio_row = []
    for result in probed:
        for key in ("state_gradient_at_init", "state_gradient_trained"):
            profile = result[key]
            ratio_row.append(f"{profile[0] / profile[-1]:.1e}" if profile[-1] > 0 else "-")
    lines.append(f"| ratio {probe_length - 1} / 0 | " + " | ".join(ratio_row) + " |")
    return "\n".join(lines), probed


def _gradient_ratio_table(ladder, models, lengths, solve_fraction):
    """Markdown table, per model and length, of norm at distance T-1 over norm at distance 0 (None if no probes)."""
    by_key = {(r["model"], r["length"]): r for r in ladder if r["task"] == "adding" and "state_gradient_trained" in r}
    rows = [model for model in models if any((model, length) in by_key for length in lengths)]
    if not rows:
        return None
    lines = ["| model | " + " | ".join(f"T={t}" for t in lengths) + " |", "|" + "---|" * (len(lengths) + 1)]
    for model in rows:
        cells = []
        for length in lengths:
            result = by_key.get((model, length))
            if result is None:
                cells.append("-")
                continue
            ratios = [
                profile[0] / profile[-1] if profile[-1] > 0 else 0.0
                for profile in (result["state_gradient_at_init"], result["state_gradient_trained"])
            ]
            solved = " (solved)" if result["error_over_baseline"] < solve_fraction else ""
            cells.append(f"{ratios[0]:.1e} -> {ratios[1]:.1e}{solved}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _truncation_table(truncation, distance):
    """Markdown table of the truncated-BPTT runs: gradient reach (chunking and measured), gradients, MSE."""
    lines = [
        "| model | bptt_steps | gradient reach (chunking) | gradient reach (measured) | training gradient at mark "
        "| forward dependence on mark | test MSE | MSE / (1/6) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in truncation:
        reachable = "yes" if result["expected_reach"] >= distance else "no"
        forward = result.get("forward_dependence_at_mark")
        lines.append(
            f"| {result['model']} | {result['bptt_steps'] or 'full'} | {result['expected_reach']} (mark {reachable}) "
            f"| {result['measured_reach']} | {result['input_gradient_at_mark']:.2e} "
            f"| {'-' if forward is None else f'{forward:.2e}'} | {result['test_error']:.4f} "
            f"| {result['error_over_baseline']:.2f} |"
        )
    return "\n".join(lines)


def write_plots(metrics, workdir):
    """Write the PNG plots into `workdir`.

    Returns (names of the files written, None), or ([], the reason) when
    matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return [], "matplotlib is not installed (`pip install matplotlib` to get the PNG plots)"

    config = metrics["config"]
    written = []

    def save(figure, key):
        with atomic_path(os.path.join(workdir, PLOT_FILES[key])) as temporary:
            figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(PLOT_FILES[key])

    ladder = metrics["ladder"]
    tasks = [task for task in ("adding", "copy") if any(r["task"] == task for r in ladder)]
    if tasks:
        figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
        for axis, task in zip(axes[0], tasks):
            for model in config["models"]:
                # Clamped so that a perfect run still shows on the log axis.
                points = sorted(
                    (r["length"], max(r["error_over_baseline"], 1e-6))
                    for r in ladder
                    if r["task"] == task and r["model"] == model
                )
                if points:
                    axis.plot(*zip(*points), marker="o", label=model)
            axis.axhline(config["solve_fraction"], color="grey", linestyle="--", label="solved below")
            axis.axhline(1.0, color="black", linewidth=0.8, label="memoryless baseline")
            axis.set_xscale("log")
            axis.set_yscale("log")
            lengths = config["adding_lengths"] if task == "adding" else config["copy_delays"]
            axis.set_xticks(list(lengths))
            axis.set_xticklabels([str(length) for length in lengths])
            axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            axis.set_xlabel("T" if task == "adding" else "delay T")
            axis.set_ylabel("test error / baseline")
            axis.set_title(f"{task}: {config['train_steps']} batches of {config['batch_size']}")
            axis.legend(fontsize=8)
        save(figure, "ladder")

    _, probed = _gradient_table(ladder, config["probe_length"])
    if probed:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for axis, key, title in zip(
            axes, ("state_gradient_at_init", "state_gradient_trained"), ("at initialisation", "after training")
        ):
            for result in probed:
                profile = result[key][::-1]
                axis.plot(range(len(profile)), [max(value, 1e-30) for value in profile], label=result["model"])
            axis.set_yscale("log")
            axis.set_xlabel("distance from the last step (steps)")
            axis.set_title(f"|d loss(T) / d state(T - distance)|, {title}", fontsize=10)
            axis.legend()
        axes[0].set_ylabel("mean gradient norm (log; zeros drawn at 1e-30)")
        save(figure, "gradient_flow")

    truncation = metrics["truncation"]
    if truncation:
        figure, axis = plt.subplots(figsize=(6, 4))
        for model in config["truncation_models"]:
            points = [r for r in truncation if r["model"] == model]
            xs = [r["bptt_steps"] or config["truncation_length"] for r in points]
            axis.plot(xs, [r["test_error"] for r in points], marker="o", label=model)
        axis.axhline(1 / 6, color="black", linewidth=0.8, label="baseline 1/6 (no memory)")
        axis.axhline(1 / 12, color="grey", linestyle="--", label="1/12 (last value only)")
        axis.axvline(config["truncation_distance"] + 0.5, color="red", linestyle=":", label="chunk reaches the mark")
        axis.set_yscale("log")
        axis.set_xlabel(f"bptt_steps (rightmost = full, T={config['truncation_length']})")
        axis.set_ylabel("test MSE")
        axis.legend(fontsize=8)
        save(figure, "truncation")
    return written, None


def _layers_text(config):
    """Which recurrent layers the study trained: ours, or Keras's (`implementation`; ours in studies before it)."""
    if config.get("implementation", "ours") == "keras":
        return "Keras's built-in recurrent layers (`keras.layers.SimpleRNN`, `LSTM`, `GRU`)"
    return "our recurrent layers (`layers/`)"


def render_report(metrics, plots, plot_problem):
    """Returns the markdown report of a study's metrics (marked partial when not complete).

    `plots` names the plots written (see `write_plots`); `plot_problem`, if
    not None, is the reason there are none.
    """
    config = metrics["config"]
    environment = metrics["environment"]
    ladder = metrics["ladder"]
    parts = [
        "# Long-range memory: adding problem, copy task, gradient flow, truncated BPTT",
        "",
        *(
            []
            if metrics.get("complete", True)
            else ["**Partial report: the study is still running or was stopped; `run --resume` completes it.**", ""]
        ),
        f"Every run: {_layers_text(config)}, {config['train_steps']} batches of {config['batch_size']} sequences, Adam "
        f"(learning rate {config['learning_rate']}, clipnorm {config['clipnorm']}), about "
        f"{config['parameter_budget']} weights per model, seed {config['seed']}; test on "
        f"{config['test_size']} held-out sequences. A length is *solved* when the test error is below "
        f"{config['solve_fraction']} x the memoryless baseline. Cells: `test error (error / baseline)`.",
        f"Wall time {environment['seconds'] / 60:.1f} min on {environment['cpu_count']} CPU cores; load average "
        f"{environment['load_average_at_start'][0]:.1f} at the start, {environment['load_average_at_end'][0]:.1f} at the end "
        "(the machine is shared).",
        "",
    ]
    if plot_problem:
        parts += [f"Plots skipped: {plot_problem}.", ""]
    for task, lengths_key, title, baseline_text in (
        (
            "adding",
            "adding_lengths",
            "Adding problem (test MSE)",
            "Baseline: always predict 1, MSE = Var(U1 + U2) = 1/6; the `data:` figure is that MSE on the test batch.",
        ),
        (
            "copy",
            "copy_delays",
            "Copy-memory task (test cross-entropy per step, nats)",
            f"Baseline: blank where the target is always blank, uniform guess on the {config['copy_length']} copied "
            f"steps: {config['copy_length']} log({config['alphabet_size']}) / (T + {2 * config['copy_length']}); "
            "`data:` is the per-position empirical entropy of the test targets. `letters`: copied letters predicted right "
            f"(chance {1 / config['alphabet_size']:.0%}).",
        ),
    ):
        lengths = config[lengths_key]
        if not lengths:
            continue
        parts += [
            f"## {title}",
            "",
            baseline_text,
            "",
            _ladder_table(ladder, task, config["models"], lengths, config["solve_fraction"]),
            "",
        ]
        solved = metrics["solved"].get(task, {})
        parts += [
            "Solved lengths: "
            + "; ".join(f"{model} {solved.get(model) or 'none'}" for model in config["models"])
            + ".",
            "",
        ]
    if "ladder" in plots:
        parts += ["![test error over baseline by length](ladder.png)", ""]
    table, probed = _gradient_table(ladder, config["probe_length"])
    if table:
        parts += [
            f"## Gradient flow (adding problem, T = {config['probe_length']})",
            "",
            "Mean over test sequences of the norm of d(squared error at the last step) / d(state at step T-1-distance), "
            "the total derivative through every later step (state = h, or (h, c) for an LSTM, or (r, c) for a "
            "projection LSTM, r being its projected output), measured by running the trained cell step by step under "
            "`tf.GradientTape`. `init`: the same weights before training; `trained`: after the ladder run at this "
            "length (a small trained error also shrinks every entry, so compare the shape along a column). Last row: norm at the largest distance divided by norm at distance 0.",
            "",
            table,
            "",
        ]
        if "gradient_flow" in plots:
            parts += ["![gradient norm by distance](gradient_flow.png)", ""]
        ratio_table = _gradient_ratio_table(
            ladder, config["models"], config["adding_lengths"], config["solve_fraction"]
        )
        parts += [
            "Every adding length: norm at distance T-1 over norm at distance 0, at initialisation -> after training "
            "(0 means the far gradient underflowed float32).",
            "",
            ratio_table,
            "",
        ]
    if metrics["truncation"]:
        parts += [
            f"## Truncated BPTT (adding problem, T = {config['truncation_length']}, first mark "
            f"{config['truncation_distance']} steps before the last, second mark on the last step)",
            "",
            "`bptt_steps=k` cuts the sequence into chunks of k steps starting at step 0; gradients do not cross a "
            "chunk boundary. `gradient reach (chunking)`: how far back the chunk holding the last step goes; "
            "`measured`: the largest distance at which d(last output)/d(input) of the trained layer is non-zero; "
            "`training gradient at mark`: that norm at the first mark (what training sees); `forward dependence on mark`: "
            "the same norm through an untruncated copy of the trained weights (how much the prediction actually "
            "depends on the first value; truncation stops learning through a boundary, not information crossing it). "
            "A model that cannot learn to store the first value can at best output the last value + 0.5: MSE 1/12 "
            "= 0.0833 (0.50 x baseline).",
            "",
            _truncation_table(metrics["truncation"], config["truncation_distance"]),
            "",
        ]
        if "truncation" in plots:
            parts += ["![test MSE by bptt_steps](truncation.png)", ""]
    return "\n".join(parts)


def write_report(metrics, workdir):
    """Write report.md and the plots into `workdir`; returns `write_plots`'s (plots, problem)."""
    plots, problem = write_plots(metrics, workdir)
    atomic_write_text(os.path.join(workdir, "report.md"), render_report(metrics, plots, problem))
    return plots, problem
