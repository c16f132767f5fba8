"""Text classifiers that take raw strings: the recurrent models and their builders.

strings -> TextVectorization (standardise, split, look up; padded to the
longest text in the batch) -> TruncateTokens(max_length) -> Embedding with
`mask_zero=True` -> our recurrent layers (optionally bidirectional, stacked)
-> pooling over the unpadded steps -> softmax over the classes.

Padding never changes a prediction: the embedding's mask tells the
recurrent layers to carry their state unchanged over padded steps, and the
pooling ignores them.
"""

import dataclasses

import keras
from keras import ops

import layers
from zoo import registry
from zoo.sentiment.config import SentimentConfig

PACKAGE = "rnnzoo_sentiment"
RECURRENT_LAYERS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


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
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            raise ValueError(f"Received an invalid value for argument `max_length`, expected a positive integer, got {max_length!r}.")
        self.max_length = max_length

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
    return vectorizer


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
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Received an invalid value for argument `num_classes`, expected an integer >= 2, got {num_classes!r}.")
    texts = keras.Input(shape=(), dtype="string", name="texts")
    token_ids = make_vectorizer(config, training_texts)(texts)
    token_ids = TruncateTokens(config.max_length, name="truncate")(token_ids)
    hidden = keras.layers.Embedding(config.vocabulary_size, config.embedding_dim, mask_zero=True, name="embedding")(token_ids)
    hidden = keras.layers.Dropout(config.dropout, name="embedding_dropout")(hidden)
    recurrent_class = RECURRENT_LAYERS[config.cell]
    for index in range(config.num_layers):
        last = index == config.num_layers - 1
        recurrent = recurrent_class(
            config.units,
            return_sequences=not last or config.pooling != "last",
            recurrent_dropout=config.recurrent_dropout,
            name=f"{config.cell}_{index + 1}",
        )
        if config.bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent, name=f"bidirectional_{config.cell}_{index + 1}")
        hidden = recurrent(hidden)
    if config.pooling == "max":
        hidden = MaskedGlobalMaxPooling1D(name="max_pool")(hidden)
    elif config.pooling == "mean":
        hidden = keras.layers.GlobalAveragePooling1D(name="mean_pool")(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="head_dropout")(hidden)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(hidden)
    return keras.Model(texts, probabilities, name=f"sentiment_{config.model_name}")


def _builder_for(cell):
    def builder(config=None, num_classes=2, training_texts=None):
        config = dataclasses.replace(config or SentimentConfig(), cell=cell)
        return build_model(config, num_classes=num_classes, training_texts=training_texts)

    builder.__doc__ = f"`build_model` with `cell={cell!r}`."
    return builder


for _cell in RECURRENT_LAYERS:
    registry.register(f"sentiment/{_cell}")(_builder_for(_cell))


def compile_model(model, learning_rate, clip_norm=0.0):
    optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clip_norm or None)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
