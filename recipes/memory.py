"""Long-range memory: how far back can each model remember and learn?

Measures four classic claims on this project's own layers:

1. Length ladder. For each T, every model (our SimpleRNN, LSTM, GRU and a
   causal dilated convolution, at matched parameter counts) trains for the
   same number of batches on the adding problem and the copy-memory task;
   the table gives the test error against the memoryless baseline. A length
   counts as solved when the error is below `solve_fraction` (default 0.1)
   times the baseline.
2. Gradient flow. For each recurrent cell, the norm of d(loss at the last
   step)/d(state at step t), by distance from the last step, at
   initialisation and after training (table and log-scale plot).
3. Truncated BPTT. The adding problem with the first mark a fixed distance d
   before the last step (the second on the last step), trained with
   `bptt_steps` below and above d: when the chunk that holds the last step
   does not reach back to the first mark, no gradient can teach the model to
   store it, and the best it can learn is to report the last value plus 0.5
   (MSE 1/12, half the baseline 1/6).

Usage:

    python -m recipes.memory run --workdir runs/memory            # full study, ~30-40 min on 2 cores
    python -m recipes.memory run --workdir /tmp/m --quick         # every part, tiny, about a minute
    python -m recipes.memory run --workdir runs/memory --resume   # continue an interrupted study
    python -m recipes.memory report --workdir runs/memory         # re-render report.md from metrics.json

The work directory receives config.json, runs/<name>/ (checkpoints and the
result of each training run), metrics.json, report.md and PNG plots
(plots need matplotlib; without it the report says so and keeps the tables).
"""

import argparse
import dataclasses
import os

from recipes import _cli

# The study itself (runs, tables, plots, report) is zoo.memory.study; this
# module parses the command line and prints the study's progress.


def _log(message):
    print(message, flush=True)


def _log_written(workdir, plots, problem):
    written = f" and {', '.join(plots)}" if plots else f" (no plots: {problem})"
    _log(f"wrote {os.path.join(workdir, 'report.md')}{written}")


def _int_list(text):
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _name_list(text):
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    run_parser = verbs.add_parser(
        "run",
        help="Train the length ladders, gradient-flow probes and truncated-BPTT runs; write the report.",
        description="Train every model on the length ladders, probe gradient flow, run the truncated-BPTT "
        "experiment, and write metrics.json, report.md and plots to --workdir. Settings apply in this "
        "order: defaults, --quick, the shortcut flags below, then --set overrides.",
    )
    _cli.add_run_arguments(run_parser)
    run_parser.add_argument(
        "--quick", action="store_true", help="Tiny lengths, models and step counts: a smoke run of every part."
    )
    run_parser.add_argument(
        "--lengths", type=_int_list, help="Adding-problem lengths T, e.g. 25,50,100 (same as --set adding_lengths=...)."
    )
    run_parser.add_argument(
        "--copy-delays", type=_int_list, help="Copy-task delays T, e.g. 10,25 (same as --set copy_delays=...)."
    )
    run_parser.add_argument("--steps", type=int, help="Training batches per run (same as --set train_steps=N).")
    run_parser.add_argument(
        "--models",
        type=_name_list,
        help="Models to compare (default rnn,lstm,gru,conv), from conv and the cells of zoo.cells: rnn, lstm, gru, "
        "layernorm_rnn, layernorm_lstm, layernorm_gru, peephole_lstm, projection_lstm (same as --set models=...).",
    )
    report_parser = verbs.add_parser(
        "report",
        help="Re-render report.md and plots from an existing metrics.json.",
        description="Re-render report.md and the plots from the metrics.json in --workdir.",
    )
    report_parser.add_argument("--workdir", required=True, help="Work directory of an earlier `run`.")
    return parser


def study_config(args):
    """The `StudyConfig` from defaults, --quick, shortcut flags and --set."""
    from zoo import config as config_lib
    from zoo.memory.config import QUICK_STUDY, StudyConfig

    config = StudyConfig()
    if args.quick:
        config = dataclasses.replace(config, **QUICK_STUDY)
    shortcuts = {
        "adding_lengths": args.lengths,
        "copy_delays": args.copy_delays,
        "train_steps": args.steps,
        "models": args.models,
    }
    config = dataclasses.replace(config, **{key: value for key, value in shortcuts.items() if value is not None})
    if args.lengths is not None and config.probe_length not in config.adding_lengths:
        # The profile is tabulated at one trained length; follow the ladder the user chose.
        config = dataclasses.replace(config, probe_length=min(config.adding_lengths, key=lambda t: abs(t - 100)))
    return config_lib.apply_overrides(config, _cli.overrides_with_seed(args))


# --------------------------------------------------------------------- verbs
def run_verb(args):
    from zoo import distribute
    from zoo import workdir as workdir_lib

    config = study_config(args)
    config.validate()
    with workdir_lib.locked(args.workdir, hold=distribute.is_chief()):
        return _run(args, config)


def _run(args, config):
    from zoo import distribute
    from zoo import workdir as workdir_lib
    from zoo.files import atomic_write_json
    from zoo.memory import study as memory_study

    workdir_lib.refuse_existing_run(args.workdir, ("runs",), resume=args.resume, holds="a memory study")
    config = workdir_lib.prepare_workdir(args.workdir, config, resume=args.resume)

    def save(metrics):
        atomic_write_json(os.path.join(args.workdir, "metrics.json"), metrics)
        return memory_study.write_report(metrics, args.workdir)

    def save_partial(metrics):
        if distribute.is_chief():
            save(metrics)

    metrics = memory_study.run_study(
        config, args.workdir, resume=args.resume, strategy=args.strategy, log=_log, on_progress=save_partial
    )
    if distribute.is_chief():
        plots, problem = save(metrics)
        _log_written(args.workdir, plots, problem)
        _log(memory_study.render_report(metrics, plots, problem))
    return 0


def report_verb(args):
    from zoo.errors import UserFileNotFoundError
    from zoo.memory import study as memory_study
    from zoo.memory.metrics_file import read_study_metrics

    path = os.path.join(args.workdir, "metrics.json")
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No metrics.json in {args.workdir!r}; run `python -m recipes.memory run` first.")
    plots, problem = memory_study.write_report(read_study_metrics(path), args.workdir)
    _log_written(args.workdir, plots, problem)
    return 0


def main(argv):
    args = build_parser().parse_args(argv)
    if args.verb == "run":
        return run_verb(args)
    return report_verb(args)


if __name__ == "__main__":
    _cli.run(main)
