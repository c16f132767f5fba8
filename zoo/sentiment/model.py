"""Text classifiers that take raw strings: the recurrent models and their builders.

strings -> TextVectorization (standardise, split, look up; padded to the
longest text in the batch) -> TruncateTokens(max_length) -> WordDropout
(training only) -> Embedding with `mask_zero=True` -> SpatialDropout1D and
Dropout (training only) -> our recurrent layers (optionally bidirectional,
stacked) -> pooling over the unpadded steps -> dense logits -> softmax over
the classes.

With `ngram_head`, the logits are the sum of the recurrent head's logits
and a linear function of the baseline's bag-of-n-grams features (a
logistic regression term), and both parts are trained jointly. With
`ensemble > 1`, `build_ensemble` averages the probabilities of members
trained separately. With `adversarial > 0`, the model is an
`AdversarialTextClassifier`: the same network, whose training step also
fits the word embeddings moved against it (adversarial training).

Padding never changes a prediction: the embedding's mask tells the
recurrent layers to carry their state unchanged over padded steps, and the
pooling ignores them.
"""

import contextlib
import dataclasses

import keras
from keras import ops
from keras.src.losses.loss import unscale_loss_for_distribution

from zoo import cells, ensembles, registry
from zoo.config import require_int
from zoo.errors import UserError
from zoo.sentiment.config import SentimentConfig

PACKAGE = "rnnzoo_sentiment"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TruncateTokens(keras.layers.Layer):
    """Keep the first `max_length` token ids; give an all-empty batch one padded step.

    TextVectorization without a fixed output length pads each batch to its
    longest text, which keeps short batches cheap; this layer caps that
    length. A batch of empty texts would have zero steps, which recurrent
    layers cannot run over, so it gets one padding column (masked anyway).
    """

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = require_int("max_length", max_length)

    def call(self, token_ids):
        token_ids = token_ids[:, : self.max_length]
        padding = ops.zeros((ops.shape(token_ids)[0], 1), dtype=token_ids.dtype)
        with_padding = ops.concatenate([token_ids, padding], axis=1)
        steps = ops.maximum(ops.shape(token_ids)[1], 1)
        return with_padding[:, :steps]

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else max(1, min(steps, self.max_length)))

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedGlobalMaxPooling1D(keras.layers.Layer):
    """Maximum over time of the unmasked steps (zeros for a fully masked row)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, sequences, mask=None):
        if mask is None:
            return ops.max(sequences, axis=1)
        mask = ops.cast(mask, "bool")
        lowest = ops.full_like(sequences, float("-inf"))
        pooled = ops.max(ops.where(mask[:, :, None], sequences, lowest), axis=1)
        any_step = ops.any(mask, axis=1)[:, None]
        return ops.where(any_step, pooled, ops.zeros_like(pooled))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class WordDropout(keras.layers.Layer):
    """While training, replace each word id by the out-of-vocabulary id with probability `rate`.

    Padding (id 0) is left alone, so lengths and masks do not change; at
    inference the ids pass through unchanged. Dropping a word to "unknown"
    rather than deleting it keeps the sentence's shape while forcing the model
    not to rely on any single word.
    """

    def __init__(self, rate, oov_id=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(
                f"Received an invalid value for argument `rate`, expected a number in [0, 1), got {rate!r}."
            )
        self.rate = float(rate)
        self.oov_id = int(oov_id)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, token_ids, training=False):
        if not training or self.rate == 0.0:
            return token_ids
        noise = keras.random.uniform(ops.shape(token_ids), seed=self.seed_generator)
        dropped = ops.logical_and(noise < self.rate, token_ids != 0)
        return ops.where(dropped, ops.cast(self.oov_id, token_ids.dtype), token_ids)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "oov_id": self.oov_id, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PerturbableEmbedding(keras.layers.Embedding):
    """An `Embedding` whose output an adversarial training step can read and move.

    It computes exactly what `keras.layers.Embedding` computes. Inside
    `recording()`, each call keeps its output and the mask of real (non-padding)
    tokens in `recorded`; inside `perturbed(delta)`, `delta` is added to the
    output. Both are used by `AdversarialTextClassifier.train_step` only, while
    one training step is traced.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recording = False
        self._perturbation = None
        self.recorded = None

    def call(self, inputs):
        outputs = super().call(inputs)
        if self._perturbation is not None:
            outputs = outputs + self._perturbation
        if self._recording:
            self.recorded = (outputs, ops.not_equal(inputs, 0))
        return outputs

    @contextlib.contextmanager
    def recording(self):
        self._recording, self.recorded = True, None
        try:
            yield self
        finally:
            self._recording = False

    @contextlib.contextmanager
    def perturbed(self, delta):
        self._perturbation = delta
        try:
            yield self
        finally:
            self._perturbation = None


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdversarialTextClassifier(keras.Model):
    """A functional text classifier trained with adversarial word embeddings.

    Built like any functional model (`AdversarialTextClassifier(inputs,
    outputs, epsilon=...)`), with a `PerturbableEmbedding` named "embedding".
    Inference is the plain network. Each training step (Goodfellow et al.
    2015, applied to word embeddings as in Miyato et al. 2017):

    1. computes the loss and its gradient `g` with respect to the embedded
       texts `e` (padding excluded);
    2. moves each text's embeddings to `e + epsilon * |e| * g / |g|`, where the
       norms are over the text's whole (tokens, dimensions) array: the step
       that raises the loss most, a fixed fraction `epsilon` of the text's
       own embedding norm, so the model cannot escape it by growing its
       embeddings;
    3. minimises the mean of the clean and the moved loss. The reported
       `loss` is the clean one, comparable with a model trained without this.
    """

    def __init__(self, *args, epsilon=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon >= 0:
            raise ValueError(
                f"Received an invalid value for argument `epsilon`, expected a number >= 0, got {epsilon!r}."
            )
        self.epsilon = float(epsilon)
        embedding = next((layer for layer in self.layers if layer.name == "embedding"), None)
        if not isinstance(embedding, PerturbableEmbedding):
            raise ValueError(
                f"{type(self).__name__} needs a `PerturbableEmbedding` layer named 'embedding'; "
                f"received {type(embedding).__name__ if embedding is not None else 'none'}."
            )
        self.embedding = embedding

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras.src.models.functional import functional_from_config

        config = dict(config)
        epsilon = config.pop("epsilon", 0.0)
        model = functional_from_config(cls, config, custom_objects=custom_objects)
        model.epsilon = float(epsilon)
        return model

    def adversarial_step(self, x, y, sample_weight=None):
        """`(y_pred, loss, delta)`: the clean pass, its loss, and the move of the embedded texts.

        `delta` has the shape of the "embedding" layer's output, is zero at
        padding, and each text's slice has norm `epsilon` times the norm of
        that text's embeddings. It is a constant (no gradient flows into it).
        """
        import tensorflow as tf

        with tf.GradientTape() as tape:
            with self.embedding.recording():
                y_pred = self(x, training=True)
            embedded, real = self.embedding.recorded
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        real = ops.cast(real, embedded.dtype)[:, :, None]
        direction = tf.stop_gradient(tape.gradient(loss, embedded)) * real
        size = tf.stop_gradient(embedded) * real
        scale = self.epsilon * ops.sqrt(ops.sum(size * size, axis=(1, 2), keepdims=True))
        delta = scale * direction / (ops.sqrt(ops.sum(direction * direction, axis=(1, 2), keepdims=True)) + 1e-12)
        return y_pred, loss, delta

    def train_step(self, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred, loss, delta = self.adversarial_step(x, y, sample_weight)
            with self.embedding.perturbed(delta):
                y_moved = self(x, training=True)
            moved_loss = self._compute_loss(x=x, y=y, y_pred=y_moved, sample_weight=sample_weight, training=True)
            self._loss_tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=ops.shape(x)[0])
            total = self.optimizer.scale_loss(0.5 * (loss + moved_loss))
        # The embedding's gradient holds a row per token of both passes; summed
        # per word here, so the optimizer sees the gradient of the total loss
        # (Keras's Adam would square the two passes' rows separately).
        gradients = [
            tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient
            for gradient in tape.gradient(total, self.trainable_weights)
        ]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


_STANDARDIZE = {"none": None}


def make_vectorizer(config, training_texts=None, name="vectorizer", **kwargs):
    """A TextVectorization with the config's standardisation, adapted to `training_texts` if given."""
    vectorizer = keras.layers.TextVectorization(
        max_tokens=kwargs.pop("max_tokens", config.vocabulary_size),
        standardize=_STANDARDIZE.get(config.standardize, config.standardize),
        name=name,
        **kwargs,
    )
    if training_texts is not None:
        if not len(training_texts):
            raise ValueError("Received no `training_texts`; expected texts to build the vocabulary from.")
        import tensorflow as tf

        vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(training_texts)).batch(1024))
        if not set(vectorizer.get_vocabulary()) - {"", "[UNK]"}:
            # Training would stop in TensorFlow with "Table not initialized".
            raise UserError(
                f"The {len(training_texts)} training texts hold no word after standardisation "
                f"(`standardize={config.standardize!r}`): each is empty, white space or punctuation; expected "
                "texts with words, or another `standardize`."
            )
    return vectorizer


def ngram_features(config, training_texts, texts):
    """The baseline's n-gram features of `texts` (sparse unless TF-IDF).

    Unigrams up to `config.baseline_ngrams`-grams, the
    `config.baseline_vocabulary_size` most frequent in `training_texts`,
    encoded as `config.baseline_output_mode`. Shared by the bag-of-n-grams
    baseline and the hybrid model's n-gram term.
    """
    return make_vectorizer(
        config,
        training_texts,
        name="ngram_vectorizer",
        max_tokens=config.baseline_vocabulary_size,
        ngrams=config.baseline_ngrams,
        output_mode=config.baseline_output_mode,
        sparse=config.baseline_output_mode != "tf_idf",
    )(texts)


def build_model(config, num_classes=2, training_texts=None):
    """The recurrent text classifier: raw strings in, class probabilities out.

    Args:
        config: A `SentimentConfig`.
        num_classes: Number of classes (2 for binary); the output is a
            softmax over them.
        training_texts: Texts to build the vocabulary from. Without them the
            model's "vectorizer" layer must be adapted before training.
    """
    config.validate()
    require_int("num_classes", num_classes, minimum=2)
    texts = keras.Input(shape=(), dtype="string", name="texts")
    token_ids = make_vectorizer(config, training_texts)(texts)
    token_ids = TruncateTokens(config.max_length, name="truncate")(token_ids)
    if config.word_dropout:
        token_ids = WordDropout(config.word_dropout, seed=config.seed, name="word_dropout")(token_ids)
    embedding_class = PerturbableEmbedding if config.adversarial else keras.layers.Embedding
    hidden = embedding_class(config.vocabulary_size, config.embedding_dim, mask_zero=True, name="embedding")(token_ids)
    if config.spatial_dropout:
        hidden = keras.layers.SpatialDropout1D(config.spatial_dropout, seed=config.seed, name="spatial_dropout")(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="embedding_dropout")(hidden)
    recurrent_class = cells.layer_class(config.cell, config.implementation)
    for index in range(config.num_layers):
        last = index == config.num_layers - 1
        recurrent = recurrent_class(
            config.units,
            return_sequences=not last or config.pooling != "last",
            recurrent_dropout=config.recurrent_dropout,
            name=f"{config.cell}_{index + 1}",
            **cells.layer_arguments(config.cell, config.units, config.proj_units),
        )
        if config.bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent, name=f"bidirectional_{config.cell}_{index + 1}")
        hidden = recurrent(hidden)
    if config.pooling == "max":
        hidden = MaskedGlobalMaxPooling1D(name="max_pool")(hidden)
    elif config.pooling == "mean":
        hidden = keras.layers.GlobalAveragePooling1D(name="mean_pool")(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="head_dropout")(hidden)
    logits = keras.layers.Dense(num_classes, name="classifier")(hidden)
    if config.ngram_head:
        logits = keras.layers.Add(name="hybrid_logits")(
            [logits, _ngram_logits(config, num_classes, training_texts, texts)]
        )
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    name = f"sentiment_{config.single_model_name.replace('+', '_').replace('-', '_')}"
    if config.adversarial:
        return AdversarialTextClassifier(texts, probabilities, epsilon=config.adversarial, name=name)
    return keras.Model(texts, probabilities, name=name)


def _ngram_logits(config, num_classes, training_texts, texts):
    """The baseline's linear term: sparse n-gram features (config.baseline_*) -> logits, L2-penalised.

    The logits are `scale * (features @ W + b)` with `scale = ngram_learning_rate
    / learning_rate`. Adam's step on W does not depend on the gradient's
    size, so the scale makes the n-gram term move `scale` times faster than
    with the shared step size: in effect its own learning rate. The L2 penalty
    is on the effective weights `scale * W`, so `baseline_l2` means the same as
    in the baseline.
    """
    if config.baseline_output_mode == "tf_idf":
        raise UserError(
            "Received `ngram_head=True` with `baseline_output_mode='tf_idf'`; the n-gram head needs sparse "
            "features, expected 'multi_hot' or 'count'."
        )
    scale = (config.ngram_learning_rate or config.learning_rate) / config.learning_rate
    features = ngram_features(config, training_texts, texts)
    penalty = config.baseline_l2 * scale**2
    unscaled = keras.layers.Dense(
        num_classes,
        kernel_regularizer=keras.regularizers.L2(penalty) if penalty else None,
        name="ngram_weights",
    )(features)
    return keras.layers.Rescaling(scale, name="ngram_logits")(unscaled)


def build_ensemble(members, name="ensemble"):
    """One strings-in model whose probabilities are the mean of `members`' probabilities."""
    return ensembles.average_models(
        members, lambda _: [keras.Input(shape=(), dtype="string", name="texts")], "mean_probabilities", name
    )


def _builder_for(cell):
    def builder(config=None, num_classes=2, training_texts=None):
        config = dataclasses.replace(config or SentimentConfig(), cell=cell)
        return build_model(config, num_classes=num_classes, training_texts=training_texts)

    builder.__doc__ = f"`build_model` with `cell={cell!r}`."
    return builder


for _cell in cells.CELLS:
    registry.register(f"sentiment/{_cell}")(_builder_for(_cell))


def compile_model(model, learning_rate, clip_norm=0.0):
    optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clip_norm or None)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
