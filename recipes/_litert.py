"""The `export` verb's `--format` and `--batch-size` flags, and the line printed for a `.tflite` export."""

from zoo.config import require_int
from zoo.errors import UserError
from zoo.files import check_output_path

FORMATS = ("savedmodel", "litert")

# The largest fixed batch a `.tflite` export takes. The export is checked
# against Keras on whole batches, padded by repeating check rows, so the
# check's memory and time grow with the batch (--batch-size 99999999999
# asked NumPy for 2.9 TiB); a model run on a device reads one or a few
# inputs at a time.
MAX_BATCH_SIZE = 4096


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
        help=f"With --format litert: the fixed batch size the .tflite model takes, 1 to {MAX_BATCH_SIZE} (default 1).",
    )
    return parser


def batch_size(args):
    """The `.tflite` batch size of `args`; `--batch-size` with the SavedModel format is an error."""
    if args.format != "litert":
        if args.batch_size is not None:
            raise UserError("Received --batch-size with --format savedmodel; it applies to --format litert only.")
        return None
    if args.batch_size is None:
        return 1
    # The exports refuse a batch size below 1 themselves (naming `batch_size`).
    expected = f"an integer from 1 to {MAX_BATCH_SIZE:,}"
    return require_int("--batch-size", args.batch_size, minimum=None, maximum=MAX_BATCH_SIZE, expected=expected)


def check_path(path, flag, export_format):
    """A `UserError` naming `flag` if the export could not be written at `path` (None: the default path)."""
    if path is None:
        return
    if export_format == "litert":
        check_output_path(path, flag, "a path for the .tflite file", is_file=True)
    else:
        check_output_path(path, flag, "a directory for the SavedModel")


def summary(report):
    """One line: where the `.tflite` went, its size, its operators and how closely it matched."""
    operators = ", ".join(f"{name} x{count}" for name, count in report["operators"].items())
    clipped = report.get("max_difference_with_converter_cell_clip")
    clip_note = "" if clipped is None else f", {clipped:.2g} with the converter's cell clip of 10"
    return (
        f"exported LiteRT model to {report['path']} ({report['bytes']} bytes; largest difference from the Keras "
        f"model {report['max_difference']:.2g}{clip_note}); operators: {operators}"
    )
