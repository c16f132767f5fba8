"""Memory tasks: generators, closed-form baselines, model sizes, gradient probes."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import layers
from zoo import memory, registry


# ---------------------------------------------------------------- generators
def test_adding_batch_layout():
    inputs, targets = memory.adding_batch(np.random.default_rng(3), 50, 20)
    assert inputs.shape == (50, 20, 2) and inputs.dtype == np.float32
    assert targets.shape == (50, 1) and targets.dtype == np.float32
    markers = inputs[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert set(np.unique(markers)) == {0.0, 1.0}
    first = np.argmax(markers, axis=1)
    second = 19 - np.argmax(markers[:, ::-1], axis=1)
    assert np.all(first < 10) and np.all(second >= 10)
    np.testing.assert_allclose(targets[:, 0], (inputs[:, :, 0] * markers).sum(axis=1), rtol=1e-6)
    assert np.all((inputs[:, :, 0] >= 0) & (inputs[:, :, 0] < 1))


def test_adding_batch_fixed_distance():
    inputs, targets = memory.adding_batch(np.random.default_rng(0), 8, 30, mark_distance=7)
    expected_markers = np.zeros(30)
    expected_markers[[30 - 1 - 7, 29]] = 1
    np.testing.assert_array_equal(inputs[:, :, 1], np.tile(expected_markers, (8, 1)))
    np.testing.assert_allclose(targets[:, 0], inputs[:, 22, 0] + inputs[:, 29, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="mark_distance.*29.*30"):
        memory.adding_batch(np.random.default_rng(0), 8, 30, mark_distance=30)


def test_copy_batch_layout():
    inputs, targets = memory.copy_batch(np.random.default_rng(1), 16, delay=7, copy_length=4, alphabet_size=5)
    assert inputs.shape == (16, 7 + 8, 7) and targets.shape == (16, 15)
    symbols = np.argmax(inputs, axis=-1)
    np.testing.assert_array_equal(inputs.sum(axis=-1), 1.0)
    letters = symbols[:, :4]
    assert letters.min() >= 1 and letters.max() <= 5
    # delay - 1 blanks, the delimiter, copy_length blanks
    np.testing.assert_array_equal(symbols[:, 4:10], 0)
    np.testing.assert_array_equal(symbols[:, 10], 6)
    np.testing.assert_array_equal(symbols[:, 11:], 0)
    np.testing.assert_array_equal(targets[:, :11], 0)
    np.testing.assert_array_equal(targets[:, 11:], letters)


def test_generators_are_seeded():
    for task in memory.TASKS:
        first = memory.make_batch(np.random.default_rng(5), task, 4, 10)
        again = memory.make_batch(np.random.default_rng(5), task, 4, 10)
        other = memory.make_batch(np.random.default_rng(6), task, 4, 10)
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])
        assert not np.array_equal(first[1], other[1])


def test_dataset_is_seeded_and_endless():
    def batches(seed):
        dataset = memory.make_dataset("adding", 4, 12, seed)
        return [(x.numpy(), y.numpy()) for x, y in dataset.take(3)]

    first, again, other = batches(11), batches(11), batches(12)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][1], other[0][1])
    assert not np.array_equal(first[0][1], first[1][1])  # consecutive batches differ
    assert first[0][0].shape == (4, 12, 2)


# ----------------------------------------------------------------- baselines
def test_adding_baseline_matches_data():
    # Predicting 1: E[(U1 + U2 - 1)^2] = 1/6. Per sequence the squared error
    # has variance 1/15 - 1/36 = 7/180, so the mean of n = 40000 has standard
    # deviation sqrt(7/180/n) ~ 0.00099; allow 5 of them.
    n = 40000
    _, targets = memory.adding_batch(np.random.default_rng(0), n, 10)
    measured = memory.empirical_baseline_error("adding", targets)
    assert memory.baseline_error("adding", 10) == pytest.approx(1 / 6)
    assert abs(measured - 1 / 6) < 5 * math.sqrt(7 / 180 / n)


def test_copy_baseline_closed_form_and_data():
    # Arjovsky et al.'s layout: 10 letters from 8, delay T -> 10 log 8 / (T + 20).
    for delay in (1, 100, 500):
        assert memory.baseline_error("copy", delay) == pytest.approx(10 * math.log(8) / (delay + 20))
    # The memoryless optimum on data: the empirical per-position entropy. With
    # n = 20000 letters per position, the plug-in entropy of a uniform 8-way
    # letter is low by about (8 - 1) / (2n) = 1.75e-4 nats, with a spread far
    # below that; summed over 10 positions and divided by 30 steps the gap to
    # the closed form is ~6e-5, so 5e-4 is a loose bound that a wrong layout
    # (for example one letter position too many) breaks by 0.07.
    _, targets = memory.copy_batch(np.random.default_rng(2), 20000, delay=10)
    measured = memory.empirical_baseline_error("copy", targets)
    assert abs(measured - memory.baseline_error("copy", 10)) < 5e-4


# -------------------------------------------------------------------- models
@pytest.mark.parametrize("task", memory.TASKS)
@pytest.mark.parametrize("model", memory.MODELS)
def test_parameter_count_closed_form_matches_keras(task, model):
    config = memory.MemoryConfig(
        task=task, model=model, length=6, parameter_budget=900, conv_layers=3, copy_length=2, alphabet_size=3
    )
    built = memory.build_model(config)
    assert built.count_params() == memory.parameter_count(model, config.width, task, 3, 2, 3)
    assert abs(built.count_params() - 900) < 0.25 * 900


def test_width_for_budget_is_closest():
    width = memory.width_for_budget("lstm", 4500, "adding")
    assert width == 32  # 4 * 32 * (2 + 32 + 1) + 33 = 4513
    counts = {w: memory.parameter_count("lstm", w, "adding") for w in (width - 1, width, width + 1)}
    assert all(abs(counts[width] - 4500) <= abs(count - 4500) for count in counts.values())


def test_conv_receptive_field_is_exact():
    config = memory.MemoryConfig(task="adding", model="conv", length=24, conv_layers=3, parameter_budget=500)
    field = memory.receptive_field(3)
    assert field == 15
    model = memory.build_model(config)
    inputs = tf.constant(np.random.default_rng(0).uniform(size=(4, 24, 2)), tf.float32)
    reach = memory.input_gradient_reach(model, inputs)
    nonzero = np.nonzero(reach)[0]
    assert nonzero.max() == field - 1


def test_registry_builds_each_model():
    config = memory.MemoryConfig(task="adding", length=5, parameter_budget=300)
    model = registry.build("memory/gru", config)
    assert isinstance(model.get_layer("recurrent"), layers.GRU)
    assert "memory/conv" in registry.names("memory/")


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(task="copy", mark_distance=3), ["mark_distance", "copy"]),
        (dict(model="conv", bptt_steps=4), ["bptt_steps", "conv"]),
        (dict(length=10, mark_distance=10), ["mark_distance", "10", "9"]),
        (dict(model="mlp"), ["model", "mlp", "lstm"]),
        (dict(length=0), ["length", "0"]),
    ],
)
def test_config_errors_name_the_field(changes, words):
    config = memory.MemoryConfig(**changes)
    with pytest.raises(ValueError) as error:
        config.validate()
    for word in words:
        assert word in str(error.value)


def test_study_config_errors():
    with pytest.raises(ValueError, match="probe_length=30.*adding_lengths"):
        memory.StudyConfig(adding_lengths=(10, 20), probe_length=30).validate()
    with pytest.raises(ValueError, match="train_steps=10.*evaluations=3"):
        memory.StudyConfig(train_steps=10, evaluations=3).validate()
    with pytest.raises(ValueError, match="truncation_models.*conv"):
        memory.StudyConfig(truncation_models=("conv",)).validate()


# ------------------------------------------------------------ gradient flow
@pytest.mark.parametrize("a", [0.8, 1.1])
def test_state_gradient_of_linear_recurrence_is_a_to_the_distance(a):
    # h_t = a h_{t-1} + x_t in each of 3 units; loss = sum of h_T. Then
    # d loss / d h_t = a^(T-1-t) in every unit: norm sqrt(3) a^distance.
    units, steps = 3, 12
    cell = layers.SimpleRNNCell(units, activation="linear")
    cell.build((None, units))
    cell.set_weights([np.eye(units), a * np.eye(units), np.zeros(units)])
    inputs = np.random.default_rng(0).normal(size=(5, steps, units)).astype("float32")
    norms = memory.state_gradient_norms(cell, inputs, lambda last, _: tf.reduce_sum(last, axis=-1))
    distances = np.arange(steps)[::-1]
    np.testing.assert_allclose(norms, math.sqrt(units) * a**distances, rtol=1e-5)


def test_state_gradient_of_our_lstm_equals_keras_lstm():
    ours = layers.LSTMCell(4)
    theirs = keras.layers.LSTMCell(4)
    ours.build((None, 3))
    theirs.build((None, 3))
    theirs.set_weights(ours.get_weights())
    inputs = np.random.default_rng(1).normal(size=(6, 15, 3)).astype("float32")

    def loss(last, _):
        return tf.square(tf.reduce_sum(last, axis=-1) - 1.0)

    ours_norms = memory.state_gradient_norms(ours, inputs, loss)
    np.testing.assert_allclose(ours_norms, memory.state_gradient_norms(theirs, inputs, loss), rtol=1e-4, atol=1e-7)
    assert ours_norms[-1] > ours_norms[0] > 0  # the far past matters less, but not zero


def test_state_gradient_of_a_projection_lstm_is_the_layers_initial_state_gradient():
    # The state is (r, c), r of proj_units = width // 2. d(loss)/d(state at step t) is also the gradient of the
    # loss with respect to the initial state of the (fused) layer run over the steps after t.
    config = memory.MemoryConfig(task="adding", model="projection_lstm", length=7, parameter_budget=300)
    model = memory.build_model(config)
    recurrent, head = model.get_layer("recurrent"), model.get_layer("head")
    assert recurrent.cell.state_size == [config.width // 2, config.width]
    inputs, targets = memory.adding_batch(np.random.default_rng(0), 5, 7)
    inputs, targets = tf.constant(inputs, tf.float32), tf.constant(targets, tf.float32)
    norms = memory.model_state_gradient_norms(model, config, inputs, targets)
    stepper = layers.ProjectionLSTM.from_config({**recurrent.get_config(), "return_state": True})
    stepper.build(inputs.shape)
    stepper.set_weights(recurrent.get_weights())
    for t in (0, 3, 6):
        _, r, c = stepper(inputs[:, : t + 1])
        with tf.GradientTape() as tape:
            tape.watch([r, c])
            last = stepper(inputs[:, t + 1 :], initial_state=[r, c])[0] if t < 6 else r
            loss = tf.reduce_sum(tf.square(head(last)[:, 0] - targets[:, 0]))
        gradients = tape.gradient(loss, [r, c], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        expected = tf.reduce_mean(tf.sqrt(sum(tf.reduce_sum(tf.square(g), axis=-1) for g in gradients)))
        np.testing.assert_allclose(norms[t], float(expected), rtol=1e-4)


def test_truncation_cuts_gradients_where_the_chunks_say():
    layer = layers.LSTM(3, bptt_steps=4)
    inputs = np.random.default_rng(0).normal(size=(2, 14, 2)).astype("float32")
    reach = memory.input_gradient_reach(layer, inputs)
    expected = memory.reachable_distance(14, 4)  # last chunk starts at step 12
    assert expected == 1
    assert np.all(reach[: expected + 1] > 0)
    np.testing.assert_array_equal(reach[expected + 1 :], 0.0)
    assert memory.reachable_distance(14, None) == 13
    full = memory.input_gradient_reach(layers.LSTM(3), inputs)
    assert np.all(full > 0)


def test_training_run_is_repeatable_with_its_seed(tmp_path):
    def run(seed, name):
        config = memory.MemoryConfig(task="adding", model="gru", length=6, parameter_budget=200, seed=seed)
        result = memory.train_and_evaluate(
            config, str(tmp_path / name), train_steps=3, batch_size=4, evaluations=1, test_size=16, probe_size=4
        )
        return result["test_error"], result["state_gradient_trained"]

    first, again, other = run(1, "a"), run(1, "b"), run(2, "c")
    assert first == again
    assert first[0] != other[0]


def test_untruncated_copy_sees_across_chunks():
    layer = layers.GRU(3, bptt_steps=3)
    inputs = np.random.default_rng(0).normal(size=(2, 9, 2)).astype("float32")
    truncated = memory.input_gradient_reach(layer, inputs)
    copy = memory.untruncated_copy(layer, inputs.shape)
    assert copy.bptt_steps is None and layer.bptt_steps == 3
    full = memory.input_gradient_reach(copy, inputs)
    np.testing.assert_array_equal(truncated[3:], 0.0)
    assert np.all(full > 0)
    np.testing.assert_allclose(full[:3], truncated[:3], rtol=1e-5)
