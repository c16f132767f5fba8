"""Neural forecasters: a 1-D convolution and each of our recurrent cells (`zoo.cells`) in two forms.

Every model reads a normalised window (batch, window, features) and works
relative to the window's last observation: the window is re-centred on its
last step before the network sees it, and the network's output is added back
to that last value. A trending series (CO2 keeps rising past the range seen
in training) then stays inside the range the network was trained on.

- single-shot (`"lstm"`, ...): the final recurrent state is mapped to all
  `horizon` target steps at once.
- autoregressive (`"lstm-autoregressive"`, ...): trained on the next step of
  every feature; forecasts by feeding its own predictions back
  (`autoregressive_rollout`).

Importing this module registers every model of `NEURAL_MODELS` as
`forecast/<name>` (see `zoo.registry`).
"""

import keras
from keras import ops

from zoo import cells, registry
from zoo.forecast.config import NEURAL_MODELS, is_autoregressive  # noqa: F401 (NEURAL_MODELS: re-exported)


@keras.saving.register_keras_serializable(package="rnnzoo_forecast")
class CenterOnLastStep(keras.layers.Layer):
    """Subtract each window's last step from all of its steps."""

    def call(self, windows):
        return windows - windows[:, -1:, :]


@keras.saving.register_keras_serializable(package="rnnzoo_forecast")
class AddLastStep(keras.layers.Layer):
    """Add the window's last value of the first `channels` features to `changes`.

    `changes` is (batch, horizon) for the target alone (channels=1, broadcast
    over the horizon) or (batch, features) for a next-step forecast.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, changes, windows):
        return changes + windows[:, -1, : self.channels]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _window_input(config):
    return keras.Input(shape=(config.window, config.features), name="window")


def _compile(model, config):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=1.0),
        loss="mse",
        metrics=["mae"],
    )
    return model


def _recurrent_layer(config, recurrent):
    """Our layer for the cell `recurrent`, or Keras's with `config.implementation="keras"`."""
    return cells.layer_class(recurrent, config.implementation)(
        config.units, name=recurrent, **cells.layer_arguments(recurrent, config.units, config.proj_units)
    )


def build_single_shot(config, recurrent="lstm"):
    """Recurrent encoder over the window; Dense maps the final state to `horizon` steps."""
    windows = _window_input(config)
    centered = CenterOnLastStep(name="center")(windows)
    state = _recurrent_layer(config, recurrent)(centered)
    changes = keras.layers.Dense(config.horizon, name="forecast_changes")(state)
    forecast = AddLastStep(1, name="forecast")(changes, windows)
    return _compile(keras.Model(windows, forecast, name=f"forecast_{recurrent}"), config)


def build_autoregressive(config, recurrent="lstm"):
    """Recurrent encoder that predicts the next step of every feature."""
    windows = _window_input(config)
    centered = CenterOnLastStep(name="center")(windows)
    state = _recurrent_layer(config, recurrent)(centered)
    changes = keras.layers.Dense(config.features, name="next_step_changes")(state)
    next_step = AddLastStep(config.features, name="next_step")(changes, windows)
    return _compile(keras.Model(windows, next_step, name=f"forecast_{recurrent}_autoregressive"), config)


def build_convolutional(config):
    """Two causal 1-D convolutions (the second dilated) and a Dense over the flattened features."""
    windows = _window_input(config)
    centered = CenterOnLastStep(name="center")(windows)
    hidden = keras.layers.Conv1D(config.units, 5, padding="causal", activation="relu", name="conv_1")(centered)
    hidden = keras.layers.Conv1D(config.units, 5, padding="causal", dilation_rate=4, activation="relu", name="conv_2")(
        hidden
    )
    hidden = keras.layers.Conv1D(8, 1, activation="relu", name="conv_bottleneck")(hidden)
    changes = keras.layers.Dense(config.horizon, name="forecast_changes")(keras.layers.Flatten()(hidden))
    forecast = AddLastStep(1, name="forecast")(changes, windows)
    return _compile(keras.Model(windows, forecast, name="forecast_conv"), config)


def autoregressive_rollout(one_step, windows, horizon):
    """Forecast `horizon` target steps by feeding predictions back.

    `one_step(windows) -> (batch, features)` predicts the step after each
    window. Each prediction is appended to the window (the oldest step drops
    out) and the model is applied again. Returns (batch, horizon): the target
    (feature 0) of every step. Works eagerly and inside `tf.function`.
    """
    forecasts = []
    for _ in range(horizon):
        next_step = one_step(windows)
        forecasts.append(next_step[:, 0])
        windows = ops.concatenate([windows[:, 1:, :], ops.cast(next_step[:, None, :], windows.dtype)], axis=1)
    return ops.stack(forecasts, axis=1)


def build_model(config, name):
    """Build (and compile) the neural model `name` (one of `NEURAL_MODELS`, or a cell alias of one)."""
    return registry.build(f"forecast/{name}", config)


registry.register("forecast/conv")(build_convolutional)
for _recurrent in cells.CELLS:
    registry.register(f"forecast/{_recurrent}")(
        lambda config, _recurrent=_recurrent: build_single_shot(config, _recurrent)
    )
    registry.register(f"forecast/{_recurrent}-autoregressive")(
        lambda config, _recurrent=_recurrent: build_autoregressive(config, _recurrent)
    )
