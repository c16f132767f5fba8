"""Sentiment quality options: word and spatial dropout, the n-gram hybrid head, ensembles, monitor, bucketing."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.sentiment import SentimentConfig, build_model, make_dataset
from zoo.sentiment.data import TextDataset
from zoo.sentiment.evaluate import (
    classification_metrics,
    format_table,
    load_trained_model,
    predict_probabilities,
    summarize,
)
from zoo.sentiment.model import WordDropout, build_ensemble, compile_model
from zoo.sentiment.train import member_splits, train_and_evaluate, train_baseline, train_recurrent

TINY = SentimentConfig(
    units=4,
    embedding_dim=6,
    vocabulary_size=50,
    max_length=12,
    dropout=0.0,
    epochs=1,
    batch_size=8,
    baseline_vocabulary_size=200,
)
TEXTS = [
    "a fine and moving film",
    "dull , dull , dull",
    "the plot is thin but the cast is great",
    "not good",
    "good",
    "an utterly tedious mess of a film from start to finish",
]


def _predict(model, texts, training=False):
    return np.asarray(model(tf.constant(texts), training=training))


def _toy_dataset(count, seed):
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "movie", "film", "plot", "story", "was", "is", "very", "quite", "so", "and"]
    texts, labels = [], []
    for index in range(count):
        label = index % 2
        words = list(rng.choice(filler, size=2 + (index * 7) % 9, replace=True)) + ["splendid" if label else "dreadful"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return TextDataset(tuple(texts), np.array(labels), ("neg", "pos"), "toy")


# ------------------------------------------------------------ config checks
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(word_dropout=1.0), "`word_dropout`"),
        (dict(spatial_dropout=-0.1), "`spatial_dropout`"),
        (dict(dropout=True), "`dropout`: True; expected a number in \\[0, 1\\)"),
        (dict(recurrent_dropout="0.2"), "`recurrent_dropout`: '0.2'"),
        (dict(ensemble=0), "`ensemble`"),
        (dict(monitor="accuracy"), "`monitor`.*val_accuracy"),
        (dict(member_validation="own"), "`member_validation`.*disjoint"),
        (dict(member_validation="disjoint", ensemble=10, validation_fraction=0.1), "`ensemble=10`.*below 1"),
    ],
)
def test_new_fields_are_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **overrides).validate()


def test_model_names_say_hybrid_and_ensemble():
    config = dataclasses.replace(TINY, ngram_head=True, ensemble=3)
    assert config.single_model_name == "bilstm+ngrams"
    assert config.model_name == "bilstm+ngrams-ensemble3"
    assert TINY.model_name == TINY.single_model_name == "bilstm"
    assert dataclasses.replace(config, member_validation="disjoint").model_name == "bilstm+ngrams-ensemble3-disjoint"
    assert (
        dataclasses.replace(TINY, member_validation="disjoint").model_name == "bilstm"
    )  # one model: nothing to rotate


# ------------------------------------------------------------- word dropout
def test_word_dropout_replaces_words_by_oov_in_training_only():
    layer = WordDropout(0.3, seed=1)
    ids = np.tile(np.arange(2, 42, dtype=np.int64), (50, 1))
    ids[:, 30:] = 0  # padding
    dropped = np.asarray(layer(ids, training=True))
    changed = dropped != ids
    assert set(np.unique(dropped[changed]).tolist()) == {1}  # only to out-of-vocabulary
    assert not changed[:, 30:].any()  # padding is never touched
    assert 0.25 < changed[:, :30].mean() < 0.35
    np.testing.assert_array_equal(np.asarray(layer(ids, training=False)), ids)
    # Successive training calls draw new noise.
    assert (np.asarray(layer(ids, training=True)) != dropped).any()
    with pytest.raises(ValueError, match="`rate`"):
        WordDropout(1.0)


def test_word_dropout_changes_training_outputs_but_not_inference():
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(TINY, word_dropout=0.5)
    model = build_model(config, training_texts=TEXTS)
    plain = build_model(dataclasses.replace(config, word_dropout=0.0), training_texts=TEXTS)
    plain.set_weights(model.get_weights())  # word dropout has no weights: same weight list
    np.testing.assert_allclose(_predict(model, TEXTS), _predict(plain, TEXTS), atol=1e-6)
    assert np.abs(_predict(model, TEXTS, training=True) - _predict(plain, TEXTS)).max() > 1e-4
    np.testing.assert_allclose(_predict(plain, TEXTS, training=True), _predict(plain, TEXTS), atol=1e-6)


# ---------------------------------------------------------- spatial dropout
def test_spatial_dropout_drops_whole_embedding_dimensions_in_training_only():
    keras.utils.set_random_seed(0)
    model = build_model(dataclasses.replace(TINY, spatial_dropout=0.5, embedding_dim=40), training_texts=TEXTS)
    layer = model.get_layer("spatial_dropout")
    embedded = np.ones((3, 7, 40), dtype="float32")
    out = np.asarray(layer(embedded, training=True))
    # Each (text, dimension) is zero at every step or scaled by 1 / (1 - rate) at every step.
    assert np.all((out == 0.0).all(axis=1) | np.isclose(out, 2.0).all(axis=1))
    assert 0.2 < (out[:, 0, :] == 0).mean() < 0.8
    np.testing.assert_array_equal(np.asarray(layer(embedded, training=False)), embedded)


# ------------------------------------------------------------- hybrid head
def test_ngram_head_adds_a_linear_ngram_logit_to_the_recurrent_logit():
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(TINY, ngram_head=True)
    model = build_model(config, training_texts=TEXTS)
    ngram_kernel = model.get_layer("ngram_weights").kernel
    assert ngram_kernel.shape[1] == 2 and 20 < ngram_kernel.shape[0] <= 200  # unigrams and bigrams of TEXTS
    ngram_kernel.assign(np.random.default_rng(0).normal(size=ngram_kernel.shape).astype("float32"))
    parts = keras.Model(model.input, [model.get_layer("classifier").output, model.get_layer("ngram_logits").output])
    recurrent_logits, ngram_logits = (np.asarray(part) for part in parts(tf.constant(TEXTS)))
    assert np.abs(ngram_logits).max() > 0.1
    expected = np.exp(recurrent_logits + ngram_logits)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_predict(model, TEXTS), expected, atol=1e-5)
    # The recurrent part alone is the model without the head, given the same recurrent weights.
    plain = build_model(dataclasses.replace(config, ngram_head=False), training_texts=TEXTS)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    alone = np.exp(recurrent_logits) / np.exp(recurrent_logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_predict(plain, TEXTS), alone, atol=1e-5)
    # Padding still changes nothing: a long neighbour in the batch.
    np.testing.assert_allclose(_predict(model, TEXTS[3:5] + [TEXTS[-1]])[:2], _predict(model, TEXTS[3:5]), atol=1e-5)


def test_ngram_learning_rate_scales_the_ngram_terms_adam_step():
    config = dataclasses.replace(TINY, ngram_head=True, baseline_l2=0.0, clip_norm=0.0, learning_rate=0.01)
    models = {}
    for factor in (1.0, 3.0):
        keras.utils.set_random_seed(0)
        model = build_model(dataclasses.replace(config, ngram_learning_rate=0.01 * factor), training_texts=TEXTS)
        weights = model.get_layer("ngram_weights")
        # The same function in both models: W / factor, scaled back up by `factor`.
        weights.kernel.assign(np.full(weights.kernel.shape, 0.3 / factor, "float32"))
        weights.bias.assign(np.zeros(2, "float32"))
        compile_model(model, config.learning_rate)
        models[factor] = model
    logits = {
        factor: keras.Model(model.input, model.get_layer("ngram_logits").output) for factor, model in models.items()
    }
    texts = tf.constant(TEXTS)
    before = {factor: np.asarray(part(texts)) for factor, part in logits.items()}
    np.testing.assert_allclose(before[1.0], before[3.0], atol=1e-6)
    np.testing.assert_allclose(_predict(models[1.0], TEXTS), _predict(models[3.0], TEXTS), atol=1e-6)
    for model in models.values():
        model.train_on_batch(texts, np.array([1, 0, 1, 0, 1, 0]))
    change = {factor: np.asarray(part(texts)) - before[factor] for factor, part in logits.items()}
    assert np.abs(change[1.0]).max() > 1e-3
    # Adam's first step moves every weight by about the step size: the n-gram logits move 3 times as far
    # (to within Adam's epsilon, which matters for the n-grams whose gradients nearly cancel in the batch).
    np.testing.assert_allclose(change[3.0], 3.0 * change[1.0], rtol=0.03, atol=1e-4)
    assert not np.allclose(change[3.0], change[1.0], rtol=0.5)
    with pytest.raises(ValueError, match="`ngram_learning_rate`"):
        dataclasses.replace(config, ngram_learning_rate=0.0).validate()


def test_ngram_head_rejects_dense_tf_idf_features():
    with pytest.raises(ValueError, match="ngram_head.*tf_idf"):
        build_model(dataclasses.replace(TINY, ngram_head=True, baseline_output_mode="tf_idf"), training_texts=TEXTS)


# ---------------------------------------------------------------- ensembles
def test_ensemble_probabilities_are_the_mean_of_the_members():
    keras.utils.set_random_seed(0)
    members = [build_model(dataclasses.replace(TINY, seed=seed), training_texts=TEXTS) for seed in range(3)]
    for member in members:  # make the members clearly different
        kernel = member.get_layer("classifier").kernel
        kernel.assign(np.random.default_rng(len(kernel.name)).normal(size=kernel.shape).astype("float32") * 3)
    each = [_predict(member, TEXTS) for member in members]
    ensemble = build_ensemble(members)
    np.testing.assert_allclose(_predict(ensemble, TEXTS), np.mean(each, axis=0), atol=1e-6)
    assert np.abs(each[0] - each[1]).max() > 1e-3
    with pytest.raises(ValueError, match="at least 2"):
        build_ensemble(members[:1])


def test_trained_ensemble_saves_the_average_and_member_one_is_the_single_model(tmp_path):
    train, validation = _toy_dataset(48, seed=0), _toy_dataset(16, seed=1)
    config = dataclasses.replace(TINY, ensemble=2, seed=5)
    ensemble, summary, members = train_recurrent(config, 2, train, validation, str(tmp_path / "ensemble"))
    assert len(members) == 2 and summary["epochs_run"] == [1, 1]
    reloaded = keras.saving.load_model(str(tmp_path / "ensemble" / "model.keras"), safe_mode=True)
    member_files = [keras.saving.load_model(str(tmp_path / "ensemble" / f"member-{k}" / "model.keras")) for k in (1, 2)]
    mean = np.mean([predict_probabilities(member, validation) for member in member_files], axis=0)
    np.testing.assert_allclose(predict_probabilities(reloaded, validation), mean, atol=1e-6)
    np.testing.assert_allclose(predict_probabilities(ensemble, validation), mean, atol=1e-6)
    # Member 1 trains with the config's own seed: the same model as `ensemble=1`.
    single, _, _ = train_recurrent(
        dataclasses.replace(config, ensemble=1), 2, train, validation, str(tmp_path / "single")
    )
    np.testing.assert_allclose(
        predict_probabilities(single, validation), predict_probabilities(members[0], validation), atol=1e-5
    )
    assert (
        np.abs(predict_probabilities(members[0], validation) - predict_probabilities(members[1], validation)).max()
        > 1e-4
    )


def test_a_resumed_ensemble_reuses_finished_members_and_trains_the_rest(tmp_path):
    train, validation = _toy_dataset(48, seed=0), _toy_dataset(16, seed=1)
    config = dataclasses.replace(TINY, ensemble=2, seed=5)
    model_dir = tmp_path / "ensemble"
    _, first_summary, first_members = train_recurrent(config, 2, train, validation, str(model_dir))
    kept = model_dir / "member-1" / "model.keras"
    kept_time = os.path.getmtime(kept)
    # As if the run had stopped while member 2 trained: its model and summary are missing.
    (model_dir / "member-2" / "member.json").unlink()
    (model_dir / "member-2" / "model.keras").unlink()
    messages = []
    ensemble, summary, members = train_recurrent(config, 2, train, validation, str(model_dir), log=messages.append)
    assert os.path.getmtime(kept) == kept_time
    assert any("member 1/2: finished earlier" in message for message in messages)
    assert any("member 2/2 (seed 1005)" in message for message in messages)
    assert (model_dir / "member-2" / "member.json").exists() and (model_dir / "member-2" / "model.keras").exists()
    assert summary["epochs_run"] == first_summary["epochs_run"]
    np.testing.assert_allclose(
        predict_probabilities(members[0], validation), predict_probabilities(first_members[0], validation), atol=1e-6
    )
    mean = np.mean([predict_probabilities(member, validation) for member in members], axis=0)
    np.testing.assert_allclose(predict_probabilities(ensemble, validation), mean, atol=1e-6)


def test_disjoint_members_each_hold_out_their_own_slice(tmp_path):
    toy = _toy_dataset(90, seed=2)
    data = TextDataset(
        tuple(f"{text} n{index}" for index, text in enumerate(toy.texts)), toy.labels, toy.class_names, toy.source
    )  # unique texts, so a text names its example
    shared = member_splits(dataclasses.replace(TINY, ensemble=3, validation_fraction=0.2), data)
    disjoint = member_splits(
        dataclasses.replace(TINY, ensemble=3, validation_fraction=0.2, member_validation="disjoint"), data
    )
    assert len(shared) == len(disjoint) == 3
    assert len({inner.texts for inner, _ in shared}) == 1  # every member: the same split
    # Member 1 keeps the single model's split; the three validation slices are disjoint and stratified.
    assert disjoint[0][0].texts == shared[0][0].texts and disjoint[0][1].texts == shared[0][1].texts
    held = [set(validation.texts) for _, validation in disjoint]
    assert [len(part) for part in held] == [18, 18, 18] and not (
        held[0] & held[1] or held[0] & held[2] or held[1] & held[2]
    )
    for inner, validation in disjoint:
        assert np.bincount(validation.labels).tolist() == [9, 9]
        assert sorted(inner.texts + validation.texts) == sorted(data.texts)
    # Trained through `train_recurrent`, member k learns from its own slice: member 2 differs from its shared twin.
    config = dataclasses.replace(TINY, ensemble=2, validation_fraction=0.2, seed=5)
    test = _toy_dataset(16, seed=1)
    _, _, with_shared = train_recurrent(
        config, 2, *shared[0], str(tmp_path / "shared"), splits=member_splits(config, data)
    )
    own = dataclasses.replace(config, member_validation="disjoint")
    _, _, with_own = train_recurrent(own, 2, *shared[0], str(tmp_path / "own"), splits=member_splits(own, data))
    np.testing.assert_allclose(
        predict_probabilities(with_own[0], test), predict_probabilities(with_shared[0], test), atol=1e-6
    )
    assert np.abs(predict_probabilities(with_own[1], test) - predict_probabilities(with_shared[1], test)).max() > 1e-4
    with pytest.raises(ValueError, match="1 member split.*\\(2\\)"):
        train_recurrent(config, 2, *shared[0], str(tmp_path / "bad"), splits=shared[:1])


def test_baseline_ensemble_is_the_control_on_the_same_splits(tmp_path):
    toy = _toy_dataset(80, seed=3)
    config = dataclasses.replace(
        TINY, ensemble=2, baseline_ensemble=3, member_validation="disjoint", baseline_epochs=2, validation_fraction=0.2
    )
    assert config.baseline_name == "baseline-ensemble3-disjoint"
    assert dataclasses.replace(config, member_validation="shared").baseline_name == "baseline-ensemble3"
    assert TINY.baseline_name == "baseline"
    report = train_and_evaluate(config, toy, _toy_dataset(20, seed=4), str(tmp_path), nested=True)
    assert sorted(report["models"]) == [
        "baseline",
        "baseline-ensemble3-disjoint",
        "bilstm",
        "bilstm-ensemble2-disjoint",
    ]
    entry = report["models"]["baseline-ensemble3-disjoint"]
    assert len(entry["epochs_run"]) == 3 and entry["monitor"] == "val_loss"
    # The saved baseline is the average of its members, and member 1 is the single baseline on the shared split.
    test = _toy_dataset(20, seed=4)
    members = [keras.saving.load_model(str(tmp_path / "baseline" / f"member-{k}" / "model.keras")) for k in (1, 2, 3)]
    each = [predict_probabilities(member, test) for member in members]
    np.testing.assert_allclose(
        predict_probabilities(load_trained_model(str(tmp_path), baseline=True), test), np.mean(each, axis=0), atol=1e-6
    )
    single, _, _ = train_baseline(
        dataclasses.replace(config, baseline_ensemble=1), 2, *member_splits(config, toy, 1)[0], str(tmp_path / "single")
    )
    np.testing.assert_allclose(predict_probabilities(single, test), each[0], atol=1e-6)
    assert report["models"]["baseline"]["ensemble_member"] == 1
    assert (
        report["models"]["baseline"]["accuracy"]
        == classification_metrics(test.labels, each[0], test.class_names)["accuracy"]
    )
    assert np.abs(each[1] - each[2]).max() > 1e-4
    with pytest.raises(ValueError, match="`baseline_ensemble`: 0"):
        dataclasses.replace(config, baseline_ensemble=0).validate()
    with pytest.raises(ValueError, match="`baseline_ensemble=5`.*below 1"):
        dataclasses.replace(config, baseline_ensemble=5).validate()


# ---------------------------------------------------------------- bucketing
def test_length_buckets_cover_every_text_once_with_less_padding():
    data = _toy_dataset(1000, seed=0)
    lengths = {text: len(text.split()) for text in data.texts}
    bucketed = make_dataset(data, 10, shuffle=True, seed=3, bucket_by_length=True)
    plain = make_dataset(data, 10, shuffle=True, seed=3)
    assert int(bucketed.cardinality()) == 100

    def epoch(dataset):
        texts, padded = [], 0
        for batch_texts, batch_labels in dataset:
            batch = [text.decode() for text in batch_texts.numpy()]
            for text, label in zip(batch, batch_labels.numpy()):
                assert ("splendid" in text) == bool(label)  # labels stay with their texts
            texts += batch
            padded += max(lengths[text] for text in batch) * len(batch)
        return texts, padded

    first, bucketed_steps = epoch(bucketed)
    second, _ = epoch(bucketed)
    assert sorted(first) == sorted(data.texts)
    assert first != second  # reshuffled every epoch
    _, plain_steps = epoch(plain)
    assert bucketed_steps < 0.8 * plain_steps
    again, _ = epoch(make_dataset(data, 10, shuffle=True, seed=3, bucket_by_length=True))
    assert again == first  # seeded
    with pytest.raises(ValueError, match="bucket_by_length.*shuffle"):
        make_dataset(data, 10, bucket_by_length=True)


def test_summary_reports_the_members_alone_over_all_folds():
    folds = [
        {
            "models": {
                "gru-ensemble2": {"accuracy": 0.8, "macro_f1": 0.8, "roc_auc": 0.9, "member_accuracies": [0.7, 0.75]}
            }
        },
        {
            "models": {
                "gru-ensemble2": {"accuracy": 0.9, "macro_f1": 0.9, "roc_auc": 0.9, "member_accuracies": [0.8, 0.85]}
            }
        },
    ]
    entry = summarize(folds)["gru-ensemble2"]
    assert entry["accuracy"]["mean"] == pytest.approx(0.85)
    assert entry["member_accuracy"]["mean"] == pytest.approx(0.775)
    assert entry["member_accuracy"]["std"] == pytest.approx(np.std([0.7, 0.75, 0.8, 0.85], ddof=1))
    assert entry["member_accuracy"]["count"] == 4
    assert "its 4 members alone reach 77.50 ± 6.45 % accuracy" in format_table({"summary": {"gru-ensemble2": entry}})
