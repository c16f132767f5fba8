"""Forecast a real series with our recurrent layers, against honest baselines.

    python -m recipes.forecast train --workdir runs/co2            # weekly Mauna Loa CO2 (offline)
    python -m recipes.forecast evaluate --workdir runs/co2         # table + metrics.json + forecast.png
    python -m recipes.forecast export --workdir runs/co2 --model lstm
    python -m recipes.forecast train --workdir runs/mine --csv data.csv --target load --time-column date
    python -m recipes.forecast benchmark --workdir runs/bench      # every model on CO2 and El Nino, ours and Keras's
    python -m recipes.forecast variants --workdir runs/variants    # each structure/interval option, both series

Every model is scored on the same test windows (the last part of the series,
never seen in training or normalisation): last value, seasonal naive, a
linear AR(window) fitted by least squares, with statsmodels Holt-Winters
and a dynamic harmonic regression (Fourier terms + ARIMA errors),
a 1-D convolution, and SimpleRNN/LSTM/GRU in single-shot and autoregressive
form. MASE < 1 means better than the seasonal naive forecast on the
training part. `--set implementation=keras` builds the recurrent models with
Keras's SimpleRNN/LSTM/GRU instead of ours; `benchmark` trains both and
compares them side by side.
"""

import argparse
import dataclasses
import os
import statistics

from recipes import _cli, _litert, _onnx
from zoo import cells
from zoo import config as config_lib
from zoo import workdir as workdir_lib
from zoo.distribute import is_chief
from zoo.errors import UserError
from zoo.files import atomic_write_text
from zoo.forecast import evaluate as evaluate_lib
from zoo.forecast import export as export_lib
from zoo.forecast import train as train_lib
from zoo.forecast.baselines import level_name
from zoo.forecast.config import INTERVAL_LEVELS, NEURAL_MODELS, ForecastConfig, is_neural_model

CONFIG_FILE = "config.json"

# The benchmark's runs: (directory, overrides). Seeded through --seed.
BENCHMARK_RUNS = {
    "co2": ["dataset=co2", "window=104", "horizon=26", "season_period=0"],
    "elnino": ["dataset=elnino", "window=36", "horizon=12", "season_period=0", "classical_trend=none"],
}


# The `variants` verb's settings: each names every option it measures, so that a change of the
# defaults does not change what a variant means. "plain" is the recipe before these options.
def _variant(features="none", transform="none", seeds=1, intervals="conformal"):
    return [f"features={features}", f"transform={transform}", f"seeds={seeds}", f"intervals={intervals}"]


VARIANTS = {
    "plain": _variant(),
    "quantile": _variant(intervals="quantile"),
    "seeds5": _variant(seeds=5),
    "fourier": _variant(features="fourier"),
    "difference": _variant(transform="difference"),
    "deseasonalize": _variant(transform="deseasonalize"),
    "residual": _variant(transform="residual"),
    "fourier+deseasonalize": _variant(features="fourier", transform="deseasonalize"),
    "fourier+seeds5": _variant(features="fourier", seeds=5),
    "deseasonalize+seeds5": _variant(transform="deseasonalize", seeds=5),
    "fourier+deseasonalize+seeds5": _variant(features="fourier", transform="deseasonalize", seeds=5),
    "deseasonalize+quantile": _variant(transform="deseasonalize", intervals="quantile"),
}
VARIANT_MODELS = "models=lstm,gru"


def _config_from_arguments(args):
    overrides = _cli.overrides_with_seed(args)
    if args.csv:
        overrides.append(f"csv_path={os.path.abspath(args.csv)}")
    for flag, field in (("target", "target"), ("time_column", "time_column"), ("inputs", "input_columns")):
        value = getattr(args, flag)
        if value:
            overrides.append(f"{field}={value}")
    if (args.target or args.time_column or args.inputs) and not args.csv:
        raise UserError("--target, --time-column and --inputs describe a CSV file; pass it with --csv PATH.")
    return config_lib.apply_overrides(ForecastConfig(), overrides)


def _saved_config(args, verb):
    if args.overrides or args.seed is not None:
        raise UserError(
            f"`{verb}` uses the config saved by `train` in {args.workdir}/{CONFIG_FILE}; --set and --seed only apply to `train`."
        )
    return config_lib.load(ForecastConfig, os.path.join(args.workdir, CONFIG_FILE))


def format_table(metrics, steps=None):
    """A plain-text table: one row per model, overall and per-step MASE, and each interval's coverage and mean width.

    "cover80" is the share of test values inside the model's 80% intervals,
    "width80" their mean width in the series' units; "-" where a model gives
    no intervals.
    """
    horizon = metrics["horizon"]
    steps = steps or sorted({1, max(1, horizon // 4), max(1, horizon // 2), horizon})
    levels = [level_name(level) for level in metrics.get("interval_levels", [])]
    width = max([27, *(len(name) + 1 for name in metrics["models"])])
    header = f"{'model':<{width}}{'MAE':>9}{'RMSE':>9}{'MASE':>8}" + "".join(
        f"{'MASE@' + str(step):>10}" for step in steps
    )
    header += "".join(f"{'cover' + level:>9}{'width' + level:>9}" for level in levels)
    lines = [header, "-" * len(header)]
    ranked = sorted(metrics["models"].items(), key=lambda item: item[1]["mase"])
    for name, scores in ranked:
        row = f"{name:<{width}}{scores['mae']:>9.4f}{scores['rmse']:>9.4f}{scores['mase']:>8.3f}"
        row += "".join(f"{scores['mase_per_step'][step - 1]:>10.3f}" for step in steps)
        for level in levels:
            if f"coverage_{level}" in scores:
                row += f"{scores[f'coverage_{level}']:>9.3f}{scores[f'width_{level}']:>9.3f}"
            else:
                row += f"{'-':>9}{'-':>9}"
        lines.append(row)
    return "\n".join(lines)


def verdict(metrics):
    """Plain sentences: did the recurrent models beat the simple ones?"""
    models = metrics["models"]
    recurrent = {name: scores for name, scores in models.items() if is_neural_model(name) and name != "conv"}
    if not recurrent:
        return "No recurrent model was evaluated."
    best_name, best = min(recurrent.items(), key=lambda item: item[1]["mase"])
    sentences = [f"Best recurrent model: {best_name} (MASE {best['mase']:.3f})."]
    for rival in ("seasonal_naive", "linear_ar", "conv", "holt_winters", "harmonic_arima"):
        if rival in models:
            other = models[rival]["mase"]
            outcome = "beats" if best["mase"] < other else "does NOT beat"
            sentences.append(f"It {outcome} {rival} (MASE {other:.3f}).")
    overall_name = min(models, key=lambda name: models[name]["mase"])
    sentences.append(f"Best model overall: {overall_name} (MASE {models[overall_name]['mase']:.3f}).")
    return " ".join(sentences)


def report(metrics):
    split = metrics["split"]
    filled = ", ".join(f"{column}: {count}" for column, count in metrics["missing_filled"].items())
    return "\n".join(
        [
            f"{metrics['series']}: {metrics['steps']} steps, train/validation/test = "
            f"{split['train']}/{split['validation']}/{split['test']}; {metrics['test_windows']} test windows of "
            f"{metrics['window']} steps -> {metrics['horizon']} steps; missing values ({metrics['missing_policy']}): {filled}; "
            f"season period {metrics['season_period']}{' (inferred)' if metrics['season_period_inferred'] else ''}; "
            f"MASE scale (in-sample seasonal naive MAE) {metrics['mase_scale']:.4f}",
            format_table(metrics),
            *(
                f"{name}: {metrics['notes'][name]}"
                for name in ("holt_winters", "harmonic_arima")
                if name in metrics["notes"]
            ),
            *(
                f"{name}: an ensemble of {len(mase)}; its members' own MASE "
                + ", ".join(f"{value:.3f}" for value in mase)
                for name, mase in metrics.get("member_mase", {}).items()
            ),
            *sorted(
                {
                    f"neural models' {metrics['notes'][name]}"
                    for name in metrics["models"]
                    if is_neural_model(name) and name in metrics["notes"]
                }
            ),
            verdict(metrics),
        ]
    )


def command_train(args):
    # `--resume` alone continues with the saved config; with flags they must match it.
    # Without a saved config there is nothing to resume: the flags make a fresh run.
    saved = os.path.exists(os.path.join(args.workdir, CONFIG_FILE))
    resuming_as_saved = args.resume and saved and not (args.overrides or args.csv or args.seed is not None)
    if resuming_as_saved:
        config = config_lib.load(ForecastConfig, os.path.join(args.workdir, CONFIG_FILE))
    else:
        config = _config_from_arguments(args)
    # One lock for training and the metrics written after it (train takes the same lock again).
    with workdir_lib.locked(args.workdir, hold=is_chief()):
        train_lib.train(
            config, args.workdir, resume=args.resume, strategy=args.strategy, verbose=args.verbose, log=print
        )
        metrics = evaluate_lib.evaluate(config, args.workdir, log=print)
    print(report(metrics))


def command_evaluate(args):
    config = _saved_config(args, "evaluate")
    metrics = evaluate_lib.evaluate(config, args.workdir, log=print)
    print(report(metrics))


def command_export(args):
    batch_size = _litert.batch_size(args)
    _litert.check_path(args.output, "--output", args.format)
    config = _saved_config(args, "export")
    name = args.model or config.models[0]
    if args.format == "litert":
        report = export_lib.export_litert(
            config,
            args.workdir,
            name,
            args.output,
            batch_size=batch_size,
            quantize=_litert.quantize(args),
            step=args.step,
        )
        print(_litert.summary(report))
        return
    if args.format == "onnx":
        print(_onnx.summary(export_lib.export_onnx(config, args.workdir, name, args.output)))
        return
    path = export_lib.export(config, args.workdir, name, args.output)
    inputs = "window" + (" and step (the window's last position in the series)" if config.uses_steps else "")
    outputs = "forecast" + (" and the 80% and 95% interval bounds" if config.intervals != "none" else "")
    refusal = export_lib.step_refusal(evaluate_lib.load_trained(args.workdir, name), name)
    step = "" if refusal else "; step: one observation plus the states -> output plus the new states"
    print(f"exported {name} to {path} (signature serving_default: {inputs} in original units -> {outputs}{step})")


def _benchmark_runs(config, implementations, workdir):
    """The `(config, workdir)` of each implementation's run of the benchmark `config`.

    Keras's run trains the models that have a Keras built-in layer (the
    plain cells, single-shot and autoregressive); the convolution and the
    variants do not depend on the implementation. With ours beside it, it
    fits no classical model (ours' run scores them).
    """
    runs = []
    for implementation in implementations:
        run_config = dataclasses.replace(config, implementation=implementation)
        if implementation == "keras":
            models = tuple(name for name in config.models if cells.has_keras_layer(name))
            if not models:
                raise UserError(
                    f"Received --implementations with keras, but none of the models ({', '.join(config.models)}) "
                    f"has a Keras built-in layer; expected some of {', '.join(cells.PLAIN)} (or their "
                    "-autoregressive forms)."
                )
            classical = () if "ours" in implementations else config.classical_models
            run_config = dataclasses.replace(run_config, models=models, classical_models=classical)
        run_config.validate()
        runs.append((run_config, os.path.join(workdir, implementation)))
    return runs


def _seconds_per_epoch(summary):
    """(first epoch seconds, median seconds of the later epochs) of a training summary; None where unknown.

    For an ensemble (`seeds` > 1): the first member's first epoch, and the
    median of every member's later epochs.
    """
    runs = [member.get("epoch_seconds") or [] for member in summary.get("members", [summary])]
    later = [seconds for run in runs for seconds in run[1:]]
    return (runs[0][0] if runs[0] else None), (statistics.median(later) if later else None)


def _epochs(summary):
    """Epochs trained: a number, or the members' numbers joined by "+" for an ensemble."""
    epochs = summary["epochs"]
    return "+".join(str(count) for count in epochs) if isinstance(epochs, list) else str(epochs)


def _cell(value, spec, width):
    return f"{format(value, spec) if value is not None else '-':>{width}}"


def side_by_side(trained, scored):
    """Ours against Keras's, a row per model that both trained: seconds per epoch, their ratio, epochs, MASE.

    `trained` and `scored` map "ours" and "keras" to the runs' training
    summaries and evaluation metrics. Seconds per epoch are the median after
    the first epoch (which includes tracing), training and validation.
    """
    names = [name for name in trained["keras"] if name in trained["ours"]]
    header = (
        f"{'model':<22}{'first s ours':>13}{'keras':>7}{'s/epoch ours':>14}{'keras':>7}{'keras/ours':>12}"
        f"{'epochs ours':>13}{'keras':>7}{'MASE ours':>11}{'keras':>8}"
    )
    lines = [header, "-" * len(header)]
    for name in names:
        (first_ours, median_ours), (first_keras, median_keras) = (
            _seconds_per_epoch(trained["ours"][name]),
            _seconds_per_epoch(trained["keras"][name]),
        )
        ratio = median_keras / median_ours if median_ours and median_keras else None
        lines.append(
            f"{name:<22}{_cell(first_ours, '.2f', 13)}{_cell(first_keras, '.2f', 7)}{_cell(median_ours, '.3f', 14)}"
            f"{_cell(median_keras, '.3f', 7)}{_cell(ratio, '.2f', 11)}{'x' if ratio else ' '}"
            f"{_epochs(trained['ours'][name]):>13}{_epochs(trained['keras'][name]):>7}"
            f"{scored['ours']['models'][name]['mase']:>11.3f}{scored['keras']['models'][name]['mase']:>8.3f}"
        )
    return "\n".join(lines)


def command_benchmark(args):
    base = list(_cli.overrides_with_seed(args))
    implementations = _cli.comma_separated("--implementations", args.implementations, cells.IMPLEMENTATIONS)
    only = _cli.comma_separated("--only", args.only, tuple(BENCHMARK_RUNS)) if args.only else tuple(BENCHMARK_RUNS)
    sections = []
    for run_name, overrides in BENCHMARK_RUNS.items():
        if run_name not in only:
            continue
        config = config_lib.apply_overrides(ForecastConfig(), [*overrides, f"models={','.join(NEURAL_MODELS)}", *base])
        runs = _benchmark_runs(config, implementations, os.path.join(args.workdir, run_name))
        print(f"== {run_name}: {', '.join(workdir for _, workdir in runs)}")
        trained = train_lib.train_interleaved(
            [
                (run_config, workdir, training_log(implementation))
                for (run_config, workdir), implementation in zip(runs, implementations)
            ],
            resume=args.resume,
            strategy=args.strategy,
            verbose=args.verbose,
        )
        scored = {}
        for (run_config, workdir), implementation in zip(runs, implementations):
            metrics = evaluate_lib.evaluate(run_config, workdir, log=print)
            scored[implementation] = metrics
            text = report(metrics)
            print(f"-- {run_name}, {implementation}")
            print(text)
            sections.append(f"## {run_name}, {implementation}\n\n```\n{text}\n```\n")
        if "ours" in scored and "keras" in scored:
            text = side_by_side(dict(zip(implementations, trained)), scored)
            print(
                f"-- {run_name}: ours against Keras's (seconds per epoch: training and validation, median after the first)"
            )
            print(text)
            sections.append(f"## {run_name}: ours against Keras's\n\n```\n{text}\n```\n")
    atomic_write_text(os.path.join(args.workdir, "benchmark.md"), "\n".join(sections))


def command_variants(args):
    names = _cli.comma_separated("--only", args.only, tuple(VARIANTS)) if args.only else tuple(VARIANTS)
    series = (
        _cli.comma_separated("--series", args.series, tuple(BENCHMARK_RUNS)) if args.series else tuple(BENCHMARK_RUNS)
    )
    base = list(_cli.overrides_with_seed(args))
    results = {}
    for variant in names:
        for run_name in series:
            overrides = [*BENCHMARK_RUNS[run_name], VARIANT_MODELS, *VARIANTS[variant], *base]
            config = config_lib.apply_overrides(ForecastConfig(), overrides)
            workdir = os.path.join(args.workdir, variant, run_name)
            print(f"== {variant} on {run_name}: {workdir}")
            train_lib.train(
                config, workdir, resume=args.resume, strategy=args.strategy, verbose=args.verbose, log=print
            )
            metrics = evaluate_lib.evaluate(config, workdir, log=print)
            print(report(metrics))
            results[variant, run_name] = metrics
    text = variants_table(results, names, series)
    print(text)
    atomic_write_text(os.path.join(args.workdir, "variants.md"), text + "\n")


def training_log(implementation):
    """The benchmark's progress lines for one implementation's run, prefixed with it."""
    return lambda message: print(f"[{implementation}] {message}")


def variants_table(results, names, series):
    """Markdown tables: each variant's MASE per series and model, then its intervals' coverage and width.

    `results` maps (variant, series) to that run's metrics; the harmonic
    regression, the same in every variant, is a row of its own. An
    ensemble's MASE is followed by the range of its members' own MASE.
    """
    models = [cells.canonical_name(name) for name in VARIANT_MODELS.split("=", 1)[1].split(",")]
    reference = "harmonic_arima"
    columns = [(run, model) for run in series for model in models]
    header = "| variant | " + " | ".join(f"{run} {model} MASE" for run, model in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    first = {run: next((results[name, run] for name in names if (name, run) in results), None) for run in series}
    row = [
        f"{first[run]['models'][reference]['mase']:.3f}" if first[run] and reference in first[run]["models"] else "-"
        for run, _ in columns
    ]
    lines.append(f"| {reference} (statsmodels) | " + " | ".join(row) + " |")

    def mase_of(metrics, model):
        text = f"{metrics['models'][model]['mase']:.3f}"
        members = metrics.get("member_mase", {}).get(model)
        return text + (f" ({min(members):.3f}-{max(members):.3f})" if members else "")

    for name in names:
        row = [mase_of(results[name, run], model) if (name, run) in results else "-" for run, model in columns]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    levels = [level_name(level) for level in INTERVAL_LEVELS]
    header = (
        "| variant | "
        + " | ".join(f"{run} {model} cover{level} / width{level}" for run, model in columns for level in levels)
        + " |"
    )
    lines += ["", header, "|---" * (len(columns) * len(levels) + 1) + "|"]

    def cells_of(metrics, model):
        scores = metrics["models"].get(model, {}) if metrics else {}
        return [
            f"{scores[f'coverage_{level}']:.3f} / {scores[f'width_{level}']:.3g}"
            if f"coverage_{level}" in scores
            else "-"
            for level in levels
        ]

    lines.append(
        f"| {reference} (statsmodels) | "
        + " | ".join(cell for run, _ in columns for cell in cells_of(first[run], reference))
        + " |"
    )
    for name in names:
        row = [cell for run, model in columns for cell in cells_of(results.get((name, run)), model)]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def config_help():
    """`--set` fields with their defaults and the comments beside them in ForecastConfig's source.

    A comment sits on the field's line, or on the next one where the
    formatter wrapped a long default in parentheses.
    """
    import inspect
    import re

    comments, pending = {}, None
    for line in inspect.getsource(ForecastConfig).splitlines():
        field = re.match(r"\s+(\w+): [^#]*= ", line)
        comment = re.search(r"  # (.*)$", line)
        if field:
            pending = field.group(1)
        if pending and comment:
            comments[pending], pending = comment.group(1), None
        elif field and not line.rstrip().endswith("("):
            pending = None
    defaults = ForecastConfig()
    lines = ["config fields for --set KEY=VALUE (train, benchmark and variants):"]
    for field in dataclasses.fields(ForecastConfig):
        value = getattr(defaults, field.name)
        shown = ",".join(value) if isinstance(value, tuple) else ("none" if value is None else str(value))
        lines.append(f"  {field.name:<20} {shown or '(empty)':<16} {comments.get(field.name, '')}")
    return "\n".join(lines)


def build_parser():
    parser = _cli.parser("python -m recipes.forecast", __doc__ + "\n" + config_help())
    verbs = parser.add_subparsers(dest="verb", required=True)

    def data_arguments(subparser):
        subparser.add_argument("--csv", help="CSV file with a header row (default: the embedded weekly CO2 series).")
        subparser.add_argument("--target", help="CSV column to forecast.")
        subparser.add_argument("--time-column", dest="time_column", help="CSV column of times (numbers or ISO dates).")
        subparser.add_argument("--inputs", help="Extra CSV columns the neural models read, comma separated.")

    def progress_argument(subparser):
        subparser.add_argument(
            "--verbose",
            type=int,
            default=2,
            choices=(0, 1, 2),
            help="Keras progress: 0 silent, 1 bar, 2 a line per epoch.",
        )

    train = verbs.add_parser(
        "train",
        help="Train the neural models, then evaluate every model on the test split.",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cli.add_run_arguments(train)
    data_arguments(train)
    progress_argument(train)
    train.set_defaults(handler=command_train)

    evaluate = verbs.add_parser("evaluate", help="Score every model on the test windows; metrics.json, forecast.png.")
    _cli.add_run_arguments(evaluate, training=False)
    evaluate.set_defaults(handler=command_evaluate)

    export = verbs.add_parser(
        "export",
        help="Write a SavedModel, a .tflite or an .onnx model: window in original units -> forecast in original units.",
    )
    _cli.add_run_arguments(export, training=False)
    export.add_argument(
        "--model", help=f"Which trained model, from {', '.join(NEURAL_MODELS)} (default: the first in `models`)."
    )
    export.add_argument(
        "--output",
        help="Export directory (default: WORKDIR/export/MODEL), or with --format litert the .tflite file "
        "(default: WORKDIR/export/MODEL.tflite), with --format onnx the .onnx file (default: WORKDIR/export/MODEL.onnx).",
    )
    _litert.add_format_arguments(export)
    export.set_defaults(handler=command_export)

    benchmark = verbs.add_parser(
        "benchmark",
        help="Train and score every model on CO2 (26-week horizon) and El Nino (12 months), ours and Keras's.",
        description="Each series is a run per implementation in WORKDIR/SERIES/IMPLEMENTATION: ours trains every "
        "model, Keras's the models with a Keras built-in layer (rnn, lstm, gru, single-shot and autoregressive), "
        "one model at a time, alternating the implementations. Prints each run's table and, with both, a row per "
        "model: seconds per epoch (first, and the median after it), their ratio keras / ours, epochs run and "
        "MASE. Writes WORKDIR/benchmark.md.",
    )
    _cli.add_run_arguments(benchmark)
    benchmark.add_argument("--only", help=f"Comma-separated subset of {list(BENCHMARK_RUNS)}.")
    benchmark.add_argument(
        "--implementations",
        default="ours,keras",
        help="Comma-separated implementations of the recurrent layers to train, from ours, keras (default: both).",
    )
    progress_argument(benchmark)
    benchmark.set_defaults(handler=command_benchmark)

    variants = verbs.add_parser(
        "variants",
        help="Train LSTM and GRU under each option variant (structure, intervals, seeds) on CO2 and El Nino; "
        "print their MASE and interval coverage side by side.",
    )
    _cli.add_run_arguments(variants)
    variants.add_argument("--only", help=f"Comma-separated subset of the variants {list(VARIANTS)}.")
    variants.add_argument("--series", help=f"Comma-separated subset of {list(BENCHMARK_RUNS)}.")
    progress_argument(variants)
    variants.set_defaults(handler=command_variants)
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    _cli.run(main)
