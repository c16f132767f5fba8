"""Sentiment components: loaders, splits, metrics, masking, baseline, TFDS, export module."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import registry
from zoo.sentiment import (
    SentimentConfig,
    build_baseline,
    build_model,
    classification_metrics,
    confusion_matrix,
    load_class_files,
    load_table,
    load_tfds,
    macro_f1,
    make_dataset,
    predict_probabilities,
    roc_auc,
    stratified_folds,
    stratified_split,
)
from zoo.sentiment.data import TextDataset
from zoo.sentiment.evaluate import average_ranks
from zoo.sentiment.model import compile_model

TINY = SentimentConfig(
    units=4,
    embedding_dim=6,
    vocabulary_size=50,
    max_length=12,
    dropout=0.0,
    epochs=2,
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


def write(path, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return str(path)


# ------------------------------------------------------------------ loaders
def test_csv_loader_reads_quoted_fields_and_sorts_classes(tmp_path):
    path = write(
        tmp_path / "reviews.csv", 'id,review,stars\n1,"good, really good",pos\n2,"bad\nvery bad",neg\n3,fine,pos\n'
    )
    data = load_table(path, "review", "stars")
    assert data.texts == ("good, really good", "bad\nvery bad", "fine")
    assert data.class_names == ("neg", "pos")
    assert data.labels.tolist() == [1, 0, 1]


def test_tsv_loader_with_numeric_labels_in_numeric_order(tmp_path):
    path = write(tmp_path / "reviews.tsv", "text\tlabel\nawful\t0\ngreat\t10\nokay\t2\n")
    data = load_table(path)
    assert data.class_names == ("0", "2", "10")
    assert data.labels.tolist() == [0, 2, 1]


def test_jsonl_loader_with_integer_labels_and_explicit_order(tmp_path):
    lines = [{"sentence": "great", "y": 1}, {"sentence": "poor", "y": 0}, {"sentence": "fine", "y": 1}]
    path = write(tmp_path / "data.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    data = load_table(path, "sentence", "y", class_names=("1", "0"))
    assert data.class_names == ("1", "0")
    assert data.labels.tolist() == [0, 1, 0]


def test_class_files_skip_blank_lines_and_byte_order_mark(tmp_path):
    positive = write(tmp_path / "good.txt", "\ufeffa joy\n\n  lovely  \n")
    negative = write(tmp_path / "bad.txt", "a bore\r\nugly\r\n")
    data = load_class_files([("pos", positive), ("neg", negative)])
    assert data.texts == ("a joy", "lovely", "a bore", "ugly")
    assert data.class_names == ("neg", "pos")
    assert data.labels.tolist() == [1, 1, 0, 0]


def test_undecodable_bytes_name_file_offset_and_line_and_encoding_option_reads_them(tmp_path):
    path = write(tmp_path / "neg.txt", b"good\nbad \xe9t\xe9\n")
    other = write(tmp_path / "pos.txt", "fine\n")
    with pytest.raises(ValueError, match=r"neg\.txt.*0xe9 at byte offset 9 \(line 2\).*--encoding"):
        load_class_files([("neg", path), ("pos", other)])
    data = load_class_files([("neg", path), ("pos", other)], encoding="cp1252")
    assert data.texts[1] == "bad été"


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        (
            "a.csv",
            "review,label\nok,pos\n",
            {"text_column": "text"},
            r"text column 'text' is missing.*\['review', 'label'\]",
        ),
        ("a.csv", "text,stars\nok,pos\n", {}, r"label column 'label' is missing"),
        ("a.jsonl", '{"text": "ok"}\n', {}, r"label column 'label' is missing.*line 1"),
        ("a.csv", "", {}, r"is empty"),
        ("a.csv", "text,label\n", {}, r"no examples"),
        ("a.csv", "text,label\nok,pos\nbad,neg,extra\n", {}, r"line 3.*3 fields where the header has 2"),
        (
            "a.csv",
            "text,label\nok,pos\nbad,meh\n",
            {"class_names": ("neg", "pos")},
            r"Unknown label value 'meh' at line 3",
        ),
        ("a.jsonl", '{"text": "ok", "label": 1}\nnot json\n', {}, r"Line 2.*not valid JSON"),
        ("a.jsonl", '["ok", 1]\n', {}, r"JSON list; expected an object"),
        ("a.txt", "text,label\n", {}, r"Cannot tell the format.*'\.txt'"),
        ("a.csv", "text,label\nok,\n", {}, r"label at line 2.*empty"),
    ],
)
def test_table_errors(tmp_path, name, content, kwargs, message):
    path = write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        load_table(path, **kwargs)


def test_class_file_errors(tmp_path):
    empty = write(tmp_path / "empty.txt", "\n \n")
    full = write(tmp_path / "full.txt", "text\n")
    with pytest.raises(ValueError, match=r"empty\.txt' is empty"):
        load_class_files([("pos", full), ("neg", empty)])
    with pytest.raises(ValueError, match=r"more than one --class-file.*\['pos'\]"):
        load_class_files([("pos", full), ("pos", full)])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_class_files([("pos", full), ("neg", str(tmp_path / "missing.txt"))])
    one_class = load_class_files([("pos", full)])
    with pytest.raises(ValueError, match=r"only 1 class\(es\) \(pos\)"):
        one_class.require_classes(2)


def test_tfds_loader_with_mock_data_maps_class_label_names(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10):
        data = load_tfds("imdb_reviews", data_dir=str(tmp_path), split="train")
    assert len(data) == 10
    assert data.class_names == ("neg", "pos")
    assert all(isinstance(text, str) for text in data.texts)
    assert set(data.labels.tolist()) <= {0, 1}


def test_tfds_without_download_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"imdb_reviews.*--download"):
        load_tfds("imdb_reviews", data_dir=str(tmp_path), download=False)


# ------------------------------------------------------------------- splits
def test_stratified_folds_keep_class_ratios_and_partition_the_data():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    folds = stratified_folds(labels, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    for fold in folds:
        assert np.bincount(labels[fold], minlength=3).tolist() == [12, 6, 2]
    again = stratified_folds(labels, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = stratified_folds(labels, 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_stratified_folds_spread_leftovers_within_one_per_class():
    labels = np.array([0] * 23 + [1] * 17)
    folds = stratified_folds(labels, 4, seed=0)
    counts = np.array([np.bincount(labels[fold], minlength=2) for fold in folds])
    assert counts.sum(axis=0).tolist() == [23, 17]
    assert (counts.max(axis=0) - counts.min(axis=0)).max() <= 1
    assert max(len(fold) for fold in folds) - min(len(fold) for fold in folds) <= 1


def test_stratified_split_holds_out_each_class_proportionally():
    labels = np.array([0] * 80 + [1] * 20)
    kept, held = stratified_split(labels, 0.25, seed=1)
    assert np.bincount(labels[held]).tolist() == [20, 5]
    assert np.bincount(labels[kept]).tolist() == [60, 15]
    assert not set(kept) & set(held)


def test_split_parts_are_disjoint_slices_of_one_shuffle():
    labels = np.array([0] * 80 + [1] * 20)
    parts = [stratified_split(labels, 0.25, seed=1, part=part) for part in range(3)]
    assert [kept.tolist() for kept in parts[0]] == [kept.tolist() for kept in stratified_split(labels, 0.25, seed=1)]
    for kept, held in parts:
        assert np.bincount(labels[held]).tolist() == [20, 5]
        assert sorted(kept.tolist() + held.tolist()) == list(range(100))
    assert not set(parts[0][1]) & set(parts[1][1]) and not set(parts[1][1]) & set(parts[2][1])
    assert not set(parts[0][1]) & set(parts[2][1])
    with pytest.raises(ValueError, match="`part=3`.*class index 0 has 80 examples"):
        stratified_split(labels, 0.25, seed=1, part=3)  # a fourth slice would leave no example kept
    with pytest.raises(ValueError, match="`part`: -1"):
        stratified_split(labels, 0.25, seed=1, part=-1)


def test_split_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs at least 10 per class"):
        stratified_folds(np.array([0] * 20 + [1] * 5), 10, seed=0)
    with pytest.raises(ValueError, match="`folds`"):
        stratified_folds(np.array([0, 1]), 1, seed=0)
    with pytest.raises(ValueError, match="at least 2 per class"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, seed=0)


# ------------------------------------------------------------------ metrics
def test_roc_auc_counts_ties_as_one_half():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])
    # Positive/negative pairs: 0.4 beats 0.1, ties 0.4 (1.5); 0.8 beats two, ties one (2.5); 0.9 beats all (3).
    assert roc_auc(labels, scores) == pytest.approx(7.0 / 9.0, abs=1e-12)
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 0], [0.9, 0.1]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


def test_confusion_matrix_and_macro_f1_by_hand():
    true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    predicted = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    matrix = confusion_matrix(true, predicted, 2)
    assert matrix.tolist() == [[3, 1], [2, 4]]
    # F1 = 2TP / (2TP + FP + FN): class 0: 6/9, class 1: 8/11.
    assert macro_f1(matrix) == pytest.approx((6 / 9 + 8 / 11) / 2, abs=1e-12)


def test_classification_metrics_binary_and_three_classes():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    metrics = classification_metrics([0, 0, 1, 1], probabilities, ("neg", "pos"))
    assert metrics["accuracy"] == 0.5
    assert metrics["confusion_matrix"] == [[1, 1], [1, 1]]
    assert metrics["roc_auc"] == pytest.approx(0.75)  # pos scores 0.7, 0.2 vs neg 0.1, 0.6: 3 of 4 pairs ordered
    three = classification_metrics([0, 1, 2, 2], np.eye(3)[[0, 1, 1, 2]], ("a", "b", "c"))
    assert three["roc_auc"] is None
    assert three["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert three["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


# ------------------------------------------------------------------- models
def _predict(model, texts):
    return np.asarray(model(tf.constant(texts), training=False))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(cell="lstm", bidirectional=True, pooling="max"),
        dict(cell="gru", bidirectional=False, pooling="last", num_layers=2),
        dict(cell="rnn", bidirectional=True, pooling="mean"),
    ],
)
def test_padding_and_longer_max_length_do_not_change_predictions(overrides):
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(TINY, **overrides)
    model = build_model(config, num_classes=3, training_texts=TEXTS)
    short = ["good", "not good at all"]
    alone = _predict(model, short)
    # In a batch with a 12-token text, the short texts get 8 to 11 padded steps.
    with_long_neighbour = _predict(model, short + [TEXTS[-1]])[:2]
    np.testing.assert_allclose(with_long_neighbour, alone, atol=1e-5)
    # The same weights with a longer max_length (more room for padding) agree too.
    longer = build_model(dataclasses.replace(config, max_length=40), num_classes=3, training_texts=TEXTS)
    longer.set_weights(model.get_weights())
    np.testing.assert_allclose(_predict(longer, short + [TEXTS[-1]]), _predict(model, short + [TEXTS[-1]]), atol=1e-5)
    # ... and the masks matter: the model's output does depend on the words.
    assert np.abs(alone[0] - alone[1]).max() > 1e-4


def test_max_length_truncates_to_the_first_tokens():
    keras.utils.set_random_seed(1)
    model = build_model(dataclasses.replace(TINY, max_length=3), training_texts=TEXTS)
    np.testing.assert_allclose(
        _predict(model, ["the plot is thin but the cast is great"]), _predict(model, ["the plot is"]), atol=1e-6
    )
    empty = _predict(model, ["", ""])
    assert empty.shape == (2, 2) and np.allclose(empty.sum(axis=1), 1.0)


def test_registry_builds_each_cell_and_rejects_bad_class_counts():
    assert {"sentiment/rnn", "sentiment/lstm", "sentiment/gru"} <= set(registry.names("sentiment/"))
    model = registry.get("sentiment/gru")(TINY, num_classes=2, training_texts=TEXTS)
    assert "gru" in model.name
    assert any("gru" in layer.name for layer in model.layers)
    with pytest.raises(ValueError, match="`num_classes`"):
        build_model(TINY, num_classes=1)
    with pytest.raises(ValueError, match="`units`"):
        build_model(dataclasses.replace(TINY, units=0))


def _toy_dataset(count, seed):
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "movie", "film", "plot", "story", "was", "is", "very", "quite"]
    texts, labels = [], []
    for index in range(count):
        label = index % 2
        words = list(rng.choice(filler, size=5, replace=False)) + ["splendid" if label else "dreadful"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return TextDataset(tuple(texts), np.array(labels), ("neg", "pos"), "toy")


@pytest.mark.parametrize("mode", ["multi_hot", "tf_idf"])
def test_baseline_learns_a_separable_toy_set(mode):
    keras.utils.set_random_seed(0)
    train, test = _toy_dataset(80, seed=0), _toy_dataset(40, seed=1)
    config = dataclasses.replace(TINY, baseline_output_mode=mode, baseline_learning_rate=0.05)
    model = compile_model(build_baseline(config, 2, train.texts), config.baseline_learning_rate)
    before = classification_metrics(test.labels, predict_probabilities(model, test), test.class_names)
    model.fit(make_dataset(train, 16, shuffle=True, seed=0), epochs=15, verbose=0)
    after = classification_metrics(test.labels, predict_probabilities(model, test), test.class_names)
    assert after["accuracy"] == 1.0 and after["roc_auc"] == 1.0
    assert before["accuracy"] < 0.9
    assert model.get_layer("logistic_regression").kernel.shape[0] <= 200


@pytest.mark.parametrize("standardize", ["lower_and_strip_punctuation", "lower", "strip_punctuation", None])
def test_python_token_ids_equal_the_vectorizer(standardize):
    from zoo.sentiment.export import python_token_ids

    # Upper case beyond ASCII, white space beyond ASCII, punctuation inside words, empty and long texts.
    texts = [
        "Splendid!!  FILM\tand\ndull.",
        "\u00c9COLE \u00c9tait splendid",
        "a\u00a0b splendid\u2003film",
        "it's splendid-ish, (really) [UNK]",
        "",
        "   ",
        "film " * 9,
        "never seen before",
    ]
    vectorizer = keras.layers.TextVectorization(standardize=standardize, max_tokens=40)
    vectorizer.adapt(texts[:-1])
    max_length = 6
    wanted = keras.ops.convert_to_numpy(vectorizer(tf.constant(texts)))[:, :max_length]
    wanted = np.pad(wanted, ((0, 0), (0, max_length - wanted.shape[1])))
    vocabulary = vectorizer.get_vocabulary()
    got = python_token_ids(texts, vocabulary, vectorizer.get_config()["standardize"], max_length)
    np.testing.assert_array_equal(got, wanted)
    assert got.dtype == np.int32 and (got == 1).any()  # unknown words
    if standardize in ("lower_and_strip_punctuation", "lower"):
        # TensorFlow lower-cases ASCII letters only, and splits on ASCII white space only.
        assert "\u00c9cole" in vocabulary and "\u00e9cole" not in vocabulary and "a\u00a0b" in vocabulary


def test_ours_against_keras_pairs_the_folds_where_both_trained():
    from zoo.sentiment.evaluate import compare_implementations, format_comparison

    def model(accuracy, seconds, epochs_run=3):
        return {
            "accuracy": accuracy,
            "epoch_seconds": seconds,
            "train_seconds": sum(map(sum, seconds)) if seconds and isinstance(seconds[0], list) else sum(seconds),
            "epochs_run": epochs_run,
        }

    folds = [
        {"models": {"bilstm": model(0.70, [9.0, 1.0, 1.0]), "bilstm-keras": model(0.72, [5.0, 2.0, 2.0])}},
        {"models": {"bilstm": model(0.80, [9.0, 1.0, 3.0]), "bilstm-keras": model(0.76, [5.0, 4.0, 2.0])}},
        {"models": {"bilstm": model(0.90, [9.0, 1.0])}},  # Keras's did not train here: not compared
        # An ensemble's epochs, per member: every member's first is left out.
        {
            "models": {
                "bigru-ensemble2": model(0.6, [[4.0, 1.0], [4.0, 1.0]], [2, 2]),
                "bigru-keras-ensemble2": model(0.6, [[4.0, 3.0], [4.0, 3.0]], [2, 2]),
            }
        },
    ]
    pairs = [
        ("bilstm", "bilstm", "bilstm-keras"),
        ("bigru-ensemble2", "bigru-ensemble2", "bigru-keras-ensemble2"),
        ("birnn", "birnn", "birnn-keras"),
    ]
    lstm, gru = compare_implementations({"folds": folds}, pairs)
    assert lstm["folds"] == 2
    assert lstm["ours_accuracy"] == pytest.approx((0.75, np.std([0.70, 0.80], ddof=1)))
    assert lstm["accuracy_difference"] == pytest.approx((-0.01, np.std([0.02, -0.04], ddof=1)))
    assert lstm["ours_seconds_per_epoch"] == 1.0 and lstm["keras_seconds_per_epoch"] == 2.0
    assert lstm["epoch_time_ratio"] == 2.0 and lstm["fold_time_ratio"] == pytest.approx(10.0 / 12.0)
    assert (gru["folds"], gru["ours_seconds_per_epoch"], gru["keras_seconds_per_epoch"], gru["ours_epochs"]) == (
        1,
        1.0,
        3.0,
        4.0,
    )
    row = format_comparison([lstm]).splitlines()[2].split()
    assert row[:2] == ["bilstm", "2"] and "2.00x" in row and "-1.00" in row
