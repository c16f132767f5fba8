"""Character language model: train a recurrent model on text and see what it learned.

    python -m recipes.char_lm train --workdir runs/char_lm            # embedded text, offline
    python -m recipes.char_lm train --workdir runs/shakespeare --text tinyshakespeare.txt --set max_minutes=30
    python -m recipes.char_lm evaluate --workdir runs/shakespeare
    python -m recipes.char_lm sample --workdir runs/shakespeare --prompt "ROMEO:" --length 300
    python -m recipes.char_lm export --workdir runs/shakespeare
    python -m recipes.char_lm baselines --text tinyshakespeare.txt
    python -m recipes.char_lm benchmark --workdir runs/bench --text tinyshakespeare.txt --set epochs=3

The corpus is a UTF-8 file (--text), a TensorFlow Datasets corpus (--tfds), or
by default the English help text shipped with CPython (pydoc_data.topics).
The last `validation_fraction` of it (by position) is validation. Training
reads the text as `batch_size` contiguous streams, `seq_len` characters at a
time, carrying the recurrent state across batches (truncated BPTT), and
reports validation nats/char, bits/char and perplexity each epoch next to
Markov (interpolated Kneser-Ney) baselines scored on the same characters.
`--set implementation=keras` builds the same model with Keras's LSTM (GRU,
SimpleRNN); `benchmark` trains ours and Keras's side by side.
"""

import argparse
import dataclasses
import json
import os
import sys

from recipes import _cli, _litert, _onnx
from zoo.errors import UserError


def _add_source_arguments(parser):
    group = parser.add_argument_group("corpus (default: the embedded pydoc_data.topics text)")
    group.add_argument("--text", metavar="PATH", help="A UTF-8 text file to learn from.")
    group.add_argument("--tfds", metavar="NAME", help="A TensorFlow Datasets text corpus, e.g. tiny_shakespeare.")
    group.add_argument("--tfds-split", default="train", help="TFDS split whose texts are joined (default: train).")
    group.add_argument("--data-dir", help="TensorFlow Datasets data directory.")
    group.add_argument(
        "--download", action="store_true", help="Let TensorFlow Datasets download the corpus if it is missing."
    )


def _source(args):
    from zoo.char_lm.data import TextSource

    if not (args.text or args.tfds) and (args.data_dir or args.download):
        raise UserError("--data-dir and --download only apply with --tfds NAME.")
    return TextSource(
        text_path=os.path.abspath(args.text) if args.text else None,
        tfds_name=args.tfds,
        tfds_split=args.tfds_split,
        data_dir=args.data_dir,
        download=args.download,
    )


def _has_source(args):
    return bool(args.text or args.tfds)


def _config(args):
    from zoo import config as config_lib
    from zoo.char_lm import CharLMConfig

    return config_lib.apply_overrides(CharLMConfig(), _cli.overrides_with_seed(args))


def config_help(config_class):
    """One line per config field: name, default and the comment beside it in the source."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(config_class).splitlines():
        match = re.match(r"\s+(\w+):[^#]*#\s*(.*)", line)
        if match:
            comments[match.group(1)] = match.group(2)
    defaults = config_class()
    return "\n".join(
        f"  {field.name}={getattr(defaults, field.name)!r}: {comments.get(field.name, '')}"
        for field in dataclasses.fields(config_class)
    )


def build_parser():
    from zoo.char_lm import CharLMConfig
    from zoo.char_lm.evaluate import MAX_SAMPLE_LENGTH

    fields = "config fields for --set KEY=VALUE (default: meaning):\n" + config_help(CharLMConfig)
    parser = _cli.parser("python -m recipes.char_lm", __doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser(
        "train",
        help="Train a model, report validation nats/bits per char and perplexity beside Markov baselines.",
        description="Train a character language model; print the validation curve and the Markov table.",
        epilog=fields,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cli.add_run_arguments(train)
    _add_source_arguments(train)
    train.add_argument("--quiet", action="store_true", help="No progress bar.")
    train.add_argument("--no-tensorboard", action="store_true", help="Do not write TensorBoard logs.")

    evaluate = verbs.add_parser(
        "evaluate",
        help="Stream-evaluate a checkpoint on the validation text.",
        description="Validation nats/char, bits/char and perplexity of a trained checkpoint, read as "
        "streams with the state carried (as during training). The corpus defaults to the one trained on.",
    )
    _cli.add_run_arguments(evaluate, training=False)
    _add_source_arguments(evaluate)
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default="best", help="Which checkpoint.")

    sample = verbs.add_parser(
        "sample",
        help="Generate text from a checkpoint, one character at a time.",
        description="Read the prompt once, then sample one character at a time carrying the state.",
    )
    _cli.add_run_arguments(sample, training=False)
    sample.add_argument("--prompt", default="\n", help="Text to start from (non-empty; default: a newline).")
    sample.add_argument(
        "--length",
        type=int,
        default=500,
        help=f"Characters to generate, 0 to {MAX_SAMPLE_LENGTH:,} (default 500). The limit is about a whole "
        "corpus; generation is one character at a time (the default model made about 4,000 per second on "
        "2 CPU cores, so a million take minutes).",
    )
    sample.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="Softmax temperature, a finite number >= 0; 0 picks the most likely (default 0.8).",
    )
    sample.add_argument(
        "--top-k", type=int, default=0, help="Sample among the k most likely only (0, or k >= the vocabulary: all)."
    )
    sample.add_argument("--checkpoint", choices=("best", "last"), default="best", help="Which checkpoint.")

    export = verbs.add_parser(
        "export",
        help="Write a SavedModel with `generate` and `next_char_log_probs` signatures, or a .tflite or ONNX model.",
        description="SavedModel signatures (no project import needed to use them): "
        "generate(prompt: string, length: int32, temperature: float32, seed: int32) -> {text: string}; "
        "next_char_log_probs(prompt: string) -> {characters: [V] string, log_probs: [V] float32}, "
        "where characters[0] is '' and stands for any character unseen in training. "
        "With --format litert: one .tflite file, serving_default(character_ids: int32[batch, time]) -> "
        "{log_probs: [batch, time, V] float32}, the characters in its metadata (recipes/char_lm.md#export). "
        "With --format onnx: one .onnx file taking character_ids int32[batch, time] to log_probs, the same way.",
    )
    _cli.add_run_arguments(export, training=False)
    export.add_argument(
        "--path",
        help="Export directory (default: WORKDIR/export), or with --format litert the .tflite file "
        "(default: WORKDIR/export.tflite), with --format onnx the .onnx file (default: WORKDIR/export.onnx).",
    )
    export.add_argument("--checkpoint", choices=("best", "last"), default="best", help="Which checkpoint.")
    _litert.add_format_arguments(export)

    baselines = verbs.add_parser(
        "baselines",
        help="Markov (interpolated Kneser-Ney) baselines on the validation text, no training.",
        description="Validation nats/char of Markov models of the orders in `markov_orders`, on the same "
        "characters a model with this config is scored on.",
    )
    baselines.epilog = fields
    baselines.formatter_class = argparse.RawDescriptionHelpFormatter
    _cli.add_run_arguments(baselines, workdir_required=False, training=False)
    _add_source_arguments(baselines)

    benchmark = verbs.add_parser(
        "benchmark",
        help="Train the model with our layers and with Keras's, side by side: seconds per epoch, validation loss.",
        description="Ours against Keras's: one model per implementation from the same config, corpus and seed "
        "(the same initial weights), trained in one process an epoch at a time, alternating which goes first. "
        "Prints a row per implementation (first epoch, which includes tracing; median seconds per epoch after "
        "it; final and best validation nats/char), a row per epoch, and the time ratio keras / ours. Writes "
        "WORKDIR/benchmark.json. No checkpoints: `train` makes a run to keep.",
        epilog=fields,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cli.add_run_arguments(benchmark, training=False)
    _add_source_arguments(benchmark)
    benchmark.add_argument(
        "--implementations",
        default="ours,keras",
        help="Comma-separated implementations to train, from ours, keras (default: ours,keras).",
    )
    return parser


def main(argv):
    args = build_parser().parse_args(argv)
    if args.verb == "train":
        return _train(args)
    if args.verb == "evaluate":
        return _evaluate(args)
    if args.verb == "sample":
        return _sample(args)
    if args.verb == "export":
        return _export(args)
    if args.verb == "benchmark":
        return _benchmark(args)
    return _baselines(args)


def _train(args):
    from zoo import distribute
    from zoo.char_lm import evaluate as evaluate_lib
    from zoo.char_lm import train as train_lib

    config = _config(args)
    strategy = distribute.get_strategy(args.strategy)
    metrics = train_lib.train_and_evaluate(
        config,
        args.workdir,
        source=_source(args),
        resume=args.resume,
        strategy=strategy,
        verbose=0 if args.quiet else "auto",
        is_chief=distribute.is_chief(),
        tensorboard=None if not args.no_tensorboard else False,
        log=print,  # --quiet only hides the progress bar
    )
    print(f"corpus: {metrics['corpus']} ({metrics['characters']} characters, vocabulary {metrics['vocabulary_size']})")
    print("epoch  seconds  val nats/char  bits/char  perplexity")
    for row in metrics["curve"]:
        if "val_nats_per_char" in row:
            print(
                f"{row['epoch']:>5}  {row['seconds']:>7.0f}  {row['val_nats_per_char']:>13.4f}  "
                f"{row['val_bits_per_char']:>9.4f}  {row['val_perplexity']:>10.3f}"
                + ("  (stopped mid-epoch)" if row.get("stopped_mid_epoch") else "")
            )
    print(
        f"training time: {metrics['wall_seconds']:.0f} s this session"
        + (" (time budget reached)" if metrics["time_budget_exhausted"] else "")
    )
    print(f"validation characters scored: {metrics['validation_characters_scored']}")
    print(evaluate_lib.results_table(metrics))
    print(evaluate_lib.verdict(metrics))
    if distribute.is_chief():
        print(f"metrics: {os.path.join(args.workdir, train_lib.METRICS_FILE)}")
    else:
        print("metrics, checkpoints and logs are written by the chief worker")
    if not metrics["tensorboard_logs"] and not args.no_tensorboard:
        print("note: no TensorBoard logs (the tensorboard package is not installed)")
    return 0


def _evaluate(args):
    from zoo.char_lm import evaluate as evaluate_lib

    if args.overrides or args.seed is not None:
        raise UserError("evaluate uses the config saved in --workdir; --set/--seed do not apply.")
    source = _source(args) if _has_source(args) else None
    result = evaluate_lib.evaluate(args.workdir, which=args.checkpoint, source=source)
    print(json.dumps(result, indent=2))
    return 0


def _sample(args):
    from zoo.char_lm import evaluate as evaluate_lib

    if args.overrides:
        raise UserError("sample uses the config saved in --workdir; --set does not apply (use --seed).")
    seed = 0 if args.seed is None else args.seed
    # Checked here first, so that the messages name the flags.
    evaluate_lib.check_sample_arguments(args.length, args.temperature, args.top_k, seed, flag_names=True)
    text, characters_per_second = evaluate_lib.sample(
        args.workdir,
        prompt=args.prompt,
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=seed,
        which=args.checkpoint,
    )
    sys.stdout.write(args.prompt + text + "\n")
    print(f"[{args.length} characters at {characters_per_second:.0f} characters/s]", file=sys.stderr)
    return 0


def _export(args):
    from zoo.char_lm import export as export_lib

    if args.overrides or args.seed is not None:
        raise UserError("export uses the checkpoint in --workdir; --set/--seed do not apply.")
    batch_size = _litert.batch_size(args)
    _litert.check_path(args.path, "--path", args.format)
    if args.format == "litert":
        report = export_lib.export_litert(
            args.workdir,
            path=args.path,
            which=args.checkpoint,
            batch_size=batch_size,
            quantize=_litert.quantize(args),
            step=args.step,
        )
        print(_litert.summary(report))
        return 0
    if args.format == "onnx":
        print(_onnx.summary(export_lib.export_onnx(args.workdir, path=args.path, which=args.checkpoint)))
        return 0
    path = export_lib.export(args.workdir, path=args.path, which=args.checkpoint)
    print(f"exported SavedModel to {path} (signatures: generate, next_char_log_probs, step)")
    return 0


def _baselines(args):
    from zoo.char_lm import baselines as baselines_lib
    from zoo.char_lm import data as data_lib
    from zoo.char_lm import evaluate as evaluate_lib
    from zoo.char_lm import train as train_lib

    config = _config(args)
    corpus = train_lib.load_corpus(_source(args), config)
    rows = baselines_lib.baseline_table(corpus, config)
    metrics = {"markov": rows, "config": dataclasses.asdict(config)}
    print(
        f"corpus: {_source(args).description}; validation characters scored: "
        f"{len(data_lib.stream_target_positions(len(corpus.validation_ids), config.batch_size, config.seq_len))}"
    )
    print(evaluate_lib.results_table(metrics))
    if args.workdir:
        from zoo.files import atomic_write_json

        atomic_write_json(os.path.join(args.workdir, "baselines.json"), metrics)
    return 0


def _benchmark(args):
    from zoo import cells
    from zoo.char_lm import benchmark as benchmark_lib

    implementations = _cli.comma_separated("--implementations", args.implementations, cells.IMPLEMENTATIONS)
    config = _config(args)
    benchmark_lib.require_implementations(implementations, config.cell, "--implementations")
    result = benchmark_lib.benchmark(
        config, args.workdir, source=_source(args), implementations=implementations, log=print
    )
    print(
        f"corpus: {result['corpus']} ({result['characters']} characters, vocabulary {result['vocabulary_size']}); "
        f"{config.cell} {config.num_layers}x{config.units}, {result['parameters']:,} parameters"
    )
    print(benchmark_lib.format_benchmark(result))
    print(f"results: {os.path.join(args.workdir, benchmark_lib.BENCHMARK_FILE)}")
    return 0


if __name__ == "__main__":
    _cli.run(main)
