"""Adversarial training of the sentiment model (`adversarial=epsilon`): the move, the step, saving."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import training
from zoo.sentiment import SentimentConfig, build_model
from zoo.sentiment.model import AdversarialTextClassifier, PerturbableEmbedding, compile_model

TINY = SentimentConfig(units=5, embedding_dim=6, vocabulary_size=40, max_length=12, dropout=0.0, batch_size=6)
TEXTS = [
    "a fine and moving film",
    "dull , dull , dull",
    "the plot is thin but the cast is great",
    "not good",
    "good",
    "an utterly tedious mess of a film from start to finish",
]
LABELS = np.array([1, 0, 1, 0, 1, 0])


def _token_ids(model, texts):
    return np.asarray(model.get_layer("truncate")(model.get_layer("vectorizer")(tf.constant(texts))))


def _loss(model, texts, labels, delta=None):
    if delta is None:
        probabilities = model(tf.constant(texts))
    else:
        with model.embedding.perturbed(tf.constant(delta)):
            probabilities = model(tf.constant(texts))
    return float(keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy().mean())


@pytest.mark.parametrize("value", [-0.1, 1.0, True, "0.2"])
def test_adversarial_is_validated(value):
    with pytest.raises(ValueError, match="`adversarial`"):
        dataclasses.replace(TINY, adversarial=value).validate()


def test_without_adversarial_the_model_is_plain_keras():
    model = build_model(TINY, training_texts=TEXTS)
    assert not isinstance(model, AdversarialTextClassifier)
    assert type(model.get_layer("embedding")) is keras.layers.Embedding
    assert dataclasses.replace(TINY, adversarial=0.2).single_model_name == "bilstm+adv"


def test_the_move_has_the_asked_size_skips_padding_and_raises_the_loss():
    training.set_seed(3)
    model = build_model(dataclasses.replace(TINY, adversarial=0.25), training_texts=TEXTS)
    compile_model(model, 1e-3)
    assert isinstance(model, AdversarialTextClassifier) and isinstance(model.embedding, PerturbableEmbedding)
    _, loss, delta = model.adversarial_step(tf.constant(TEXTS), tf.constant(LABELS))
    delta = np.asarray(delta)
    ids = _token_ids(model, TEXTS)
    assert (ids == 0).any()  # the batch has padding
    embedded = np.asarray(model.get_layer("embedding")(ids)) * (ids != 0)[:, :, None]
    np.testing.assert_allclose(
        np.linalg.norm(delta, axis=(1, 2)), 0.25 * np.linalg.norm(embedded, axis=(1, 2)), rtol=1e-5
    )
    assert np.all(delta[ids == 0] == 0)
    clean = _loss(model, TEXTS, LABELS)
    np.testing.assert_allclose(float(loss), clean, rtol=1e-5)
    moved = _loss(model, TEXTS, LABELS, delta)
    # The gradient's direction raises the loss more than random moves of the same size.
    rng = np.random.default_rng(0)
    random_losses = []
    for _ in range(5):
        noise = rng.normal(size=delta.shape).astype("float32") * (ids != 0)[:, :, None]
        noise *= (np.linalg.norm(delta, axis=(1, 2)) / np.linalg.norm(noise, axis=(1, 2)))[:, None, None]
        random_losses.append(_loss(model, TEXTS, LABELS, noise))
    assert moved > clean + 1e-3
    assert moved > max(random_losses)


# No word repeats within this batch, so Keras's own step sees one gradient row per word, as the adversarial
# step does after summing its two passes' rows.
DISTINCT_TEXTS = [
    "a fine moving film",
    "dull plot",
    "the cast is great",
    "not good",
    "utterly tedious mess",
    "from start to finish",
]


def test_a_training_step_with_epsilon_zero_is_the_plain_step():
    weights = {}
    for epsilon in (None, 0.0, 0.3):
        training.set_seed(5)
        model = build_model(
            dataclasses.replace(TINY, adversarial=0.0 if epsilon is None else 0.1), training_texts=DISTINCT_TEXTS
        )
        if epsilon is not None:
            model.epsilon = epsilon
        compile_model(model, 1e-2)
        model.fit(tf.constant(DISTINCT_TEXTS), LABELS, batch_size=6, epochs=3, shuffle=False, verbose=0)
        weights[epsilon] = [np.asarray(w) for w in model.get_weights()]
    for plain, adversarial in zip(weights[None], weights[0.0]):
        np.testing.assert_allclose(adversarial, plain, rtol=1e-5, atol=1e-6)
    # A real move changes the training.
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(weights[0.3], weights[0.0]))


def test_adversarial_training_lowers_the_moved_loss_and_round_trips(tmp_path):
    training.set_seed(1)
    model = build_model(dataclasses.replace(TINY, adversarial=0.3), training_texts=TEXTS)
    compile_model(model, 2e-2)
    history = model.fit(tf.constant(TEXTS * 4), np.tile(LABELS, 4), batch_size=6, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    _, _, delta = model.adversarial_step(tf.constant(TEXTS), tf.constant(LABELS))
    assert _loss(model, TEXTS, LABELS, np.asarray(delta)) < 0.69  # better than chance even when moved against
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is AdversarialTextClassifier and loaded.epsilon == pytest.approx(0.3)
    np.testing.assert_allclose(np.asarray(loaded(tf.constant(TEXTS))), np.asarray(model(tf.constant(TEXTS))), atol=1e-6)


def test_the_model_checks_its_arguments():
    texts = keras.Input(shape=(), dtype="string")
    plain = build_model(TINY, training_texts=TEXTS)
    with pytest.raises(ValueError, match="PerturbableEmbedding.*received Embedding"):
        AdversarialTextClassifier(plain.inputs, plain.outputs, epsilon=0.1)
    vectorized = keras.layers.TextVectorization(max_tokens=20)
    vectorized.adapt(TEXTS)
    outputs = keras.layers.GlobalMaxPooling1D()(keras.layers.Embedding(20, 3, name="words")(vectorized(texts)))
    with pytest.raises(ValueError, match="named 'embedding'; received none"):
        AdversarialTextClassifier(texts, outputs, epsilon=0.1)
    moving = build_model(dataclasses.replace(TINY, adversarial=0.1), training_texts=TEXTS)
    with pytest.raises(ValueError, match="`epsilon`.*got -1"):
        AdversarialTextClassifier(moving.inputs, moving.outputs, epsilon=-1)
