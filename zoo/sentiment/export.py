"""SavedModel export of a text classifier: raw strings in, probabilities and class names out."""

import numpy as np
import tensorflow as tf

from zoo.export import export_saved_model

SIGNATURE = "serving_default"


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
