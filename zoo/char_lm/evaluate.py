"""Scoring a trained character language model: stream evaluation, sampling, the results table."""

import math
import os
import time

import tensorflow as tf

from zoo import checkpoints, registry, training
from zoo import config as config_lib
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm.config import CharLMConfig
from zoo.char_lm.train import SOURCE_FILE, VOCABULARY_FILE, load_corpus, stream_data
from zoo.config import require_choice, require_float, require_int, require_seed
from zoo.errors import UserError, UserFileNotFoundError


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


def checkpoint_path(workdir, which="best"):
    require_choice("checkpoint", which, ("best", "last"))
    path = os.path.join(workdir, training.CHECKPOINT_DIR, f"{which}.keras")
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No checkpoint at {path!r}; train a model in this work directory first.")
    return path


def load_run(workdir, which="best"):
    """(config, vocabulary, model) of a trained run in `workdir`."""
    config = config_lib.load(CharLMConfig, os.path.join(workdir, "config.json"))
    vocabulary = data_lib.Vocabulary.read(os.path.join(workdir, VOCABULARY_FILE))
    model = checkpoints.load_model(checkpoint_path(workdir, which))
    return config, vocabulary, model


def run_source(workdir):
    """The text source the run in `workdir` trained on (the embedded text if it saved none)."""
    source_path = os.path.join(workdir, SOURCE_FILE)
    return data_lib.TextSource.read(source_path) if os.path.exists(source_path) else data_lib.TextSource()


def evaluate(workdir, *, which="best", source=None):
    """Stream-evaluate a checkpoint on the validation part of its corpus."""
    config, vocabulary, model = load_run(workdir, which)
    if model.input_shape[0] != config.batch_size:
        # Trained under a distribution strategy, the checkpoint's stateful
        # layers hold one replica's rows; score all streams at once.
        trained = model
        model = registry.build(f"char_lm/{config.cell}", config, vocabulary_size=vocabulary.size)
        model_lib.compile_model(model, config)
        model.set_weights(trained.get_weights())
    source = source or run_source(workdir)
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


# The most characters `sample` generates in one call: about the size of a
# whole training corpus (Tiny Shakespeare has 1.1 million characters).
# Generation is one step at a time: the default 512-unit LSTM made about
# 4,000 characters per second on a shared 2-core CPU, so a million take
# about four minutes. The ids are collected in a TensorArray of `length`
# entries: 2**31 - 1 of them crashed the process, and more overflow its
# int32 size.
MAX_SAMPLE_LENGTH = 1_000_000


def check_sample_arguments(length, temperature, top_k, seed, *, flag_names=False):
    """(length, temperature, top_k, seed) checked as `sample` needs them, else a `UserError`.

    With `flag_names`, messages name the command-line flags (`--top-k`)
    instead of the arguments (`top_k`).
    """

    def name(argument):
        return "--" + argument.replace("_", "-") if flag_names else argument

    return (
        require_int(name("length"), length, minimum=0, maximum=MAX_SAMPLE_LENGTH),
        require_float(name("temperature"), temperature, minimum=0.0, expected="a finite number >= 0 (0 is greedy)"),
        require_int(name("top_k"), top_k, minimum=0, expected="a non-negative integer (0: all)"),
        require_seed(name("seed"), seed),
    )


def sample(workdir, *, prompt, length, temperature=1.0, top_k=0, seed=0, which="best"):
    """Generate `length` characters after `prompt`; returns (text, characters_per_second).

    `length` is at most `MAX_SAMPLE_LENGTH`; `temperature` a finite number
    >= 0 (0 is greedy); `top_k` >= 0 (0: all characters; more than the
    vocabulary means all); `seed` an integer in [0, 2**31 - 1].
    """
    if not isinstance(prompt, str) or not prompt:
        raise UserError(f"Received an invalid value for `prompt`: {prompt!r}; expected a non-empty string.")
    length, temperature, top_k, seed = check_sample_arguments(length, temperature, top_k, seed)
    _, vocabulary, model = load_run(workdir, which)
    top_k = min(top_k, vocabulary.size)  # the stepper takes an int32; larger means all characters anyway
    stepper = model_lib.CharacterStepper(model)
    generate = tf.function(stepper.generate)
    prompt_ids = tf.constant(vocabulary.encode(prompt))
    # Tensors, not Python numbers: a new Python number would trace the function again, inside the timing.
    temperature, seed, top_k = tf.constant(temperature, tf.float32), tf.constant(seed), tf.constant(top_k)
    generate(prompt_ids, tf.constant(1), temperature, seed, top_k)  # trace once, so the timing is generation only
    started = time.perf_counter()
    ids = generate(prompt_ids, tf.constant(length), temperature, seed, top_k).numpy()
    seconds = time.perf_counter() - started
    return vocabulary.decode(ids), (length / seconds if seconds > 0 else math.inf)
