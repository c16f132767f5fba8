"""The `export` verb's `--format` and `--batch-size` flags, and the line printed for a `.tflite` export."""

from zoo.errors import UserError

FORMATS = ("savedmodel", "litert")


def add_format_arguments(parser):
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="savedmodel",
        help="savedmodel (default): a SavedModel directory; litert: one .tflite file for LiteRT "
        "(needs the ai-edge-litert package; see recipes/README.md#exports).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="With --format litert: the fixed batch size the .tflite model takes (default 1).",
    )
    return parser


def batch_size(args):
    """The `.tflite` batch size of `args`; `--batch-size` with the SavedModel format is an error."""
    if args.format != "litert":
        if args.batch_size is not None:
            raise UserError("Received --batch-size with --format savedmodel; it applies to --format litert only.")
        return None
    return 1 if args.batch_size is None else args.batch_size


def summary(report):
    """One line: where the `.tflite` went, its size, its operators and how closely it matched."""
    operators = ", ".join(f"{name} x{count}" for name, count in report["operators"].items())
    clipped = report.get("max_difference_with_converter_cell_clip")
    clip_note = "" if clipped is None else f", {clipped:.2g} with the converter's cell clip of 10"
    return (
        f"exported LiteRT model to {report['path']} ({report['bytes']} bytes; largest difference from the Keras "
        f"model {report['max_difference']:.2g}{clip_note}); operators: {operators}"
    )
