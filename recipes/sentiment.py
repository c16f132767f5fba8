"""Sentiment classification with our recurrent layers, against a bag-of-n-grams baseline.

    python -m recipes.sentiment train    --workdir runs/rt --class-file pos=rt-polarity.pos --class-file neg=rt-polarity.neg
    python -m recipes.sentiment train    --workdir runs/rt-cv --class-file ... --folds 10
    python -m recipes.sentiment evaluate --workdir runs/rt --class-file ...        (the run's test split, or --split all)
    python -m recipes.sentiment export   --workdir runs/rt                          (SavedModel: strings -> probabilities)
    python -m recipes.sentiment predict  --workdir runs/rt "a gorgeous film" "a tedious mess"
    python -m recipes.sentiment benchmark --workdir runs/bench --class-file ... --folds 10 --cells lstm,gru
    (the benchmark trains each cell with our layers and with Keras's: --implementations ours,keras)

Data: a CSV/TSV/JSON Lines table (--data, --text-column, --label-column), one
file per class (--class-file NAME=PATH, one example per line), or TensorFlow
Datasets (--tfds imdb_reviews --data-dir DIR [--download]). There is no
built-in data set. The model: TextVectorization -> Embedding(mask_zero) ->
our LSTM/GRU/SimpleRNN (bidirectional, stacked) -> masked pooling -> softmax.
The baseline: logistic regression on unigram+bigram features.

Quality options (--set): adversarial=E (adversarial training: each step also
fits the word embeddings moved E times their norm against the model),
word_dropout=P (training words become unknown),
spatial_dropout=P (whole embedding dimensions dropped), ensemble=N (N seeded
models, probabilities averaged; the table also shows member 1 alone),
member_validation=disjoint (each ensemble member stops early on its own
held-out slice, so the members together train on every example),
baseline_ensemble=N (the baseline averaged over N members on the same splits),
ngram_head=true (hybrid: the baseline's linear n-gram logit added to the
recurrent logit, trained jointly), monitor=val_accuracy (early stopping and
the kept epoch), bucket_by_length=true (length-sorted training batches).
"""

import dataclasses
import os
import sys

from recipes import _cli, _litert, _onnx
from zoo.errors import UserError, UserFileNotFoundError

DESCRIPTION = __doc__

# Published accuracies on the Movie Review sentence polarity data (rt-polarity),
# 10-fold cross-validation, no pretrained word vectors.
PUBLISHED_RT_POLARITY = {"CNN-rand": 76.1, "NBSVM-bi": 79.4}

NO_DATA_MESSAGE = """no data given. The sentiment recipe has no built-in data set; give one of:
  --class-file NAME=PATH (at least twice)  one file per class, one example per line. For example the
      Movie Review sentence polarity data (rt-polarity.pos / rt-polarity.neg, 5331 sentences each), from
      "sentence polarity dataset v1.0" at https://www.cs.cornell.edu/people/pabo/movie-review-data/ :
      --class-file pos=rt-polarity.pos --class-file neg=rt-polarity.neg
  --data FILE (.csv, .tsv or .jsonl) --text-column NAME --label-column NAME
  --tfds imdb_reviews --data-dir DIR [--download]  TensorFlow Datasets (IMDB reviews, 25k train / 25k test);
      --download fetches and prepares it once from ai.stanford.edu/~amaas/data/sentiment/ into DIR.
Example: python -m recipes.sentiment train --workdir runs/rt --class-file pos=rt-polarity.pos --class-file neg=rt-polarity.neg"""


def add_data_arguments(parser):
    group = parser.add_argument_group("data (exactly one source)")
    group.add_argument("--data", help="A .csv, .tsv or .jsonl file with a text column and a label column.")
    group.add_argument(
        "--format", choices=("csv", "tsv", "jsonl"), help="Format of --data (default: from its extension)."
    )
    group.add_argument("--text-column", default="text", help="Column (or JSON field) holding the text (default: text).")
    group.add_argument(
        "--label-column", default="label", help="Column (or JSON field) holding the label (default: label)."
    )
    group.add_argument(
        "--class-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="One file per class, one example per line (repeat for each class).",
    )
    group.add_argument(
        "--tfds", metavar="NAME", help="A TensorFlow Datasets text classification set, e.g. imdb_reviews."
    )
    group.add_argument("--tfds-split", default="train", help="TFDS split to read (default: train; e.g. train+test).")
    group.add_argument("--data-dir", help="TFDS data directory (default: ~/tensorflow_datasets).")
    group.add_argument("--download", action="store_true", help="Allow TFDS to download and prepare the data set.")
    group.add_argument(
        "--encoding",
        default="utf-8",
        help="Text encoding of --data/--class-file (default utf-8; e.g. cp1252, latin-1). "
        "Undecodable bytes are an error naming the file and byte offset.",
    )
    group.add_argument(
        "--labels",
        help="Comma-separated class names in output order; any other label value is an error "
        "(default: the sorted distinct labels).",
    )


def _class_file_pairs(values):
    pairs = []
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise UserError(
                f"Received `--class-file {value}`; expected NAME=PATH, e.g. --class-file pos=rt-polarity.pos."
            )
        pairs.append((name.strip(), path.strip()))
    return pairs


def load_data(args, class_names=None):
    """The `TextDataset` chosen by the data flags; `class_names` fixes the label order."""
    from zoo import sentiment

    if args.labels:
        given = tuple(name.strip() for name in args.labels.split(",") if name.strip())
        if class_names is not None and tuple(class_names) != given:
            raise UserError(f"Received --labels {list(given)} but the model was trained on {list(class_names)}.")
        class_names = given
    sources = [
        flag
        for flag, value in (("--data", args.data), ("--class-file", args.class_file), ("--tfds", args.tfds))
        if value
    ]
    if not sources:
        raise UserError(NO_DATA_MESSAGE)
    if len(sources) > 1:
        raise UserError(f"Received several data sources ({', '.join(sources)}); expected exactly one.")
    if args.data:
        return sentiment.load_table(
            args.data, args.text_column, args.label_column, args.format, args.encoding, class_names
        )
    if args.class_file:
        return sentiment.load_class_files(_class_file_pairs(args.class_file), args.encoding, class_names)
    return sentiment.load_tfds(
        args.tfds, data_dir=args.data_dir, download=args.download, split=args.tfds_split, class_names=class_names
    )


def _config(args, base=None):
    from zoo import config as config_lib
    from zoo.sentiment import SentimentConfig

    return config_lib.apply_overrides(base or SentimentConfig(), _cli.overrides_with_seed(args))


def _log(args):
    return (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))


def _verbose(args):
    return 0 if args.quiet else 2


def _print_metrics(report):
    from zoo.sentiment import format_table

    print(format_table(report))
    for name, metrics in report["models"].items():
        print(
            f"{name} confusion matrix (rows true {metrics['class_names']}, columns predicted): {metrics['confusion_matrix']}"
        )


def _input_fingerprints(args, dataset):
    """Each data file's fingerprint (--data, every --class-file), or the loaded examples' for --tfds."""
    from zoo import workdir as workdir_lib

    if args.data:
        return {f"the data file {args.data!r}": workdir_lib.fingerprint_file(args.data)}
    if args.class_file:
        return {
            f"the class file {name}={path!r}": workdir_lib.fingerprint_file(path)
            for name, path in _class_file_pairs(args.class_file)
        }
    examples = {"texts": list(dataset.texts), "labels": dataset.labels.tolist(), "classes": list(dataset.class_names)}
    return {f"the examples of {dataset.source}": workdir_lib.fingerprint_json(examples)}


def command_train(args, cells=None, implementations=None):
    from zoo import cells as cell_names
    from zoo import workdir as workdir_lib
    from zoo.config import require_int
    from zoo.distribute import is_chief

    config = _config(args)
    config.validate()
    cell_names.require_proj_units(config.proj_units, cells or [config.cell], "--cells" if cells else "cell")
    if args.folds is not None:  # `--folds 0` used to mean "no cross-validation", silently
        require_int("--folds", args.folds, minimum=2, expected="an integer >= 2 (omit it for one train/test split)")
    if args.max_folds is not None:
        require_int("--max-folds", args.max_folds)
    with workdir_lib.locked(args.workdir, hold=is_chief()):
        return _train(args, config, cells, implementations)


def _comparison_pairs(config, cells):
    """`(label, our model's name, Keras's model's name)` for each of `cells` with a Keras built-in layer."""
    from zoo import cells as cell_names

    pairs = []
    for cell in cells:
        if cell_names.has_keras_layer(cell):
            ours = dataclasses.replace(config, cell=cell, implementation="ours").model_name
            pairs.append((ours, ours, dataclasses.replace(config, cell=cell, implementation="keras").model_name))
    return pairs


def _train(args, config, cells, implementations):
    from zoo import sentiment
    from zoo.distribute import get_strategy, is_chief
    from zoo.files import atomic_write_json
    from zoo.workdir import prepare_workdir, refuse_existing_run

    dataset = load_data(args)
    dataset.require_classes(2)
    dataset.require_text()
    # A new cross-validation must not mix with the folds of an earlier one.
    refuse_existing_run(args.workdir, ("folds",), resume=args.resume)
    config = prepare_workdir(args.workdir, config, resume=args.resume, inputs=_input_fingerprints(args, dataset))
    strategy = get_strategy(args.strategy)
    common = dict(
        include_baseline=not args.no_baseline,
        verbose=_verbose(args),
        strategy=strategy,
        log=_log(args),
        resume=args.resume,
    )
    if cells is not None:
        common["cells"] = cells
    if implementations is not None:
        common["implementations"] = implementations
    print(f"data: {len(dataset)} examples from {dataset.source}; classes {dataset.class_counts()}", flush=True)
    if args.folds:
        report = sentiment.cross_validate(config, dataset, args.workdir, args.folds, max_folds=args.max_folds, **common)
    else:
        if args.max_folds is not None:
            raise UserError("Received --max-folds without --folds; expected both (e.g. --folds 10 --max-folds 3).")
        report = sentiment.train_test_split_run(config, dataset, args.workdir, **common)
    report.update(config=dataclasses.asdict(config), data_source=dataset.source, class_names=list(dataset.class_names))
    comparing = implementations is not None and {"ours", "keras"} <= set(implementations)
    if comparing:
        report["ours_against_keras"] = sentiment.compare_implementations(
            report, _comparison_pairs(config, cells or [config.cell])
        )
    if is_chief():
        atomic_write_json(os.path.join(args.workdir, "metrics.json"), report)
    print(report["protocol"])
    if "summary" in report:
        print(sentiment.format_table(report, PUBLISHED_RT_POLARITY if args.published else None))
    else:
        _print_metrics(report)
    if comparing:
        print(
            "ours against Keras's (same folds and seeds; test accuracy in %, mean ± std over folds; seconds per "
            "epoch: training and validation, median of every epoch after a training's first; seconds per fold: "
            "training until early stopping)"
        )
        print(sentiment.format_comparison(report["ours_against_keras"]))
    if is_chief():
        print(f"metrics written to {os.path.join(args.workdir, 'metrics.json')}")
    else:
        print("metrics, checkpoints and logs are written by the chief worker")
    return 0


def _trained_class_names(workdir):
    from zoo.files import read_json

    path = os.path.join(workdir, "metrics.json")
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No metrics.json in {workdir!r}; train a model there first.")
    metrics = read_json(path, kind="metrics file", expected="the metrics.json that `train` wrote")
    names = metrics.get("class_names") if isinstance(metrics, dict) else None
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(name, str) for name in names):
        raise UserError(
            f"The metrics file {path!r} has no list of class names (`class_names`); expected the metrics.json "
            "that `python -m recipes.sentiment train` wrote in this work directory."
        )
    return tuple(names)


def command_evaluate(args):
    from zoo import config as config_lib
    from zoo import sentiment
    from zoo.files import atomic_write_json

    class_names = _trained_class_names(args.workdir)
    config = config_lib.load(sentiment.SentimentConfig, os.path.join(args.workdir, "config.json"))
    dataset = load_data(args, class_names=class_names)
    if args.split == "test":
        _, test_indices = sentiment.stratified_split(dataset.labels, config.test_fraction, config.seed)
        dataset = dataset.subset(test_indices)
    report = {"models": {}, "split": args.split, "data_source": dataset.source}
    for name, baseline in ((config.model_name, False), (config.baseline_name, True)):
        if baseline and not os.path.exists(os.path.join(args.workdir, "baseline", "model.keras")):
            continue
        model = sentiment.load_trained_model(args.workdir, baseline=baseline)
        probabilities = sentiment.predict_probabilities(model, dataset)
        report["models"][name] = sentiment.classification_metrics(dataset.labels, probabilities, class_names)
    path = os.path.join(args.workdir, f"evaluation-{args.split}.json")
    atomic_write_json(path, report)
    print(f"{len(dataset)} examples ({args.split}) from {dataset.source}")
    _print_metrics(report)
    print(f"written to {path}")
    return 0


def _run_split(args):
    """(training texts, held-out test texts) of the run's split of its `--class-file` data."""
    from zoo import config as config_lib
    from zoo import sentiment

    class_names = _trained_class_names(args.workdir)
    config = config_lib.load(sentiment.SentimentConfig, os.path.join(args.workdir, "config.json"))
    dataset = sentiment.load_class_files(_class_file_pairs(args.class_file), class_names=class_names)
    training_indices, test_indices = sentiment.stratified_split(dataset.labels, config.test_fraction, config.seed)
    return [dataset.texts[index] for index in training_indices], [dataset.texts[index] for index in test_indices]


def _calibration_texts(args):
    """The training texts of the run's split of `--class-file` data, for an int8 export; () when not needed."""
    if _litert.quantize(args) != "int8":
        return ()
    if not args.class_file:
        raise UserError(
            "Received --quantize int8 without --class-file; expected the run's class files (NAME=PATH, one per "
            "class) to calibrate on its training texts."
        )
    return _run_split(args)[0]


def command_export(args):
    from zoo import sentiment

    batch_size = _litert.batch_size(args)
    _litert.check_path(args.output, "--output", args.format, onnx_directory=True)
    if args.class_file and args.format != "onnx" and _litert.quantize(args) != "int8":
        raise UserError(
            "Received --class-file with export; it applies to --format litert --quantize int8 and --format onnx only."
        )
    if args.format == "onnx":
        if args.baseline:
            raise UserError("Received --baseline with --format onnx; the ONNX export takes the recurrent model.")
        check_texts = ["a fine film", ""] + (_run_split(args)[1] if args.class_file else [])
        report = sentiment.export_text_classifier_onnx(
            sentiment.load_trained_model(args.workdir),
            _trained_class_names(args.workdir),
            args.output or os.path.join(args.workdir, "onnx"),
            check_texts=check_texts,
        )
        print(_onnx.summary(report))
        return 0
    if args.format == "litert":
        if args.baseline:
            raise UserError("Received --baseline with --format litert; the .tflite export takes the recurrent model.")
        output = args.output or os.path.join(args.workdir, "export.tflite")
        model = sentiment.load_trained_model(args.workdir)
        report = sentiment.export_text_classifier_litert(
            model,
            _trained_class_names(args.workdir),
            output,
            batch_size=batch_size,
            quantize=_litert.quantize(args),
            calibration_texts=_calibration_texts(args),
        )
        print(_litert.summary(report))
        return 0
    output = args.output or os.path.join(args.workdir, "export")
    model = sentiment.load_trained_model(args.workdir, baseline=args.baseline)
    sentiment.export_text_classifier(model, _trained_class_names(args.workdir), output)
    print(
        f"exported SavedModel to {output} (signature serving_default: texts string[batch] -> "
        "probabilities, label, probability, class_names)"
    )
    return 0


def command_predict(args):
    import numpy as np
    import tensorflow as tf

    if not args.sentences:
        raise UserError("Received no sentences; expected one or more quoted sentences after the options.")
    for position, sentence in enumerate(args.sentences, start=1):
        # An empty text gives the model nothing to read: its answer would be the classifier's bias.
        if not sentence.strip():
            raise UserError(
                f"Received an empty sentence (sentence {position}: {sentence!r}); expected text with at least one word."
            )
    if bool(args.workdir) == bool(args.export):
        raise UserError(
            "Received "
            + ("both --workdir and --export" if args.workdir else "neither --workdir nor --export")
            + "; expected exactly one model source."
        )
    texts = tf.constant(args.sentences, dtype=tf.string)
    if args.export:
        if not os.path.isdir(args.export):
            raise UserFileNotFoundError(f"No SavedModel directory at {args.export!r}.")
        outputs = tf.saved_model.load(args.export).signatures["serving_default"](texts=texts)
        probabilities = outputs["probabilities"].numpy()
        class_names = [name.decode("utf-8") for name in outputs["class_names"].numpy()]
    else:
        from zoo import sentiment

        class_names = _trained_class_names(args.workdir)
        model = sentiment.load_trained_model(args.workdir, baseline=args.baseline)
        probabilities = np.asarray(model(texts, training=False))
    for sentence, row in zip(args.sentences, probabilities):
        best = int(np.argmax(row))
        print(f"{class_names[best]}\t{row[best]:.4f}\t{sentence}")
    return 0


def build_parser():
    parser = _cli.parser("python -m recipes.sentiment", DESCRIPTION)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    def add_training_flags(sub, default_folds=None):
        add_data_arguments(sub)
        _cli.add_run_arguments(sub)
        sub.add_argument(
            "--folds",
            type=int,
            default=default_folds,
            help="k-fold stratified cross-validation instead of one train/test split "
            f"(default: {default_folds or 'off'}).",
        )
        sub.add_argument("--max-folds", type=int, help="Run only the first N folds of the k-fold partition (time).")
        sub.add_argument("--no-baseline", action="store_true", help="Skip the bag-of-n-grams baseline.")
        sub.add_argument("--quiet", action="store_true", help="No progress output, only results.")
        sub.add_argument(
            "--published",
            action="store_true",
            help="Add the published rt-polarity accuracies (CNN-rand, NBSVM-bi) to the table.",
        )

    add_training_flags(
        verbs.add_parser(
            "train",
            help="Train the recurrent model and the baseline; report test metrics.",
            description="Train on a stratified split (or --folds k) and write metrics.json.",
        )
    )
    bench = verbs.add_parser(
        "benchmark",
        help="Cross-validate several recurrent cells and the baseline; print the table.",
        description="k-fold cross-validation of each --cells model and the baseline.",
    )
    add_training_flags(bench, default_folds=10)
    bench.add_argument(
        "--cells", default="lstm,gru", help="Comma-separated recurrent cells to compare (default lstm,gru)."
    )
    bench.add_argument(
        "--implementations",
        default="ours,keras",
        help="Comma-separated implementations of the recurrent layers, from ours, keras (default: both). Keras's "
        "models (named ...-keras) are trained for the cells with a Keras built-in layer (rnn, lstm, gru), in each "
        "fold beside ours, alternating which goes first; the table adds ours against Keras's.",
    )

    evaluate = verbs.add_parser(
        "evaluate",
        help="Score a trained run's models on data.",
        description="Metrics of the run's model and baseline on the data flags' data.",
    )
    add_data_arguments(evaluate)
    evaluate.add_argument("--workdir", required=True, help="Work directory of a `train` run (without --folds).")
    evaluate.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="test: the run's held-out split of the same data (default); all: every example.",
    )

    export = verbs.add_parser(
        "export",
        help="Write a SavedModel taking raw strings, or a .tflite or ONNX model taking token ids.",
        description="SavedModel whose serving_default takes a batch of strings; with --format litert, a .tflite "
        "model whose serving_default takes right-padded token ids (vocabulary in its metadata); with --format onnx, "
        "a directory holding model.onnx (right-padded token ids in) and vocabulary.txt.",
    )
    export.add_argument("--workdir", required=True, help="Work directory of a `train` run (without --folds).")
    export.add_argument(
        "--output",
        help="Destination directory (default: WORKDIR/export), or with --format litert the .tflite file "
        "(default: WORKDIR/export.tflite), or with --format onnx the directory for model.onnx and vocabulary.txt "
        "(default: WORKDIR/onnx).",
    )
    export.add_argument("--baseline", action="store_true", help="Export the baseline instead of the recurrent model.")
    _litert.add_format_arguments(export, step=False)
    export.add_argument(
        "--class-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="With --quantize int8: the run's class files (as for train); the int8 model calibrates on the "
        "training part of the run's split. With --format onnx: the ONNX model is also checked on the held-out "
        "test part of the run's split.",
    )

    predict = verbs.add_parser(
        "predict",
        help="Classify sentences given on the command line.",
        description="Print label, probability and sentence, one per line.",
    )
    predict.add_argument("sentences", nargs="*", help="Sentences to classify (quote each).")
    predict.add_argument("--workdir", help="Use the trained model of this work directory.")
    predict.add_argument("--export", help="Use this exported SavedModel instead.")
    predict.add_argument("--baseline", action="store_true", help="With --workdir: use the baseline model.")
    return parser


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_usage(sys.stderr)
        raise UserError("expected a verb (train, evaluate, export, predict, benchmark); " + NO_DATA_MESSAGE)
    if args.verb == "train":
        return command_train(args)
    if args.verb == "benchmark":
        from zoo import cells as cell_names

        cells = [cell.strip() for cell in args.cells.split(",") if cell.strip()]
        unknown = [cell for cell in cells if not cell_names.is_cell(cell)]
        if unknown or not cells:
            raise UserError(
                f"Received --cells {args.cells!r}; expected a comma-separated subset of {list(cell_names.CELLS)}."
            )
        implementations = _cli.comma_separated("--implementations", args.implementations, cell_names.IMPLEMENTATIONS)
        if "keras" in implementations and not any(cell_names.has_keras_layer(cell) for cell in cells):
            raise UserError(
                f"Received --implementations {args.implementations} with --cells {args.cells}: no cell has a Keras "
                f"built-in layer; expected some of {', '.join(cell_names.PLAIN)} (or --implementations ours)."
            )
        args.published = True
        return command_train(args, cells=cells, implementations=implementations)
    return {"evaluate": command_evaluate, "export": command_export, "predict": command_predict}[args.verb](args)


if __name__ == "__main__":
    _cli.run(main)
