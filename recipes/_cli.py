"""The command-line frame that every recipe shares.

`python -m recipes.<name> <verb> [--flags]`: each verb is a sub-command with
`--help`. `run` turns the errors a user can cause (`zoo.errors.UserError`:
bad arguments, config values, missing or unreadable files) into one line on
stderr and exit status 2, and a diverged run into one line and status 1.
Anything else is a bug, or a failure of the machine, and keeps its traceback
(status 1), so that it can be reported and fixed rather than mistaken for
bad input.
"""

import argparse
import os
import sys

from zoo.errors import UserError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_run_arguments(parser, *, workdir_required=True, training=True):
    """Add the flags shared by the recipes' verbs."""
    parser.add_argument(
        "--workdir",
        required=workdir_required,
        help="Directory for config.json, checkpoints, logs, metrics.json, plots and exports.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config field (repeatable); unknown keys and wrong types are an error.",
    )
    parser.add_argument("--seed", type=int, default=None, help="Random seed (same as --set seed=N).")
    if training:
        parser.add_argument(
            "--resume", action="store_true", help="Continue the interrupted run in --workdir from its last backup."
        )
        parser.add_argument(
            "--strategy",
            choices=("default", "mirrored", "multi-worker"),
            default="default",
            help="tf.distribute strategy: default (one device), mirrored (all local devices), "
            "multi-worker (MultiWorkerMirroredStrategy configured by TF_CONFIG).",
        )
    return parser


def overrides_with_seed(args):
    """The --set overrides, with --seed appended as seed=N."""
    overrides = list(args.overrides or [])
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    return overrides


def comma_separated(flag, text, choices):
    """The names in `text` ("a,b"), each one of `choices`; else a UserError naming `flag`."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names or any(name not in choices for name in names):
        raise UserError(
            f"Received an invalid value for argument `{flag}`: {text!r}; expected a "
            f"comma-separated subset of {', '.join(choices)}."
        )
    return names


def _diverged(error):
    # Looked up only if training ran, so that a bad flag is reported
    # without importing TensorFlow first.
    training = sys.modules.get("zoo.training")
    return training is not None and isinstance(error, training.TrainingDiverged)


def run(main, argv=None):
    """Call `main(argv)`; print user errors as one line and exit non-zero.

    A `UserError` (bad arguments, config values and files) exits with status
    2, a diverged training run with 1, an interrupt with 130; `main`'s own
    return value otherwise. Any other exception propagates with its
    traceback, and Python exits with status 1.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint and exports are kept", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:
        if _diverged(error):
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        if not isinstance(error, UserError):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(code or 0)


def parser(prog, description):
    """An `argparse.ArgumentParser` whose sub-commands are the verbs."""
    result = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return result
