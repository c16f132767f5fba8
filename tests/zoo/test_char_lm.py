"""Character language model pieces: corpus, streams, state carrying, Markov baselines, stepping."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import cells, registry
from zoo.char_lm import baselines as markov
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm.config import CharLMConfig

# ----------------------------------------------------------------------------- corpus


def test_streams_are_contiguous_and_continue_across_batches():
    ids = np.arange(23, dtype=np.int32)  # 2 streams of 11; (11 - 1) // 3 = 3 batches
    inputs, targets = data_lib.stream_batches(ids, batch_size=2, seq_len=3)
    assert inputs.shape == targets.shape == (3, 2, 3)
    np.testing.assert_array_equal(inputs[0], [[0, 1, 2], [11, 12, 13]])
    np.testing.assert_array_equal(inputs[1], [[3, 4, 5], [14, 15, 16]])
    np.testing.assert_array_equal(inputs[2], [[6, 7, 8], [17, 18, 19]])
    np.testing.assert_array_equal(targets, inputs + 1)
    positions = data_lib.stream_target_positions(23, batch_size=2, seq_len=3)
    np.testing.assert_array_equal(positions, [*range(1, 10), *range(12, 21)])
    np.testing.assert_array_equal(np.sort(targets.reshape(-1)), ids[positions])


def test_text_shorter_than_one_batch_is_an_error():
    data_lib.stream_batches(np.arange(8), batch_size=2, seq_len=3)  # exactly 2 x (3 + 1)
    with pytest.raises(ValueError, match=r"validation text has 7 characters, shorter than one batch .*\(8\)"):
        data_lib.stream_batches(np.arange(7), batch_size=2, seq_len=3, what="validation text")


def test_split_by_position_vocabulary_from_training_part_and_oov():
    corpus = data_lib.prepare_corpus("abcabcabca" + "bxz", validation_fraction=0.25)
    # round(13 * 0.75) = 10 training characters; 'x' and 'z' only occur in validation.
    assert corpus.vocabulary.characters == ["a", "b", "c"]
    assert corpus.vocabulary.size == 4
    np.testing.assert_array_equal(corpus.training_ids, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(corpus.validation_ids, [2, data_lib.OOV_ID, data_lib.OOV_ID])
    assert corpus.validation_unknown == 2
    assert corpus.vocabulary.decode([3, 0, 1]) == "ca"
    with pytest.raises(ValueError, match="validation_fraction"):
        data_lib.prepare_corpus("abc", validation_fraction=1.0)
    with pytest.raises(ValueError, match="empty"):
        data_lib.prepare_corpus("", validation_fraction=0.1)


def test_vocabulary_round_trip(tmp_path):
    vocabulary = data_lib.Vocabulary.from_text("héllo\nwörld")
    vocabulary.save(tmp_path / "v.json")
    again = data_lib.Vocabulary.read(tmp_path / "v.json")
    assert again.characters == vocabulary.characters
    np.testing.assert_array_equal(again.encode("wö!"), vocabulary.encode("wö!"))
    assert again.encode("!")[0] == data_lib.OOV_ID


def test_text_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_lib.read_text_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        data_lib.read_text_file(empty)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 ok".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid utf-8: byte\(s\) 0xe9 at byte offset 3 \(line 1\).*iconv"):
        data_lib.read_text_file(latin1)
    with pytest.raises(IsADirectoryError, match="directory"):
        data_lib.read_text_file(tmp_path)
    good = tmp_path / "good.txt"
    good.write_text("naïve\n", encoding="utf-8")
    assert data_lib.read_text_file(good) == "naïve\n"


def test_embedded_default_is_english_text_and_deterministic():
    text = data_lib.TextSource().load()
    assert len(text) > 300_000
    assert text == data_lib.embedded_text()
    assert "statement" in text


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    pieces = ["First Citizen:\nBefore we proceed", " any further, hear me speak.\n"]

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"text": pieces})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        text = data_lib.TextSource(tfds_name="tiny_shakespeare").load()
    assert text == "".join(pieces)


def test_tfds_without_download_names_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        data_lib.tfds_text("tiny_shakespeare", data_dir=str(tmp_path), download=False)


def test_two_sources_are_an_error():
    with pytest.raises(ValueError, match="at most one source"):
        data_lib.TextSource(text_path="a.txt", tfds_name="tiny_shakespeare")


# ----------------------------------------------------------------------------- Markov baselines


def test_kneser_ney_unigram_by_hand():
    # Counts a:2, b:1 -> D = n1 / (n1 + 2 n2) = 1/3; uniform over 3 ids below.
    model = markov.KneserNeyMarkov([1, 1, 2], order=0, vocabulary_size=3)
    np.testing.assert_allclose(model.distribution([]), [2 / 27, 17 / 27, 8 / 27])


def test_kneser_ney_bigram_by_hand():
    # "abaab": bigrams ab:2, ba:1, aa:1 -> D1 = 2 / (2 + 2) = 1/2.
    # Continuation counts a:2 (ba, aa), b:1 (ab) -> D0 = 1/3, P0 = [2, 17, 8] / 27.
    model = markov.KneserNeyMarkov([1, 2, 1, 1, 2], order=1, vocabulary_size=3)
    np.testing.assert_allclose(model.distribution([2, 1]), [4 / 162, 61 / 162, 97 / 162])
    np.testing.assert_allclose(model.distribution([1, 2]), [1 / 27, 22 / 27, 4 / 27])
    expected = -(math.log(97 / 162) + math.log(22 / 27)) / 2
    assert model.mean_nats([1, 2, 1], positions=[1, 2]) == pytest.approx(expected)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_kneser_ney_distributions_sum_to_one(order):
    ids = np.random.default_rng(order).integers(1, 6, size=300)
    model = markov.KneserNeyMarkov(ids, order=order, vocabulary_size=7)
    for history in ([], [3], [1, 2], [5, 5, 5], [6, 6, 6]):  # 6 never occurs
        distribution = model.distribution(history)
        assert distribution.sum() == pytest.approx(1.0)
        assert distribution.min() > 0


def test_higher_orders_learn_a_periodic_text():
    ids = np.tile([1, 2, 3, 4], 200)
    table = markov.markov_table(ids, ids, np.arange(10, 400), orders=[0, 1], vocabulary_size=5)
    assert table[0]["nats_per_char"] == pytest.approx(math.log(4), abs=0.02)
    assert table[1]["nats_per_char"] < 0.01
    assert table[1]["bits_per_char"] == pytest.approx(table[1]["nats_per_char"] / math.log(2))


# ----------------------------------------------------------------------------- model and state


def _tiny_config(**changes):
    base = dict(cell="lstm", units=8, embedding_dim=4, num_layers=2, seq_len=5, batch_size=3, dropout=0.0)
    base.update(changes)
    return CharLMConfig(**base)


def _sharpen(model, factor=4.0):
    """Scale all weights up so the state visibly changes the predictions."""
    model.set_weights([weight * factor for weight in model.get_weights()])
    return model


def _copy(model, config, vocabulary_size):
    stateless = model_lib.build_model(config, vocabulary_size=vocabulary_size, stateful=False)
    stateless.set_weights(model.get_weights())
    return stateless


def _full_stream_nats(stateless, inputs, targets):
    """Mean loss of a non-stateful model reading each whole stream in one call."""
    whole_inputs = np.concatenate(list(inputs), axis=1)
    whole_targets = np.concatenate(list(targets), axis=1)
    logits = stateless(whole_inputs)
    nats = keras.losses.sparse_categorical_crossentropy(whole_targets, logits, from_logits=True)
    return float(np.mean(nats))


def test_registry_builds_each_cell():
    assert registry.names("char_lm/") == sorted(f"char_lm/{cell}" for cell in cells.CELLS)
    model = registry.get("char_lm/gru")(_tiny_config(), vocabulary_size=11)
    assert model.output_shape == (3, None, 11)
    assert [type(layer).__name__ for layer in model_lib.recurrent_layers(model)] == ["GRU", "GRU"]
    model = registry.build("char_lm/lstm", _tiny_config(), vocabulary_size=7, stateful=False)
    assert model.output_shape == (None, None, 7)
    assert [type(layer).__name__ for layer in model_lib.recurrent_layers(model)] == ["LSTM", "LSTM"]
    with pytest.raises(TypeError, match="vocabulary_size"):
        registry.build("char_lm/lstm", _tiny_config())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "projection_lstm"])
def test_stream_evaluation_carries_state_and_resets_between_evaluations(cell):
    config = _tiny_config(cell=cell)
    keras.utils.set_random_seed(1)
    model = model_lib.compile_model(_sharpen(model_lib.build_model(config, vocabulary_size=7)), config)
    ids = np.random.default_rng(0).integers(0, 7, size=3 * 21)
    inputs, targets = data_lib.stream_batches(ids, config.batch_size, config.seq_len)
    assert len(inputs) == 4
    expected = _full_stream_nats(_copy(model, config, 7), inputs, targets)
    dataset = data_lib.to_dataset(inputs, targets)
    reset = [model_lib.ResetStatesEachEpoch()]
    first = model.evaluate(dataset, verbose=0, callbacks=reset, return_dict=True)
    second = model.evaluate(dataset, verbose=0, callbacks=reset, return_dict=True)
    assert first["loss"] == pytest.approx(expected, rel=1e-5)
    assert second["loss"] == pytest.approx(expected, rel=1e-5)
    assert first["bits_per_char"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert first["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    # Reading batch by batch with a fresh state each time gives a different number.
    model_lib.reset_stream_states(model)
    separate = []
    for batch_inputs, batch_targets in zip(inputs, targets):
        model_lib.reset_stream_states(model)
        logits = model(batch_inputs)
        separate.append(np.mean(keras.losses.sparse_categorical_crossentropy(batch_targets, logits, from_logits=True)))
    assert abs(float(np.mean(separate)) - expected) > 1e-2


def test_training_carries_state_within_an_epoch_and_resets_between_epochs():
    config = _tiny_config()
    keras.utils.set_random_seed(2)
    model = _sharpen(model_lib.build_model(config, vocabulary_size=6))
    # A learning rate of zero keeps the weights, so every epoch's mean loss
    # must equal the whole-stream loss if (and only if) the state is carried
    # across batches and reset at each epoch.
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    ids = np.random.default_rng(3).integers(0, 6, size=3 * 16)
    inputs, targets = data_lib.stream_batches(ids, config.batch_size, config.seq_len)
    expected = _full_stream_nats(_copy(model, config, 6), inputs, targets)
    history = model.fit(
        data_lib.to_dataset(inputs, targets),
        epochs=3,
        verbose=0,
        shuffle=False,
        callbacks=[model_lib.ResetStatesEachEpoch()],
    )
    np.testing.assert_allclose(history.history["loss"], [expected] * 3, rtol=1e-5)
    # Resetting every batch would average batch-start losses like the first one.
    model_lib.reset_stream_states(model)
    reset_each_batch = np.mean(
        [_full_stream_nats(_copy(model, config, 6), inputs[k : k + 1], targets[k : k + 1]) for k in range(len(inputs))]
    )
    assert abs(reset_each_batch - expected) > 1e-2


def test_gradients_stay_within_a_batch():
    config = _tiny_config(num_layers=1)
    keras.utils.set_random_seed(4)
    model = model_lib.build_model(config, vocabulary_size=6)
    ids = np.random.default_rng(5).integers(0, 6, size=(3, 5)).astype("int32")
    model(ids)  # the carried state is now a function of this first batch
    embedding = model.get_layer("embedding").embeddings
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(ids))
    gradient = tape.gradient(loss, embedding)
    # Only the ids of the current batch get a gradient, and every state
    # variable is a constant to this batch's tape.
    rows_with_gradient = np.flatnonzero(np.abs(tf.convert_to_tensor(gradient).numpy()).sum(axis=1))
    np.testing.assert_array_equal(rows_with_gradient, np.unique(ids))
    for layer in model_lib.recurrent_layers(model):
        assert all(not state.trainable for state in layer.states)


# ----------------------------------------------------------------------------- one-step generation


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stepper_matches_the_sequence_model(cell):
    config = _tiny_config(cell=cell, batch_size=1)
    keras.utils.set_random_seed(6)
    model = _sharpen(model_lib.build_model(config, vocabulary_size=9), 2.0)
    stateless = _copy(model, config, 9)
    stepper = model_lib.CharacterStepper(model)
    prompt = np.array([3, 1, 4, 1, 5], dtype=np.int32)
    expected = tf.nn.log_softmax(stateless(prompt[None])[0, -1]).numpy()
    np.testing.assert_allclose(stepper.next_log_probs(prompt).numpy(), expected, atol=1e-5)

    greedy = stepper.generate(prompt, 6, temperature=0.0, seed=0).numpy()
    sequence = list(prompt)
    for generated in greedy:
        logits = stateless(np.array(sequence, dtype=np.int32)[None])[0, -1].numpy()
        logits[data_lib.OOV_ID] = -np.inf
        assert generated == int(np.argmax(logits))
        sequence.append(generated)


def test_sampling_is_repeatable_per_seed_and_respects_top_k():
    config = _tiny_config(batch_size=1)
    keras.utils.set_random_seed(7)
    stepper = model_lib.CharacterStepper(model_lib.build_model(config, vocabulary_size=9))
    generate = tf.function(stepper.generate)
    prompt = np.array([2, 7], dtype=np.int32)
    first = generate(prompt, 40, 1.0, 11).numpy()
    assert len(first) == 40
    np.testing.assert_array_equal(first, generate(prompt, 40, 1.0, 11).numpy())
    assert not np.array_equal(first, generate(prompt, 40, 1.0, 12).numpy())
    assert data_lib.OOV_ID not in first
    top_one = generate(prompt, 10, 1.0, 11, 1).numpy()
    np.testing.assert_array_equal(top_one, stepper.generate(prompt, 10, 0.0, 3).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt is empty"):
        stepper.generate(np.zeros((0,), np.int32), 3, 1.0, 0)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="`units`"):
        CharLMConfig(units=0).validate()
    with pytest.raises(ValueError, match="`dropout`"):
        CharLMConfig(dropout=1.0).validate()
    with pytest.raises(ValueError, match="`recurrent_dropout`"):
        CharLMConfig(recurrent_dropout=-0.1).validate()
    with pytest.raises(ValueError, match="`vocabulary_size`"):
        model_lib.build_model(CharLMConfig(), vocabulary_size=1)


@pytest.mark.parametrize("implementation", ["ours", "keras"])
def test_recurrent_dropout_reaches_every_layer_in_training_only(implementation):
    config = _tiny_config(recurrent_dropout=0.5, implementation=implementation)
    keras.utils.set_random_seed(8)
    model = _sharpen(model_lib.build_model(config, vocabulary_size=7, stateful=False))
    plain = _copy(model, dataclasses.replace(config, recurrent_dropout=0.0), 7)
    assert [layer.cell.recurrent_dropout for layer in model_lib.recurrent_layers(model)] == [0.5, 0.5]
    ids = np.random.default_rng(9).integers(0, 7, size=(3, 5)).astype("int32")
    # Inference ignores it; training drops parts of the fed-back state, so
    # every step after the first differs from the model without it.
    np.testing.assert_allclose(model(ids, training=False), plain(ids, training=False), atol=1e-6)
    dropped, kept = model(ids, training=True).numpy(), plain(ids, training=True).numpy()
    np.testing.assert_allclose(dropped[:, 0], kept[:, 0], atol=1e-6)
    assert np.abs(dropped[:, 1:] - kept[:, 1:]).min(axis=-1).max() > 1e-3
    if implementation == "ours":
        assert {layer.last_path for layer in model_lib.recurrent_layers(model)} == {"fused"}


def test_sequence_dropout_mask_drops_the_same_features_at_every_step():
    config = _tiny_config(dropout=0.5, dropout_mask="sequence", num_layers=1)
    model = model_lib.build_model(config, vocabulary_size=7, stateful=False)
    for name in ("embedding_dropout", "dropout_0"):
        layer = model.get_layer(name)
        values = np.ones((4, 6, 8), "float32")
        dropped = keras.ops.convert_to_numpy(layer(values, training=True))
        # Each row keeps the same features at all six steps; rows differ.
        np.testing.assert_array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))
        assert 0 < np.count_nonzero(dropped[:, 0]) < dropped[:, 0].size
        assert not all(np.array_equal(dropped[0, 0], row) for row in dropped[1:, 0])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(values, training=False)), values)
    element = model_lib.build_model(_tiny_config(dropout=0.5, num_layers=1), vocabulary_size=7, stateful=False)
    dropped = keras.ops.convert_to_numpy(element.get_layer("dropout_0")(np.ones((4, 6, 8), "float32"), training=True))
    assert not np.array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))
    with pytest.raises(ValueError, match="`dropout_mask`.*'time'"):
        CharLMConfig(dropout_mask="time").validate()


def test_weight_decay_shrinks_the_weight_matrices_only_in_proportion_to_the_rate():
    config = _tiny_config(num_layers=1, weight_decay=0.1, learning_rate=0.5, lr_schedule="constant")
    keras.utils.set_random_seed(3)
    model = model_lib.compile_model(model_lib.build_model(config, vocabulary_size=7, stateful=False), config)
    before = {variable.path: keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables}
    # Zero gradients (zero loss weight): whatever moves is the decay alone.
    ids = np.zeros((3, 5), "int32")
    model.fit(ids, ids, sample_weight=np.zeros((3, 5), "float32"), epochs=1, batch_size=3, verbose=0)
    decayed = []
    for variable in model.trainable_variables:
        after, old = keras.ops.convert_to_numpy(variable), before[variable.path]
        if len(variable.shape) >= 2:
            np.testing.assert_allclose(after, old * (1 - 0.1 * 0.5), rtol=1e-6)
            decayed.append(variable.path.split("/")[-1])
        else:
            np.testing.assert_array_equal(after, old)
    assert sorted(decayed) == ["embeddings", "kernel", "kernel", "recurrent_kernel"]
    with pytest.raises(ValueError, match="`weight_decay`"):
        CharLMConfig(weight_decay=-0.1).validate()


def test_ema_decay_makes_the_optimizer_keep_the_moving_average_of_the_weights():
    config = _tiny_config(num_layers=1, ema_decay=0.75)
    model = model_lib.compile_model(model_lib.build_model(config, vocabulary_size=7, stateful=False), config)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.75
    plain = model_lib.optimizer(model, _tiny_config(num_layers=1))
    assert not plain.use_ema
    for wrong in (1.0, -0.5):
        with pytest.raises(ValueError, match="`ema_decay`"):
            CharLMConfig(ema_decay=wrong).validate()


def test_cosine_schedule_is_the_default_and_decays_to_zero_over_decay_epochs():
    constant = CharLMConfig(learning_rate=0.01, lr_schedule="constant")
    assert model_lib.learning_rate(constant, steps_per_epoch=10) == 0.01
    default = model_lib.learning_rate(CharLMConfig(), steps_per_epoch=10)
    assert float(default(0)) == pytest.approx(3e-3) and float(default(CharLMConfig().epochs * 10)) == 0.0
    # Without steps per epoch (a model compiled to be evaluated) the rate is the constant one.
    assert model_lib.learning_rate(CharLMConfig(lr_schedule="cosine"), steps_per_epoch=None) == 3e-3
    schedule = model_lib.learning_rate(CharLMConfig(lr_schedule="cosine", learning_rate=0.01, epochs=4), 10)
    rates = [float(schedule(step)) for step in (0, 20, 40, 50)]
    np.testing.assert_allclose(rates, [0.01, 0.005, 0.0, 0.0], atol=1e-7)
    schedule = model_lib.learning_rate(CharLMConfig(lr_schedule="cosine", epochs=30, decay_epochs=2), 5)
    np.testing.assert_allclose([float(schedule(5)), float(schedule(10))], [1.5e-3, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="`lr_schedule`.*'linear'"):
        CharLMConfig(lr_schedule="linear").validate()
    with pytest.raises(ValueError, match="`decay_epochs`"):
        CharLMConfig(decay_epochs=-1).validate()
    with pytest.raises(ValueError, match="`steps_per_epoch`"):
        model_lib.learning_rate(CharLMConfig(lr_schedule="cosine"), steps_per_epoch=0)


def test_verdict_and_table_compare_with_the_best_markov_model():
    from zoo.char_lm import evaluate as train_lib

    markov_rows = [{"order": 1, "nats_per_char": 2.0}, {"order": 3, "nats_per_char": 1.5}]
    config = {"cell": "gru", "num_layers": 1, "units": 8}
    worse = {"markov": markov_rows, "best": {"epoch": 2, "val_nats_per_char": 1.75}, "config": config}
    assert (
        train_lib.verdict(worse) == "gru does NOT beat the best Markov baseline (order 3, 1.5000) by -0.2500 nats/char"
    )
    better = {**worse, "best": {"epoch": 4, "val_nats_per_char": 1.25}}
    assert "gru beats the best Markov baseline (order 3, 1.5000) by +0.2500" in train_lib.verdict(better)
    table = train_lib.results_table(better).splitlines()
    assert table[1].startswith("gru 1x8 (epoch 4)") and table[2].startswith("markov order 3 (KN)")
    assert table[1].split()[-3:] == ["1.2500", f"{1.25 / math.log(2):.4f}", f"{math.exp(1.25):.3f}"]
