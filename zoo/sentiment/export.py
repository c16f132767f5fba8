"""Exports of a text classifier: a SavedModel (raw strings in), a `.tflite` or an ONNX model (token ids in)."""

import os
import re

import keras
import numpy as np
import tensorflow as tf

from zoo import litert, litert_quantize, onnx_export
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model
from zoo.files import atomic_path, check_output_path
from zoo.sentiment.model import MaskedGlobalMaxPooling1D

SIGNATURE = "serving_default"
CALIBRATION_TEXTS = 512  # training texts an int8 export calibrates on


class TextClassifierModule(tf.Module):
    """Holds a strings-in Keras classifier and its class names for serving."""

    def __init__(self, model, class_names):
        super().__init__()
        self.model = model
        self.class_names = tf.constant([str(name) for name in class_names], dtype=tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def classify(self, texts):
        probabilities = self.model(texts, training=False)
        best = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,  # (batch, classes), in the order of class_names
            "label": tf.gather(self.class_names, best),  # (batch,) most probable class name
            "probability": tf.reduce_max(probabilities, axis=-1),  # (batch,) its probability
            "class_names": self.class_names,  # (classes,)
        }


def _use_cell_path(model):
    """Make our recurrent layers trace their per-step cell path instead of the fused one.

    The fused path's hand-written gradient (`tf.custom_gradient`) captures
    loop tensors that `tf.saved_model.save` cannot serialise; serving needs no
    gradient, and the cell path computes the same outputs (checked by
    `verify` against the fused model's probabilities).
    """
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(getattr(layer, "fused", None), bool):
            layer.fused = False


def export_text_classifier(model, class_names, path, check_texts=("a fine film", "")):
    """Export `model` (strings -> probabilities) to a SavedModel at `path`.

    The export is loaded back and must reproduce the Keras model's
    probabilities on `check_texts` (to 1e-5) before it replaces an earlier
    export. Our recurrent layers in `model` are switched to their cell path
    (see `_use_cell_path`). Signature `serving_default(texts: string[batch])` returns
    `probabilities`, `label`, `probability` and `class_names`.
    """
    check = tf.constant(list(check_texts), dtype=tf.string)
    expected = np.asarray(model(check, training=False))
    _use_cell_path(model)
    module = TextClassifierModule(model, class_names)

    def verify(loaded):
        outputs = loaded.signatures[SIGNATURE](texts=check)
        got = outputs["probabilities"].numpy()
        if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
            raise RuntimeError(
                f"The exported model's probabilities {got.tolist()} differ from the Keras model's {expected.tolist()}."
            )
        names = [name.decode("utf-8") for name in outputs["class_names"].numpy()]
        if names != [str(name) for name in class_names]:
            raise RuntimeError(f"The exported class names {names} differ from {list(class_names)}.")

    return export_saved_model(module, path, signatures={SIGNATURE: module.classify}, verify=verify)


# Layers of models the `.tflite` export does not cover, and the option that adds them.
_UNSUPPORTED_LAYERS = {
    "hybrid_logits": "ngram_head=True (the n-gram features need the string vectorizer)",
    "mean_probabilities": "ensemble > 1 (each member has its own vocabulary)",
}


def token_ids(model, texts):
    """The right-padded token ids `(len(texts), max_length)` int32 that the `.tflite` model takes for `texts`.

    The model's own vectorizer (standardisation, whitespace split, vocabulary
    lookup), truncated to `max_length` and padded with 0 on the right.
    """
    max_length = model.get_layer("truncate").max_length
    ids = keras.ops.convert_to_numpy(model.get_layer("vectorizer")(tf.constant(list(texts))))[:, :max_length]
    return np.pad(ids, ((0, 0), (0, max_length - ids.shape[1]))).astype(np.int32)


def _check_texts(vocabulary, max_length, texts):
    """`texts` and texts made of successive vocabulary words, from one word to more than `max_length`."""
    words = vocabulary[2:]  # without padding and the out-of-vocabulary token
    made, start = [], 0
    for length in (1, 3, max(1, max_length // 2), max_length, max_length + 5):
        if words:
            made.append(" ".join(words[(start + index) % len(words)] for index in range(length)))
            start += length
    return [*texts, *made]


class _RecurrentParts:
    """The layers of a single recurrent classifier that the token-id exports (LiteRT, ONNX) call."""

    def __init__(self, model, export):
        names = {layer.name for layer in model.layers}
        unsupported = [option for layer, option in _UNSUPPORTED_LAYERS.items() if layer in names]
        if unsupported or "embedding" not in names:
            has = unsupported[0] if unsupported else "no recurrent network (a baseline)"
            raise UserError(
                f"{export} takes a single recurrent model; this model has {has}. "
                "Expected a run trained with ensemble=1 and ngram_head=False (or use --format savedmodel)."
            )
        self.embedding = model.get_layer("embedding")
        self.classifier = model.get_layer("classifier")
        self.probabilities = model.get_layer("probabilities")
        self.recurrent_layers = [
            layer for layer in model.layers if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))
        ]
        self.pooling = next((layer for layer in model.layers if layer.name in ("max_pool", "mean_pool")), None)
        self.vectorizer = model.get_layer("vectorizer")
        self.vocabulary = [str(word) for word in self.vectorizer.get_vocabulary()]
        self.max_length = model.get_layer("truncate").max_length

    def serve(self, token_ids, rebuild, finite_max_pooling=False):
        """{"probabilities": ...} for right-padded `token_ids`, each recurrent layer rebuilt by `rebuild`.

        The lengths are the counts of non-zero ids (the Keras model's mask).
        With `finite_max_pooling`, masked max pooling fills padded steps with
        float32's lowest value instead of -inf (see `_masked_max_pooling`).
        """
        valid = tf.not_equal(token_ids, 0)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        hidden = self.embedding(token_ids)
        for layer in self.recurrent_layers:
            hidden = rebuild(layer, hidden, lengths)
        if finite_max_pooling and isinstance(self.pooling, MaskedGlobalMaxPooling1D):
            hidden = _masked_max_pooling(hidden, valid)
        elif self.pooling is not None:
            hidden = self.pooling(hidden, mask=valid)
        return {"probabilities": self.probabilities(self.classifier(hidden))}


def _masked_max_pooling(sequences, valid):
    """`MaskedGlobalMaxPooling1D` with padded steps filled with float32's lowest value instead of -inf.

    tf2onnx writes a float `Select` whose inputs are not constants as
    arithmetic, `x * condition + y * (1 - condition)`, and -inf * 0 is NaN
    (onnx/tensorflow-onnx#1988): with the layer's -inf every probability
    came out NaN. The maximum is the same wherever a row has a valid step;
    an empty row gets zeros, as from the layer.
    """
    lowest = tf.fill(tf.shape(sequences), sequences.dtype.min)
    pooled = tf.reduce_max(tf.where(valid[:, :, None], sequences, lowest), axis=1)
    return tf.where(tf.reduce_any(valid, axis=1)[:, None], pooled, tf.zeros_like(pooled))


def export_text_classifier_litert(
    model,
    class_names,
    path,
    *,
    batch_size=1,
    check_texts=("a fine film", ""),
    quantize=litert_quantize.NONE,
    calibration_texts=(),
):
    """Write the recurrent classifier `model` (strings -> probabilities) as a `.tflite` model at `path`.

    Signature `serving_default(token_ids: int32[batch_size, max_length])
    -> {probabilities: float32[batch_size, classes]}`. LiteRT has no
    string vectorizer, so the model takes what `token_ids` gives: the ids
    of the model's vocabulary (in the file's metadata with `standardize`,
    `max_length` and `class_names`), padded with 0 on the right. Padding
    is handled as the Keras model's mask handles it: the lengths are the
    counts of non-zero ids, each backward direction reads its text reversed
    within its length, and pooling skips padded steps. Before it replaces
    an earlier file, the written model must give the Keras model's
    probabilities to 1e-5 on `check_texts` and texts of 1 to `max_length +
    5` vocabulary words. `quantize` is one of `litert_quantize.MODES`; int8
    calibrates on the first `CALIBRATION_TEXTS` of `calibration_texts` (the
    run's training texts). Returns the report of `litert.export`.
    """
    require_int("batch_size", batch_size, minimum=1)
    litert_quantize.require_mode(quantize)
    parts = _RecurrentParts(model, "The .tflite export")
    vocabulary, max_length, vectorizer = parts.vocabulary, parts.max_length, parts.vectorizer

    def serve(token_ids):
        return parts.serve(token_ids, litert.recurrent)

    texts = _check_texts(vocabulary, max_length, check_texts)
    id_batches, _ = litert.in_batches(token_ids(model, texts), batch_size)
    expected_batches, _ = litert.in_batches(np.asarray(model(tf.constant(texts), training=False)), batch_size)
    representative = None
    calibration = list(calibration_texts)[:CALIBRATION_TEXTS]
    if quantize == litert_quantize.INT8 and calibration:
        batches, _ = litert.in_batches(token_ids(model, calibration), batch_size)
        representative = [(litert.SIGNATURE, {"token_ids": batch}) for batch in batches]
    metadata = {
        "task": "sentiment",
        "quantize": quantize,
        "inputs": {
            "token_ids": f"int32[{batch_size}, {max_length}]: ids of the vocabulary's tokens, padded with 0 on the "
            "right (texts standardised and split on whitespace as `standardize` says; unknown tokens are 1)"
        },
        "outputs": {"probabilities": f"float32[{batch_size}, {len(class_names)}]: in the order of class_names"},
        "class_names": [str(name) for name in class_names],
        "standardize": vectorizer.get_config()["standardize"],
        "max_length": max_length,
        "vocabulary": vocabulary,
    }
    return litert.export(
        path,
        serve,
        [tf.TensorSpec([batch_size, max_length], tf.int32, name="token_ids")],
        model.weights,
        metadata=metadata,
        batches=[{"token_ids": batch} for batch in id_batches],
        expected=[{"probabilities": batch} for batch in expected_batches],
        quantize=quantize,
        representative=representative,
    )


ONNX_MODEL_FILE = "model.onnx"
VOCABULARY_FILE = "vocabulary.txt"
ONNX_CHECK_BATCH = 128  # texts per ONNX Runtime call when an ONNX export is checked

# What Keras's TextVectorization does to a text before looking its words up (keras 3.x,
# `TextVectorization._preprocess`): TensorFlow's `tf.strings.lower` (ASCII letters only), the
# punctuation below removed, and `tf.strings.split` (on ASCII white space only).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PUNCTUATION = re.compile(r"""[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~']""")
_WHITE_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def python_token_ids(texts, vocabulary, standardize, max_length):
    """The ids `token_ids` gives, computed with the Python standard library alone (for ONNX Runtime users).

    `vocabulary` is the list of tokens, id `i` being `vocabulary[i]` (the
    lines of the ONNX export's `vocabulary.txt`); `standardize` and
    `max_length` are in the model's metadata. Each text is lower-cased
    (ASCII letters only) and/or stripped of ASCII punctuation as
    `standardize` says, split on ASCII white space, each word looked up
    (unknown: 1), cut to `max_length` words and padded with 0 on the right.
    Returns int32 `(len(texts), max_length)`.
    """
    index = {word: position for position, word in enumerate(vocabulary) if position > 1}
    rows = np.zeros((len(texts), max_length), np.int32)
    for row, text in enumerate(texts):
        if standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_ASCII_LOWER)
        if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = _PUNCTUATION.sub("", text)
        words = [word for word in _WHITE_SPACE.split(text) if word][:max_length]
        rows[row, : len(words)] = [index.get(word, 1) for word in words]
    return rows


def export_text_classifier_onnx(model, class_names, directory, *, check_texts=("a fine film", "")):
    """Write the recurrent classifier `model` (strings -> probabilities) as an ONNX model and its vocabulary.

    `directory` receives `model.onnx`, whose input is `token_ids:
    int32[batch, max_length]` (any batch size) and output `probabilities:
    float32[batch, classes]`, and `vocabulary.txt`, one token per line,
    line `i` (from 0) being the token of id `i` (0, an empty line, is
    padding; 1, `[UNK]`, any unknown word). ONNX has no string vectorizer,
    so the model takes what `token_ids` (or `python_token_ids`, without
    TensorFlow) gives; the model's metadata (`onnx_export.metadata`) has
    `standardize`, `max_length` and `class_names`. The recurrent layers are
    ONNX's `LSTM` or `GRU` operators (one bidirectional operator per
    `Bidirectional` layer), reading each text up to its length (the count of
    its non-zero ids). Before the directory replaces an earlier one (both
    files together), the model, run by ONNX Runtime, must give the Keras
    model's probabilities to 1e-5 on `check_texts` (the run's held-out texts,
    say) and texts of 1 to `max_length + 5` vocabulary words. Returns the
    report of `onnx_export.write_checked`, with `path` the model file and
    `vocabulary` the vocabulary file.
    """
    if not directory:
        raise UserError("Received an empty value for the export path; expected a directory.")
    check_output_path(directory, "directory", "a directory for the ONNX model and its vocabulary")
    parts = _RecurrentParts(model, "The ONNX export")
    texts = _check_texts(parts.vocabulary, parts.max_length, check_texts)
    ids = token_ids(model, texts)
    starts = range(0, len(texts), ONNX_CHECK_BATCH)
    expected = [
        {"probabilities": np.asarray(model(tf.constant(texts[start : start + ONNX_CHECK_BATCH]), training=False))}
        for start in starts
    ]
    standardize = parts.vectorizer.get_config()["standardize"]
    onnx_model = onnx_export.build(
        lambda token_ids: parts.serve(token_ids, onnx_export.recurrent, finite_max_pooling=True),
        [tf.TensorSpec([None, parts.max_length], tf.int32, name="token_ids")],
        model.weights,
        metadata={
            "task": "sentiment",
            "inputs": {
                "token_ids": f"int32[batch, {parts.max_length}]: ids of the tokens of {VOCABULARY_FILE} (line i is "
                "id i), padded with 0 on the right; texts standardised as `standardize` says (ASCII lower case "
                "and/or ASCII punctuation removed) and split on ASCII white space; unknown tokens are 1"
            },
            "outputs": {"probabilities": f"float32[batch, {len(class_names)}]: in the order of class_names"},
            "class_names": [str(name) for name in class_names],
            "standardize": standardize,
            "max_length": parts.max_length,
            "vocabulary_file": VOCABULARY_FILE,
            "vocabulary_size": len(parts.vocabulary),
        },
        expected_recurrent=onnx_export.expected_operators(parts.recurrent_layers),
    )
    with atomic_path(directory) as temporary:
        os.makedirs(temporary)
        with open(os.path.join(temporary, VOCABULARY_FILE), "w", encoding="utf-8", newline="\n") as stream:
            stream.write("".join(f"{word}\n" for word in parts.vocabulary))
        report = onnx_export.write_checked(
            os.path.join(temporary, ONNX_MODEL_FILE),
            onnx_model,
            batches=[{"token_ids": ids[start : start + ONNX_CHECK_BATCH]} for start in starts],
            expected=expected,
        )
    report["path"] = os.path.join(directory, ONNX_MODEL_FILE)
    report["vocabulary"] = os.path.join(directory, VOCABULARY_FILE)
    return report
