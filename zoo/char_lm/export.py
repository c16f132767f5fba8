"""SavedModel export of a character language model: `generate` and `next_char_log_probs`."""

import os

import numpy as np
import tensorflow as tf

from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm.evaluate import load_run
from zoo.export import export_saved_model

EXPORT_DIR = "export"


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
