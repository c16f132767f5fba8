"""Exports of a text classifier: a SavedModel (raw strings in) or a `.tflite` model (token ids in)."""

import keras
import numpy as np
import tensorflow as tf

from zoo import litert, litert_quantize
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model

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
    names = {layer.name for layer in model.layers}
    unsupported = [option for layer, option in _UNSUPPORTED_LAYERS.items() if layer in names]
    if unsupported or "embedding" not in names:
        raise UserError(
            f"The .tflite export takes a single recurrent model; this model has {unsupported[0] if unsupported else 'no recurrent network (a baseline)'}. "
            "Expected a run trained with ensemble=1 and ngram_head=False (or use --format savedmodel)."
        )
    embedding, classifier, probabilities = (
        model.get_layer("embedding"),
        model.get_layer("classifier"),
        model.get_layer("probabilities"),
    )
    recurrent_layers = [
        layer for layer in model.layers if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))
    ]
    pooling = next((layer for layer in model.layers if layer.name in ("max_pool", "mean_pool")), None)
    vectorizer = model.get_layer("vectorizer")
    vocabulary = [str(word) for word in vectorizer.get_vocabulary()]
    max_length = model.get_layer("truncate").max_length

    def serve(token_ids):
        valid = tf.not_equal(token_ids, 0)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        hidden = embedding(token_ids)
        for layer in recurrent_layers:
            hidden = litert.recurrent(layer, hidden, lengths)
        if pooling is not None:
            hidden = pooling(hidden, mask=valid)
        return {"probabilities": probabilities(classifier(hidden))}

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
