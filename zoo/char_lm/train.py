"""Training, stream evaluation, sampling and export of a character language model.

The functions here are what `recipes.char_lm` calls and what the tests call
directly; none of them parses a command line.
"""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from zoo import config as config_lib
from zoo import distribute
from zoo import training
from zoo.char_lm import data as data_lib
from zoo.char_lm import markov
from zoo.char_lm import model as model_lib
from zoo.export import export_saved_model
from zoo.files import atomic_write_json, read_json

VOCABULARY_FILE = "vocabulary.json"
SOURCE_FILE = "data.json"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.json"
EXPORT_DIR = "export"


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


def stream_data(corpus, config):
    """Training and validation `tf.data` datasets of stream batches."""
    training_batches = data_lib.stream_batches(
        corpus.training_ids, config.batch_size, config.seq_len, what="training text"
    )
    validation_batches = data_lib.stream_batches(
        corpus.validation_ids, config.batch_size, config.seq_len, what="validation text"
    )
    return data_lib.to_dataset(*training_batches), data_lib.to_dataset(*validation_batches)


def baseline_table(corpus, config):
    """Markov baselines on exactly the validation characters the model is scored on."""
    positions = data_lib.stream_target_positions(len(corpus.validation_ids), config.batch_size, config.seq_len)
    # Histories reach back into the training text, as they would in the running text.
    joined = np.concatenate([corpus.training_ids, corpus.validation_ids])
    return markov.markov_table(
        corpus.training_ids, joined, positions + len(corpus.training_ids), config.markov_orders, corpus.vocabulary.size
    )


def tensorboard_available():
    """Whether the `tensorboard` package (needed for TensorBoard logs) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def train_and_evaluate(
    config, workdir, *, source=None, resume=False, strategy=None, verbose="auto", is_chief=True, tensorboard=None
):
    """Train a model on `source` (default: the embedded text), write metrics.json.

    `tensorboard=None` writes TensorBoard logs when the `tensorboard` package
    is installed. Returns the metrics dict (also written to
    `workdir/metrics.json`).
    """
    if tensorboard is None:
        tensorboard = tensorboard_available()
    source = source or data_lib.TextSource()
    config.validate()
    if resume and os.path.exists(os.path.join(workdir, SOURCE_FILE)):
        saved_source = data_lib.TextSource.read(os.path.join(workdir, SOURCE_FILE))
        if saved_source != source:
            raise ValueError(
                f"Cannot resume in {workdir!r} with a different corpus ({source.description}); "
                f"the run used {saved_source.description}."
            )
    corpus = load_corpus(source, config)
    training_data, validation_data = stream_data(corpus, config)
    config = training.prepare_workdir(workdir, config, resume=resume)
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
        model = model_lib.build_model(config, vocabulary_size=corpus.vocabulary.size, batch_size=rows)
        model_lib.compile_model(model, config)
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
    )
    baselines = baseline_table(corpus, config)
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
        "markov": baselines,
        "config": config_lib.to_dict(config),
    }
    if is_chief:
        atomic_write_json(os.path.join(workdir, METRICS_FILE), metrics)
    return metrics


def results_table(metrics):
    """The recurrent model and the Markov baselines, one line each, best first."""
    rows = [(f"markov order {row['order']} (KN)", row["nats_per_char"]) for row in metrics["markov"]]
    best = metrics.get("best") or {}
    if "val_nats_per_char" in best:
        cell = metrics["config"]["cell"]
        rows.append(
            (
                f"{cell} {metrics['config']['num_layers']}x{metrics['config']['units']} (epoch {best['epoch']})",
                best["val_nats_per_char"],
            )
        )
    rows.sort(key=lambda row: row[1])
    lines = [f"{'model':<34} {'nats/char':>9} {'bits/char':>9} {'perplexity':>10}"]
    for name, nats in rows:
        lines.append(f"{name:<34} {nats:>9.4f} {nats / math.log(2):>9.4f} {math.exp(nats):>10.3f}")
    return "\n".join(lines)


def verdict(metrics):
    """One line: does the recurrent model beat the best Markov baseline, and by how much."""
    best_markov = min(metrics["markov"], key=lambda row: row["nats_per_char"])
    model_nats = (metrics.get("best") or {}).get("val_nats_per_char")
    if model_nats is None:
        return "no validation number yet: the model has not finished an epoch"
    margin = best_markov["nats_per_char"] - model_nats
    relation = "beats" if margin > 0 else "does NOT beat"
    return (
        f"{metrics['config']['cell']} {relation} the best Markov baseline (order {best_markov['order']}, "
        f"{best_markov['nats_per_char']:.4f}) by {margin:+.4f} nats/char"
    )


# ----------------------------------------------------------------------------- loading a run


def checkpoint_path(workdir, which="best"):
    if which not in ("best", "last"):
        raise ValueError(f"Received an invalid value for `checkpoint`: {which!r}; expected 'best' or 'last'.")
    path = os.path.join(workdir, training.CHECKPOINT_DIR, f"{which}.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}; train a model in this work directory first.")
    return path


def load_run(workdir, which="best"):
    """(config, vocabulary, model) of a trained run in `workdir`."""
    config = config_lib.load(model_lib.CharLMConfig, os.path.join(workdir, "config.json"))
    vocabulary = data_lib.Vocabulary.read(os.path.join(workdir, VOCABULARY_FILE))
    model = keras.saving.load_model(checkpoint_path(workdir, which), safe_mode=True)
    return config, vocabulary, model


def evaluate(workdir, *, which="best", source=None):
    """Stream-evaluate a checkpoint on the validation part of its corpus."""
    config, vocabulary, model = load_run(workdir, which)
    if model.input_shape[0] != config.batch_size:
        # Trained under a distribution strategy, the checkpoint's stateful
        # layers hold one replica's rows; score all streams at once.
        trained = model
        model = model_lib.build_model(config, vocabulary_size=vocabulary.size)
        model_lib.compile_model(model, config)
        model.set_weights(trained.get_weights())
    if source is None:
        source_path = os.path.join(workdir, SOURCE_FILE)
        source = data_lib.TextSource.read(source_path) if os.path.exists(source_path) else data_lib.TextSource()
    corpus = load_corpus(source, config, vocabulary)
    _, validation_data = stream_data(corpus, config)
    model_lib.reset_stream_states(model)
    results = model.evaluate(validation_data, verbose=0, return_dict=True)
    nats = float(results["loss"])
    return {
        "corpus": source.description,
        "checkpoint": which,
        "nats_per_char": nats,
        "bits_per_char": model_lib.bits_from_nats(nats),
        "perplexity": math.exp(nats),
        "characters_scored": int(
            len(data_lib.stream_target_positions(len(corpus.validation_ids), config.batch_size, config.seq_len))
        ),
    }


def sample(workdir, *, prompt, length, temperature=1.0, top_k=0, seed=0, which="best"):
    """Generate `length` characters after `prompt`; returns (text, characters_per_second)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"Received an invalid value for `prompt`: {prompt!r}; expected a non-empty string.")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"Received an invalid value for `length`: {length!r}; expected a non-negative integer.")
    if not temperature >= 0:
        raise ValueError(f"Received an invalid value for `temperature`: {temperature!r}; expected >= 0 (0 is greedy).")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"Received an invalid value for `top_k`: {top_k!r}; expected a non-negative integer (0: all).")
    _, vocabulary, model = load_run(workdir, which)
    stepper = model_lib.CharacterStepper(model)
    generate = tf.function(stepper.generate)
    prompt_ids = vocabulary.encode(prompt)
    generate(prompt_ids, 1, temperature, seed, top_k)  # trace once, so the timing is generation only
    started = time.perf_counter()
    ids = generate(prompt_ids, length, temperature, seed, top_k).numpy()
    seconds = time.perf_counter() - started
    return vocabulary.decode(ids), (length / seconds if seconds > 0 else math.inf)


class CharLMExport(tf.Module):
    """What the SavedModel holds: weights, the vocabulary table, two signatures."""

    def __init__(self, model, vocabulary):
        super().__init__()
        self.stepper = model_lib.CharacterStepper(model)
        self.tokens = tf.constant(vocabulary.tokens)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary.characters, tf.string),
                tf.range(1, vocabulary.size, dtype=tf.int64),
            ),
            default_value=data_lib.OOV_ID,
        )

    def _ids(self, prompt):
        characters = tf.strings.unicode_split(prompt, "UTF-8")
        return tf.cast(self.table.lookup(characters), tf.int32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="length"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ]
    )
    def generate(self, prompt, length, temperature, seed):
        ids = self.stepper.generate(self._ids(prompt), length, temperature, seed)
        return {"text": tf.strings.reduce_join(tf.gather(self.tokens, ids))}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="prompt")])
    def next_char_log_probs(self, prompt):
        return {"characters": self.tokens, "log_probs": self.stepper.next_log_probs(self._ids(prompt))}


def export(workdir, *, path=None, which="best"):
    """Write a SavedModel with `generate` and `next_char_log_probs` signatures."""
    _, vocabulary, model = load_run(workdir, which)
    module = CharLMExport(model, vocabulary)
    path = path or os.path.join(workdir, EXPORT_DIR)
    probe = vocabulary.characters[0]

    def verify(loaded):
        expected = module.next_char_log_probs(tf.constant(probe))["log_probs"].numpy()
        got = loaded.signatures["next_char_log_probs"](prompt=tf.constant(probe))["log_probs"].numpy()
        if not np.allclose(expected, got, atol=1e-5):
            raise RuntimeError("The exported next_char_log_probs disagrees with the trained model.")
        text = loaded.signatures["generate"](
            prompt=tf.constant(probe), length=tf.constant(5), temperature=tf.constant(1.0), seed=tf.constant(0)
        )["text"].numpy().decode("utf-8")
        if len(text) != 5:
            raise RuntimeError(f"The exported generate returned {len(text)} characters; expected 5.")

    return export_saved_model(
        module,
        path,
        signatures={
            "generate": module.generate.get_concrete_function(),
            "next_char_log_probs": module.next_char_log_probs.get_concrete_function(),
        },
        verify=verify,
    )
