"""Exports of a character language model: a SavedModel (`generate`, `next_char_log_probs`) or a `.tflite` model."""

import os

import numpy as np
import tensorflow as tf

from zoo import litert, registry
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm.evaluate import load_run, run_source
from zoo.char_lm.train import load_corpus
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model

EXPORT_DIR = "export"
LITERT_FILE = "export.tflite"
CHECK_ROWS = 256  # validation sequences (of seq_len characters) the .tflite is checked on


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
        text = (
            loaded.signatures["generate"](
                prompt=tf.constant(probe), length=tf.constant(5), temperature=tf.constant(1.0), seed=tf.constant(0)
            )["text"]
            .numpy()
            .decode("utf-8")
        )
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


def export_litert(workdir, *, path=None, which="best", batch_size=1, source=None):
    """Write a `.tflite` model: character ids `(batch_size, time)` -> next-character log-probabilities.

    Signature `serving_default(character_ids: int32[batch_size, time])
    -> {log_probs: float32[batch_size, time, V]}`: at every position, the
    log-probabilities of the character after it, from a zero state (the
    whole sequence is read at once; `time` may vary from call to call).
    Id `i` is `characters[i]` of the model's metadata (`litert.metadata`),
    id 0 any character unseen in training. Before it replaces an earlier
    file, the written model must equal the Keras model to 1e-5 (relative
    beyond magnitude 1, see `litert.compare`) on the first `CHECK_ROWS`
    validation sequences of `seq_len` characters. The fused LSTM op keeps
    its states between calls: reset them (`reset_all_variables()`) before
    each call. Returns the report of `litert.export`.
    """
    require_int("batch_size", batch_size, minimum=1)
    config, vocabulary, model = load_run(workdir, which)
    reference = registry.build(f"char_lm/{config.cell}", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    validation_ids = load_corpus(source or run_source(workdir), config, vocabulary).validation_ids
    rows = min(len(validation_ids) // config.seq_len, CHECK_ROWS)
    if rows < 1:
        raise UserError(
            f"The validation text has {len(validation_ids)} characters; expected at least seq_len={config.seq_len} "
            "to check the export on."
        )
    sequences = np.asarray(validation_ids[: rows * config.seq_len], np.int32).reshape(rows, config.seq_len)
    batches, _ = litert.in_batches(sequences, batch_size)
    expected = [{"log_probs": tf.nn.log_softmax(reference(batch, training=False)).numpy()} for batch in batches]
    embedding, recurrent_layers, logits = (
        model.get_layer("embedding"),
        model_lib.recurrent_layers(model),
        model.get_layer("logits"),
    )

    def serve(character_ids):
        hidden = embedding(character_ids)
        for layer in recurrent_layers:
            hidden = litert.recurrent(layer, hidden)
        return {"log_probs": tf.nn.log_softmax(logits(hidden))}

    metadata = {
        "task": "char_lm",
        "inputs": {"character_ids": f"int32[{batch_size}, time]: ids of characters; 0 for any unseen one"},
        "outputs": {"log_probs": "float32[batch, time, V]: log-probabilities of the next character"},
        "characters": vocabulary.tokens,
    }
    return litert.export(
        path or os.path.join(workdir, LITERT_FILE),
        serve,
        [tf.TensorSpec([batch_size, None], tf.int32, name="character_ids")],
        model.weights,
        metadata=metadata,
        batches=[{"character_ids": batch} for batch in batches],
        expected=expected,
    )
