"""The `export` verb's `--format`, `--batch-size`, `--quantize` and `--step` flags, and the line printed for a `.tflite` export.

The line printed for an ONNX export is `recipes._onnx.summary`.
"""

from zoo.config import require_int
from zoo.errors import UserError
from zoo.files import check_output_path
from zoo.litert_quantize import MODES, NONE

FORMATS = ("savedmodel", "litert", "onnx")

# The largest fixed batch a `.tflite` export takes. The export is checked
# against Keras on whole batches, padded by repeating check rows, so the
# check's memory and time grow with the batch (--batch-size 99999999999
# asked NumPy for 2.9 TiB); a model run on a device reads one or a few
# inputs at a time.
MAX_BATCH_SIZE = 4096


def add_format_arguments(parser, step=True):
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="savedmodel",
        help="savedmodel (default): a SavedModel directory; litert: one .tflite file for LiteRT "
        "(needs the ai-edge-litert package); onnx: an ONNX model for ONNX Runtime (needs tf2onnx and "
        "onnxruntime). See recipes/README.md#exports.",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"With --format litert: the fixed batch size the .tflite model takes, 1 to {MAX_BATCH_SIZE} (default 1).",
    )
    parser.add_argument(
        "--quantize",
        choices=MODES,
        default=None,
        help="With --format litert: none (default, float32); dynamic (int8 weights, float activations); int8 "
        "(int8 weights and activations, int16 LSTM cell state, calibrated on the run's training data). "
        "See recipes/README.md#quantized-exports.",
    )
    if step:
        parser.add_argument(
            "--step",
            action="store_true",
            help="With --format litert: add the `step` signature (one time step plus the recurrent states in, the "
            "output plus the new states out), which stores the weights a second time. The SavedModel always has it.",
        )
    return parser


def batch_size(args):
    """The `.tflite` batch size of `args`; a `.tflite` flag with another format is an error."""
    if args.format != "litert":
        given = [
            flag
            for flag, value in (("--batch-size", args.batch_size), ("--quantize", args.quantize))
            if value is not None
        ]
        if getattr(args, "step", False):
            given.append("--step")
        if given:
            raise UserError(f"Received {given[0]} with --format {args.format}; it applies to --format litert only.")
        return None
    if args.batch_size is None:
        return 1
    # The exports refuse a batch size below 1 themselves (naming `batch_size`).
    expected = f"an integer from 1 to {MAX_BATCH_SIZE:,}"
    return require_int("--batch-size", args.batch_size, minimum=None, maximum=MAX_BATCH_SIZE, expected=expected)


def check_path(path, flag, export_format, onnx_directory=False):
    """A `UserError` naming `flag` if the export could not be written at `path` (None: the default path).

    An ONNX export is one `.onnx` file, or with `onnx_directory` a directory
    (the sentiment model and its vocabulary).
    """
    if path is None:
        return
    if export_format == "litert":
        check_output_path(path, flag, "a path for the .tflite file", is_file=True)
    elif export_format == "onnx" and not onnx_directory:
        check_output_path(path, flag, "a path for the .onnx file", is_file=True)
    elif export_format == "onnx":
        check_output_path(path, flag, "a directory for the ONNX model and its vocabulary")
    else:
        check_output_path(path, flag, "a directory for the SavedModel")


def quantize(args):
    """The `--quantize` mode of `args` (none when not given)."""
    return NONE if args.quantize is None else args.quantize


def summary(report):
    """One line: where the `.tflite` went, its size, its operators and how closely it matched."""
    operators = ", ".join(f"{name} x{count}" for name, count in report["operators"].items())
    clipped = report.get("max_difference_with_converter_cell_clip")
    clip_note = "" if clipped is None else f", {clipped:.2g} with the converter's cell clip of 10"
    step = report.get("max_step_difference")
    step_note = "" if step is None else f", step signature {step:.2g}"
    quantized = "" if report.get("quantize", NONE) == NONE else f"{report['quantize']}-quantized "
    return (
        f"exported {quantized}LiteRT model to {report['path']} ({report['bytes']} bytes; largest difference from the "
        f"Keras model {report['max_difference']:.2g}{step_note}{clip_note}); operators: {operators}"
    )
