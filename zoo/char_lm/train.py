"""Training a character language model on a stream of text, with the Markov baselines beside it.

The functions here are what `recipes.char_lm` calls and what the tests call
directly; none of them parses a command line.
"""

import math
import os
import time

import keras
import tensorflow as tf

from zoo import config as config_lib
from zoo import distribute, registry, training
from zoo import workdir as workdir_lib
from zoo.char_lm import baselines
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.errors import UserError
from zoo.files import atomic_write_json, read_json

VOCABULARY_FILE = "vocabulary.json"
SOURCE_FILE = "data.json"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.json"


class EpochCurve(keras.callbacks.Callback):
    """Writes every finished epoch's numbers to curve.json as it goes.

    The file survives an interruption, so a resumed run's metrics.json still
    holds the whole curve; epochs redone after a resume replace their entry.
    """

    def __init__(self, path, write=True):
        super().__init__()
        self.path = path
        self.write = write
        self.rows = read_json(path) if os.path.exists(path) else []
        self.started = None

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()
        self.offset = self.rows[-1]["seconds"] if self.rows else 0.0

    def on_epoch_end(self, epoch, logs=None):
        logs = {key: float(value) for key, value in (logs or {}).items()}
        row = {"epoch": epoch + 1, "seconds": self.offset + time.monotonic() - self.started}
        # The time budget stops training mid-epoch; Keras still validates then.
        row["stopped_mid_epoch"] = bool(self.model.stop_training)
        if "loss" in logs:
            row["train_nats_per_char"] = logs["loss"]
        if "val_loss" in logs:
            row.update(
                val_nats_per_char=logs["val_loss"],
                val_bits_per_char=model_lib.bits_from_nats(logs["val_loss"]),
                val_perplexity=math.exp(min(logs["val_loss"], 700.0)),
            )
        self.rows = [existing for existing in self.rows if existing["epoch"] < epoch + 1] + [row]
        if self.write:
            atomic_write_json(self.path, self.rows)


def load_corpus(source, config, vocabulary=None):
    text = source.load()
    corpus = data_lib.prepare_corpus(text, config.validation_fraction, vocabulary)
    return corpus


def require_stream_splits(corpus, config):
    """Raise `UserError` (saying how long the text must be) unless both splits make a batch."""
    for part, ids in (("training", corpus.training_ids), ("validation", corpus.validation_ids)):
        data_lib.require_one_batch(
            len(ids),
            config.batch_size,
            config.seq_len,
            what=f"{part} text",
            validation_fraction=config.validation_fraction,
        )


def stream_data(corpus, config):
    """Training and validation `tf.data` datasets of stream batches."""
    require_stream_splits(corpus, config)
    training_batches = data_lib.stream_batches(
        corpus.training_ids, config.batch_size, config.seq_len, what="training text"
    )
    validation_batches = data_lib.stream_batches(
        corpus.validation_ids, config.batch_size, config.seq_len, what="validation text"
    )
    return data_lib.to_dataset(*training_batches), data_lib.to_dataset(*validation_batches)


def train_and_evaluate(
    config,
    workdir,
    *,
    source=None,
    resume=False,
    strategy=None,
    verbose="auto",
    is_chief=True,
    tensorboard=None,
    log=training.silent,
):
    """Train a model on `source` (default: the embedded text), write metrics.json.

    `tensorboard=None` writes TensorBoard logs when the `tensorboard` package
    is installed. `log` (e.g. `print`) gets the line saying whether and where
    training resumed (see `zoo.training.fit`). Returns the metrics dict (also written to
    `workdir/metrics.json`).
    """
    if tensorboard is None:
        tensorboard = training.tensorboard_available()
    source = source or data_lib.TextSource()
    config.validate()
    with workdir_lib.locked(workdir, hold=is_chief):
        return _train_and_evaluate(config, workdir, source, resume, strategy, verbose, is_chief, tensorboard, log)


def _train_and_evaluate(config, workdir, source, resume, strategy, verbose, is_chief, tensorboard, log):
    if resume and os.path.exists(os.path.join(workdir, SOURCE_FILE)):
        saved_source = data_lib.TextSource.read(os.path.join(workdir, SOURCE_FILE))
        if saved_source != source:
            raise UserError(
                f"Cannot resume in {workdir!r} with a different corpus ({source.description}); "
                f"the run used {saved_source.description}."
            )
    text = source.load()
    corpus = data_lib.prepare_corpus(text, config.validation_fraction)
    training_data, validation_data = stream_data(corpus, config)
    inputs = {f"the corpus ({source.description})": workdir_lib.fingerprint_bytes(text)}
    config = workdir_lib.prepare_workdir(workdir, config, resume=resume, inputs=inputs)
    training.set_seed(config.seed)
    if is_chief:
        source.save(os.path.join(workdir, SOURCE_FILE))
        corpus.vocabulary.save(os.path.join(workdir, VOCABULARY_FILE))
        if not resume and os.path.exists(os.path.join(workdir, CURVE_FILE)):
            os.remove(os.path.join(workdir, CURVE_FILE))

    strategy = strategy or tf.distribute.get_strategy()
    rows = distribute.rows_per_replica(strategy, config.batch_size)
    with strategy.scope():
        # Each replica runs its own block of streams, so the stateful
        # layers hold that replica's rows only.
        model = registry.build(
            f"char_lm/{config.cell}", config, vocabulary_size=corpus.vocabulary.size, batch_size=rows
        )
        model_lib.compile_model(model, config, steps_per_epoch=len(training_data))
    curve = EpochCurve(os.path.join(workdir, CURVE_FILE), write=is_chief)
    result = training.fit(
        model,
        training_data,
        workdir=workdir,
        epochs=config.epochs,
        validation_data=validation_data,
        max_minutes=config.max_minutes,
        callbacks=[model_lib.ResetStatesEachEpoch(), curve],
        verbose=verbose,
        tensorboard=tensorboard,
        distribute_data=lambda dataset: distribute.distribute_row_streams(strategy, dataset, config.batch_size),
        log=log,
        resume=resume,
        divergence_factor=config.divergence_factor,
        averaged_weights=config.ema_decay > 0,
    )
    metrics_path = os.path.join(workdir, METRICS_FILE)
    if result["already_finished"] and os.path.exists(metrics_path):
        log(f"the run's metrics are in {metrics_path}")
        return read_json(metrics_path)
    markov_rows = baselines.baseline_table(corpus, config)
    rows = curve.rows
    best = min(rows, key=lambda row: row.get("val_nats_per_char", math.inf)) if rows else {}
    metrics = {
        "corpus": source.description,
        "characters": corpus.total_characters,
        "training_characters": int(len(corpus.training_ids)),
        "validation_characters": int(len(corpus.validation_ids)),
        "validation_characters_scored": int(
            len(data_lib.stream_target_positions(len(corpus.validation_ids), config.batch_size, config.seq_len))
        ),
        "validation_unknown_characters": corpus.validation_unknown,
        "vocabulary_size": corpus.vocabulary.size,
        "parameters": int(model.count_params()),
        "curve": rows,
        "tensorboard_logs": bool(tensorboard),
        "wall_seconds": result["seconds"],  # this session's training, validation included
        "training_seconds_all_sessions": rows[-1]["seconds"] if rows else result["seconds"],
        "time_budget_exhausted": result["time_budget_exhausted"],
        "epochs_completed": sum(not row["stopped_mid_epoch"] for row in rows),
        "final": rows[-1] if rows else {},
        "best": best,
        "markov": markov_rows,
        "config": config_lib.to_dict(config),
    }
    if is_chief:
        atomic_write_json(os.path.join(workdir, METRICS_FILE), metrics)
    return metrics


# ----------------------------------------------------------------------------- loading a run
