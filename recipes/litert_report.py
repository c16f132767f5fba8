"""What quantizing the LiteRT exports costs, and how fast each export runs: the tables of recipes/README.md#exports.

    python -m recipes.litert_report quantization --char-lm runs/shakespeare --forecast runs/co2 \\
        --sentiment runs/rt --class-file pos=rt-polarity.pos --class-file neg=rt-polarity.neg
    python -m recipes.litert_report latency --char-lm runs/shakespeare --forecast runs/co2 --sentiment runs/rt

`quantization` exports each trained run as a float, a dynamic-range and an
int8 `.tflite` model and scores each, and the Keras model, on the run's own
held-out data: the char LM's validation text (nats/char, rows of
`--row-length` characters each read from a zero state), the sentiment run's
test split (accuracy), the forecaster's test windows (MASE). `latency` times
the SavedModel, the float and the int8 `.tflite` model and the ONNX model
(ONNX Runtime) on one CPU thread: one whole sequence (`serving_default`) and
one time step (`step`; the ONNX export has none), the median of `--repeats`
alternated rounds. Exports go to a temporary directory.
"""

import argparse
import tempfile

from recipes import _cli
from recipes.sentiment import _class_file_pairs
from zoo.errors import UserError

QUANTIZE = ("none", "dynamic", "int8")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.litert_report", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, help_text in (
        ("quantization", "Quality and size of the float, dynamic-range and int8 .tflite exports."),
        ("latency", "Per-sequence and per-step latency of the SavedModel, .tflite and ONNX exports, one thread."),
    ):
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        sub.add_argument("--char-lm", metavar="WORKDIR", help="A trained char_lm run (its text as it trained on).")
        sub.add_argument("--forecast", metavar="WORKDIR", help="A trained forecast run (default data: CO2).")
        sub.add_argument("--forecast-model", default="lstm", help="The forecast run's model (default lstm).")
        sub.add_argument("--sentiment", metavar="WORKDIR", help="A trained sentiment run (train/test split).")
        sub.add_argument(
            "--class-file", action="append", default=[], metavar="NAME=PATH", help="The sentiment run's class files."
        )
    quantization = verbs.choices["quantization"]
    quantization.add_argument("--row-length", type=int, default=500, help="Characters per char LM row (default 500).")
    latency = verbs.choices["latency"]
    latency.add_argument("--repeats", type=int, default=15, help="Alternated rounds; the median is printed.")
    latency.add_argument("--calls", type=int, default=20, help="Calls per round (default 20).")
    latency.add_argument("--length", type=int, default=200, help="Characters of the char LM sequence (default 200).")
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from recipes import _litert_measure as measure

    if not (args.char_lm or args.forecast or args.sentiment):
        raise UserError("Received no run; expected --char-lm, --forecast and/or --sentiment.")
    with tempfile.TemporaryDirectory() as directory:
        if args.verb == "quantization":
            rows = []
            if args.char_lm:
                rows.append(measure.char_lm_quality(args.char_lm, directory, args.row_length))
            if args.sentiment:
                pairs = _class_file_pairs(args.class_file)
                rows.append(measure.sentiment_quality(args.sentiment, pairs, directory))
            if args.forecast:
                rows.append(measure.forecast_quality(args.forecast, args.forecast_model, directory))
            print(measure.quality_table(rows))
        else:
            rows = []
            if args.char_lm:
                rows += measure.char_lm_latency(args.char_lm, directory, args.length, args.repeats, args.calls)
            if args.forecast:
                rows += measure.forecast_latency(
                    args.forecast, args.forecast_model, directory, args.repeats, args.calls
                )
            if args.sentiment:
                rows += measure.sentiment_latency(
                    args.sentiment, _class_file_pairs(args.class_file), directory, args.repeats, args.calls
                )
            print(measure.latency_table(rows))
    return 0


if __name__ == "__main__":
    _cli.run(main)
