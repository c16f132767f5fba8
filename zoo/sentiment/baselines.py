"""The bag-of-n-grams baseline: logistic regression on binary, count or TF-IDF n-gram features.

strings -> TextVectorization(ngrams=2, output_mode="multi_hot" | "count" |
"tf_idf") -> one Dense layer with softmax and an L2 penalty, trained with
Keras. With unigrams and bigrams this is the classical linear text classifier
that a recurrent model has to beat to earn its cost.

"multi_hot" and "count" features stay sparse (tf.SparseTensor) all the way
into the Dense layer, so an epoch over ten thousand sentences with a 100k
n-gram vocabulary takes seconds. Keras's TextVectorization cannot produce
sparse TF-IDF (its idf lookup fails on sparse output in Keras 3.15), so
"tf_idf" builds a dense (batch, vocabulary) matrix and is roughly 30 times
slower.
"""

import keras

from zoo import registry
from zoo.config import require_int
from zoo.sentiment.model import ngram_features


@registry.register("sentiment/baseline")
def build_baseline(config, num_classes=2, training_texts=None):
    """Logistic regression over n-gram features of raw strings.

    Args:
        config: A `SentimentConfig` (uses `standardize`, `baseline_ngrams`,
            `baseline_output_mode`, `baseline_vocabulary_size`, `baseline_l2`).
        num_classes: Number of classes (softmax output).
        training_texts: Texts to build the n-gram vocabulary (and, for
            TF-IDF, the inverse document frequencies) from.
    """
    config.validate()
    require_int("num_classes", num_classes, minimum=2)
    texts = keras.Input(shape=(), dtype="string", name="texts")
    features = ngram_features(config, training_texts, texts)
    probabilities = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=keras.regularizers.L2(config.baseline_l2) if config.baseline_l2 else None,
        name="logistic_regression",
    )(features)
    return keras.Model(
        texts, probabilities, name=f"ngram{config.baseline_ngrams}_{config.baseline_output_mode}_logistic_regression"
    )
