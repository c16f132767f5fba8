"""`zoo.training.fit(averaged_weights=True)`: validation and checkpoints use the optimizer's moving average."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import training
from zoo.callbacks import AveragedWeights


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = np.tanh(x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32"))
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8), tf.data.Dataset.from_tensor_slices(
        (x[:16], y[:16])
    ).batch(8)


def _model(use_ema, momentum=0.8):
    training.set_seed(5)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=use_ema, ema_momentum=momentum), loss="mse")
    return model


def _fit(model, workdir, averaged, epochs=3, **options):
    train, validation = _data()
    return training.fit(
        model,
        train,
        workdir=str(workdir),
        epochs=epochs,
        validation_data=validation,
        verbose=0,
        tensorboard=False,
        averaged_weights=averaged,
        **options,
    )


def _averages(model):
    optimizer = model.optimizer
    return [keras.ops.convert_to_numpy(average) for average in optimizer._model_variables_moving_average]


def test_validation_and_checkpoints_see_the_average_and_training_the_trained_weights(tmp_path):
    plain = _model(use_ema=False)
    plain_result = _fit(plain, tmp_path / "plain", averaged=False)
    averaged = _model(use_ema=True)
    result = _fit(averaged, tmp_path / "averaged", averaged=True)

    # The average is bookkeeping: training takes the same steps, and after
    # `fit` the model holds the trained weights (not Keras's finalized average).
    for trained, reference in zip(averaged.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(trained, reference)
    assert result["history"]["loss"] == plain_result["history"]["loss"]

    # Validation scored the average: the same loss as a copy holding it.
    averages = _averages(averaged)
    assert not all(np.array_equal(a, w) for a, w in zip(averages, averaged.get_weights()))
    copy = keras.models.clone_model(averaged)
    copy.set_weights(averages)
    copy.compile(loss="mse")
    _, validation = _data()
    assert result["history"]["val_loss"][-1] == pytest.approx(float(copy.evaluate(validation, verbose=0)), rel=1e-6)
    assert result["history"]["val_loss"][-1] != pytest.approx(plain_result["history"]["val_loss"][-1], rel=1e-4)

    # The checkpoints hold the average; the backup-free end state is the trained weights.
    last = keras.saving.load_model(os.path.join(tmp_path, "averaged", "checkpoints", "last.keras"), safe_mode=True)
    for saved, average in zip(last.get_weights(), averages):
        np.testing.assert_array_equal(saved, average)


def test_a_resumed_run_carries_on_the_same_average(tmp_path):
    whole = _model(use_ema=True)
    _fit(whole, tmp_path / "whole", averaged=True, epochs=2)

    # A budget this small stops every session after one batch; each next
    # session restores the backup (weights, optimizer and its average).
    sessions = 0
    while True:
        pieces = _model(use_ema=True)
        result = _fit(pieces, tmp_path / "pieces", averaged=True, epochs=2, max_minutes=1e-7, resume=sessions > 0)
        sessions += 1
        if not result["time_budget_exhausted"]:
            break
        assert sessions < 20
    assert sessions > 2
    assert int(pieces.optimizer.iterations.numpy()) == int(whole.optimizer.iterations.numpy()) == 12
    for resumed, reference in zip(_averages(pieces), _averages(whole)):
        np.testing.assert_allclose(resumed, reference, rtol=1e-6, atol=1e-7)
    for resumed, reference in zip(pieces.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(resumed, reference, rtol=1e-6, atol=1e-7)


def test_averaged_weights_need_an_optimizer_that_keeps_the_average(tmp_path):
    model = _model(use_ema=False)
    with pytest.raises(ValueError, match="use_ema=True"):
        _fit(model, tmp_path, averaged=True, epochs=1)


def test_the_averaged_context_holds_the_average_and_restores_the_weights_exactly(tmp_path):
    model = _model(use_ema=True, momentum=0.5)
    _fit(model, tmp_path, averaged=False, epochs=1)
    # Keras's `fit` left its finalized average in the weights: make them differ again.
    trained = [weight + np.float32(0.1) for weight in model.get_weights()]
    model.set_weights(trained)
    callback = AveragedWeights()
    callback.set_model(model)
    with callback.averaged():
        for weight, average in zip(model.get_weights(), _averages(model)):
            np.testing.assert_array_equal(weight, average)
    for weight, expected in zip(model.get_weights(), trained):
        np.testing.assert_array_equal(weight, expected)
