"""Cross-check the from-scratch cells against Keras's built-in cells.

The command over `layers.testing`, which holds the grid and the comparison
(the tests run the same ones): for every setting, the same network built
with our cell and with Keras's, the weights copied across, the outputs,
states and gradients compared. It lives in recipes/ with the other commands
and their shared command-line frame (`recipes._cli`), so that the layers
package parses no command lines.

Usage:

    python -m recipes.crosscheck             # the default grid (78 settings, ~40 CPU-seconds)
    python -m recipes.crosscheck --full      # the exhaustive grid (1456 settings, slow)
    python -m recipes.crosscheck --seed 3 --cells lstm,gru
    python -m recipes.crosscheck --dtype-policy mixed_float16

Prints one row per setting and the worst over the grid; exits with status 1
when a difference exceeds the tolerance (1e-5 absolute for outputs and
states, 1e-4 relative for gradients; looser under mixed precision, see
`layers.testing.TOLERANCES`).
"""

import argparse
import os
import sys

from recipes._cli import comma_separated, run

# `layers.testing` is imported where it is used: importing it loads
# TensorFlow, which reads TF_CPP_MIN_LOG_LEVEL (set under __main__ below) as it loads.
# The flags' choices are spelled here, so that `--help` and a bad flag answer
# at once without loading TensorFlow; a test keeps them equal to
# `layers.testing.CELL_KINDS` and `layers.testing.TOLERANCES`.
CELL_KINDS = ("simple_rnn", "lstm", "gru", "gru_reset_before")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def format_table(comparisons):
    """The table of results and the worst row, as text."""
    from layers.testing import TOLERANCES

    width = max(len(c.setting.label()) for c in comparisons)
    lines = [
        f"dtype policy: {comparisons[0].dtype_policy}",
        f"{'setting':<{width}}  {'max abs output diff':>19}  {'max rel grad diff':>17}  ok",
    ]
    for comparison in comparisons:
        lines.append(
            f"{comparison.setting.label():<{width}}  {comparison.output_difference:>19.3e}  "
            f"{comparison.gradient_difference:>17.3e}  {'yes' if comparison.passed else 'NO'}"
        )
    output_tolerance, gradient_tolerance = TOLERANCES[comparisons[0].dtype_policy]
    worst_output = max(comparisons, key=lambda c: c.output_difference)
    worst_gradient = max(comparisons, key=lambda c: c.gradient_difference)
    failures = sum(not c.passed for c in comparisons)
    lines += [
        "",
        f"settings: {len(comparisons)}, gradient tensors compared: "
        f"{sum(c.gradient_count for c in comparisons)}, failures: {failures}",
        f"worst output/state difference: {worst_output.output_difference:.3e} "
        f"(tolerance {output_tolerance:.3g} absolute) at: {worst_output.setting.label()}",
        f"worst gradient difference:     {worst_gradient.gradient_difference:.3e} "
        f"(tolerance {gradient_tolerance:.3g} relative) at: {worst_gradient.setting.label()}",
    ]
    return "\n".join(lines)


def parse_arguments(argv):
    """The parsed command line; bad values raise UserError naming the flag."""
    parser = argparse.ArgumentParser(
        prog="python -m recipes.crosscheck",
        description="Compare the from-scratch cells with Keras's built-in cells "
        "(outputs, states and gradients) over a grid of settings.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights, inputs and projections (default 0).")
    parser.add_argument(
        "--full",
        action="store_true",
        help="Run the exhaustive grid (1456 settings, about 15 CPU-minutes) instead of the default one.",
    )
    parser.add_argument(
        "--cells",
        default=",".join(CELL_KINDS),
        help=f"Comma-separated cell kinds to check (default: {','.join(CELL_KINDS)}).",
    )
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=DTYPE_POLICIES,
        help="Keras global dtype policy of both sides (default float32); the tolerances follow the policy's precision.",
    )
    args = parser.parse_args(argv)
    args.cells = comma_separated("--cells", args.cells, CELL_KINDS)
    return args


def main(argv=None):
    """Run the grid named by the command line; return the exit status (1: a setting failed)."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    import tensorflow as tf

    from layers.testing import compare, default_grid, full_grid

    # One tf.function per graph setting is the point; TF's retracing advice is noise here.
    tf.get_logger().setLevel("ERROR")
    grid = full_grid(args.cells) if args.full else default_grid(args.cells)
    comparisons = [compare(setting, seed=args.seed, dtype_policy=args.dtype_policy) for setting in grid]
    print(format_table(comparisons))
    return 0 if all(c.passed for c in comparisons) else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    run(main)
