"""Neural forecasters: a 1-D convolution and each of our recurrent cells (`zoo.cells`) in two forms.

Every model reads a normalised window (batch, window, channels) and works
relative to the window's last observation: the window is re-centred on its
last step before the network sees it, and the network's output is added back
to that last value. A trending series (CO2 keeps rising past the range seen
in training) then stays inside the range the network was trained on.

- single-shot (`"lstm"`, ...): the final recurrent state is mapped to all
  `horizon` target steps at once.
- autoregressive (`"lstm-autoregressive"`, ...): trained on the next step of
  every channel; forecasts by feeding its own predictions back
  (`autoregressive_rollout`).

The config can give a network the seasonal structure the classical
harmonic regression uses (`zoo.forecast.data.Seasonality`, from the training
part):

- `features=fourier`: the Fourier terms of the seasonal period at every input
  step (beside the window) and at every forecast step (beside the final
  state);
- `transform=deseasonalize` / `residual`: the harmonic fit's season (and, for
  residual, its linear trend) is taken out of the window's target before the
  network reads it and put back into the forecast;
- `transform=difference`: the network reads and forecasts seasonal
  differences y[t] - y[t - period], turned back into values with the window's
  last season.

Those that depend on time (fourier, deseasonalize, residual) give the model a
second input, `step`: the position of each window's last observation in the
series (0 for the series' first step). `intervals=quantile` gives a
single-shot model one output per quantile of `QUANTILES`: (batch, horizon,
quantiles), kept in order by construction (`OrderedQuantiles`) and trained
with the pinball loss.

Importing this module registers every model of `NEURAL_MODELS` as
`forecast/<name>` (see `zoo.registry`).
"""

import math

import keras
from keras import ops

from zoo import cells, ensembles, registry
from zoo.errors import UserError
from zoo.forecast.config import NEURAL_MODELS, QUANTILES, is_autoregressive  # noqa: F401 (NEURAL_MODELS: re-exported)

_PACKAGE = "rnnzoo_forecast"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CenterOnLastStep(keras.layers.Layer):
    """Subtract each window's last step from all of its steps."""

    def call(self, windows):
        return windows - windows[:, -1:, :]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AddLastStep(keras.layers.Layer):
    """Add the window's last value of the first `channels` channels to `changes`.

    `changes` is (batch, horizon) for the target alone (channels=1, broadcast
    over the horizon), (batch, horizon, quantiles) for quantile forecasts of
    the target, or (batch, channels) for a next-step forecast.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, changes, windows):
        last = windows[:, -1, : self.channels]
        if len(changes.shape) == 3:
            last = last[:, :, None]
        return changes + last

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _angles(steps, period, harmonics, offsets):
    """2 pi k (t mod period) / period for t = step + offset: (batch, len(offsets), harmonics).

    The remainder is taken in float32 in two parts (Cody and Waite's range
    reduction): `period` split into a head with 8 significant bits, whose
    multiples by up to 2**16 are exact, and the small rest. So the angle
    stays exact to float32's precision (about 1e-5 steps) for positions up
    to 2**16 periods, where a plain float32 remainder loses a tenth of a step
    by position 1e6.
    """
    exponent = math.floor(math.log2(period)) - 7
    head = round(period / 2.0**exponent) * 2.0**exponent
    times = ops.cast(steps, "float32")[:, None] + ops.convert_to_tensor(offsets, "float32")[None, :]
    quotients = ops.floor(times / period)
    remainders = (times - quotients * head) - quotients * (period - head)
    phases = remainders * (2.0 * math.pi / period)
    return phases[:, :, None] * ops.arange(1, harmonics + 1, dtype="float32")[None, None, :]


def _interleave(sines, cosines):
    """(batch, n, 2 * harmonics): sin 1, cos 1, sin 2, ... as `baselines.fourier_terms` orders them."""
    stacked = ops.stack([sines, cosines], axis=-1)
    return ops.reshape(stacked, (-1, stacked.shape[1], 2 * stacked.shape[2]))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FourierTerms(keras.layers.Layer):
    """The Fourier terms of `period` at the steps `step + offset`: (batch, len(offsets), 2 * harmonics).

    The same numbers as `zoo.forecast.baselines.fourier_terms` (to float32's
    precision), computed from each window's `step` (batch,).
    """

    def __init__(self, period, harmonics, offsets, **kwargs):
        super().__init__(**kwargs)
        self.period, self.harmonics, self.offsets = float(period), int(harmonics), [int(o) for o in offsets]

    def call(self, steps):
        angles = _angles(steps, self.period, self.harmonics, self.offsets)
        return _interleave(ops.sin(angles), ops.cos(angles))

    def get_config(self):
        return {**super().get_config(), "period": self.period, "harmonics": self.harmonics, "offsets": self.offsets}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeasonalFit(keras.layers.Layer):
    """The training part's harmonic fit at the steps `step + offset`, relative to the step: (batch, len(offsets)).

    `fourier_terms(step + offset) @ coefficients + slope * offset`: the
    trend term is measured from the window's step, since the networks work
    relative to the window's last value and a constant cancels.
    """

    def __init__(self, period, coefficients, slope, offsets, **kwargs):
        super().__init__(**kwargs)
        self.period, self.slope = float(period), float(slope)
        self.coefficients, self.offsets = [float(c) for c in coefficients], [int(o) for o in offsets]

    def call(self, steps):
        angles = _angles(steps, self.period, len(self.coefficients) // 2, self.offsets)
        terms = _interleave(ops.sin(angles), ops.cos(angles))
        season = ops.sum(terms * ops.convert_to_tensor(self.coefficients, "float32"), axis=-1)
        return season + self.slope * ops.convert_to_tensor(self.offsets, "float32")[None, :]

    def get_config(self):
        return {
            **super().get_config(),
            "period": self.period,
            "coefficients": self.coefficients,
            "slope": self.slope,
            "offsets": self.offsets,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ShiftTarget(keras.layers.Layer):
    """Add `sign * shift` to the target in `values`.

    `shift` is (batch, steps). `values` is a window (batch, steps, channels)
    or a next step (batch, channels) when `channel_axis` (only channel 0,
    the target, changes), or a forecast (batch, steps) or (batch, steps,
    quantiles) otherwise.
    """

    def __init__(self, sign, channel_axis, **kwargs):
        super().__init__(**kwargs)
        self.sign, self.channel_axis = float(sign), bool(channel_axis)

    def call(self, values, shift):
        shift = self.sign * shift
        if not self.channel_axis:
            return values + (shift[:, :, None] if len(values.shape) == 3 else shift)
        if len(values.shape) == 2:  # a next step: one step of every channel
            return ops.concatenate([values[:, :1] + shift[:, -1:], values[:, 1:]], axis=-1)
        return ops.concatenate([values[:, :, :1] + shift[:, :, None], values[:, :, 1:]], axis=-1)

    def get_config(self):
        return {**super().get_config(), "sign": self.sign, "channel_axis": self.channel_axis}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeasonalDifference(keras.layers.Layer):
    """y[t] - y[t - period] of the target over the window's last `window - period` steps; other channels as they are."""

    def __init__(self, period, **kwargs):
        super().__init__(**kwargs)
        self.period = int(period)

    def call(self, windows):
        recent = windows[:, self.period :, :]
        return ops.concatenate([recent[:, :, :1] - windows[:, : -self.period, :1], recent[:, :, 1:]], axis=-1)

    def get_config(self):
        return {**super().get_config(), "period": self.period}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UndoSeasonalDifference(keras.layers.Layer):
    """Seasonal differences forecast after a window back to values: y[t+h] = d[t+h] + y[t+h-period].

    `differences` is (batch, horizon[, quantiles]) (every y[t+h-period] lies
    in the window: horizon <= period), or a next step (batch, channels) when
    `next_step` (its target gets y[t+1-period]).
    """

    def __init__(self, period, next_step, **kwargs):
        super().__init__(**kwargs)
        self.period, self.next_step = int(period), bool(next_step)

    def call(self, differences, windows):
        start = windows.shape[1] - self.period  # index of y[t + 1 - period]
        if self.next_step:
            base = windows[:, start, :1]
            return ops.concatenate([differences[:, :1] + base, differences[:, 1:]], axis=-1)
        base = windows[:, start : start + differences.shape[1], 0]
        return differences + (base[:, :, None] if len(differences.shape) == 3 else base)

    def get_config(self):
        return {**super().get_config(), "period": self.period, "next_step": self.next_step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OrderedQuantiles(keras.layers.Layer):
    """(batch, horizon * quantiles) -> (batch, horizon, quantiles) in increasing order of level.

    The middle output is the median itself; each quantile further out is
    the previous one plus (above) or minus (below) a softplus gap, so the
    quantiles never cross.
    """

    def __init__(self, horizon, quantiles, **kwargs):
        super().__init__(**kwargs)
        self.horizon, self.quantiles = int(horizon), [float(q) for q in quantiles]

    def call(self, outputs):
        raw = ops.reshape(outputs, (-1, self.horizon, len(self.quantiles)))
        middle = self.quantiles.index(0.5)
        gaps = ops.softplus(raw)
        lower, upper, values = raw[:, :, middle], raw[:, :, middle], [raw[:, :, middle]]
        for index in range(middle - 1, -1, -1):
            lower = lower - gaps[:, :, index]
            values.insert(0, lower)
        for index in range(middle + 1, len(self.quantiles)):
            upper = upper + gaps[:, :, index]
            values.append(upper)
        return ops.stack(values, axis=-1)

    def get_config(self):
        return {**super().get_config(), "horizon": self.horizon, "quantiles": self.quantiles}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PinballLoss(keras.losses.Loss):
    """The mean pinball (quantile) loss of (batch, horizon, quantiles) forecasts against (batch, horizon) truth."""

    def __init__(self, quantiles=QUANTILES, name="pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true, y_pred):
        errors = ops.cast(y_true, y_pred.dtype)[:, :, None] - y_pred
        levels = ops.convert_to_tensor(self.quantiles, y_pred.dtype)
        return ops.mean(ops.maximum(levels * errors, (levels - 1.0) * errors), axis=(1, 2))

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles}


def median_index():
    return QUANTILES.index(0.5)


def _compile(model, config, quantiles):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=1.0),
        loss=PinballLoss(QUANTILES) if quantiles else "mse",
        metrics=[] if quantiles else ["mae"],
    )
    return model


def _recurrent_layer(config, recurrent):
    """Our layer for the cell `recurrent`, or Keras's with `config.implementation="keras"`."""
    return cells.layer_class(recurrent, config.implementation)(
        config.units, name=recurrent, **cells.layer_arguments(recurrent, config.units, config.proj_units)
    )


def _seasonality(config, seasonality):
    if seasonality is None and (config.features != "none" or config.transform != "none"):
        raise UserError(
            f"Received features={config.features} and transform={config.transform} without the series' "
            "seasonality; expected `seasonality` from `zoo.forecast.data.prepare`."
        )
    return seasonality


def build_forecaster(config, kind, autoregressive=False, seasonality=None):
    """The model of `kind` ("conv" or a cell), single-shot or autoregressive, with the config's structure.

    `seasonality` (`PreparedSeries.seasonality`) is needed when
    `config.features` or `config.transform` is not "none". Without those
    options and quantiles the layers (and their names) are those of the
    plain models: "center", the recurrent layer, the Dense head
    ("forecast_changes" or "next_step_changes") and "forecast" or
    "next_step".
    """
    seasonality = _seasonality(config, seasonality)
    quantiles = config.intervals == "quantile" and not autoregressive
    outputs = 1 if autoregressive else config.horizon
    future_offsets = list(range(1, outputs + 1))
    window = keras.Input(shape=(config.window, config.channels), name="window")
    step = keras.Input(shape=(), name="step") if config.uses_steps else None
    series = window
    if config.transform in ("deseasonalize", "residual"):
        slope = seasonality.slope if config.transform == "residual" else 0.0
        fit = dict(period=seasonality.period, coefficients=seasonality.coefficients, slope=slope)
        past_fit = SeasonalFit(offsets=range(1 - config.window, 1), name="past_fit", **fit)(step)
        series = ShiftTarget(-1, channel_axis=True, name="take_out_fit")(window, past_fit)
    elif config.transform == "difference":
        series = SeasonalDifference(seasonality.whole_period, name="seasonal_difference")(window)
    sequence = CenterOnLastStep(name="center")(series)
    if config.features == "fourier":
        terms = dict(period=seasonality.period, harmonics=seasonality.harmonics)
        past_terms = FourierTerms(offsets=range(1 - sequence.shape[1], 1), name="past_terms", **terms)(step)
        sequence = keras.layers.Concatenate(name="with_terms")([sequence, past_terms])
    if kind == "conv":
        hidden = keras.layers.Conv1D(config.units, 5, padding="causal", activation="relu", name="conv_1")(sequence)
        hidden = keras.layers.Conv1D(
            config.units, 5, padding="causal", dilation_rate=4, activation="relu", name="conv_2"
        )(hidden)
        hidden = keras.layers.Conv1D(8, 1, activation="relu", name="conv_bottleneck")(hidden)
        state = keras.layers.Flatten()(hidden)
    else:
        state = _recurrent_layer(config, kind)(sequence)
    if config.features == "fourier":
        future_terms = FourierTerms(offsets=future_offsets, name="future_terms", **terms)(step)
        state = keras.layers.Concatenate(name="state_with_terms")([state, keras.layers.Flatten()(future_terms)])
    if autoregressive:
        changes = keras.layers.Dense(config.channels, name="next_step_changes")(state)
        output = AddLastStep(config.channels, name="next_step" if series is window else "next_step_inner")(
            changes, series
        )
    elif quantiles:
        changes = keras.layers.Dense(config.horizon * len(QUANTILES), name="quantile_changes")(state)
        changes = OrderedQuantiles(config.horizon, QUANTILES, name="ordered_quantiles")(changes)
        output = AddLastStep(1, name="forecast" if series is window else "forecast_inner")(changes, series)
    else:
        changes = keras.layers.Dense(config.horizon, name="forecast_changes")(state)
        output = AddLastStep(1, name="forecast" if series is window else "forecast_inner")(changes, series)
    final = "next_step" if autoregressive else "forecast"
    if config.transform in ("deseasonalize", "residual"):
        future_fit = SeasonalFit(offsets=future_offsets, name="future_fit", **fit)(step)
        output = ShiftTarget(1, channel_axis=autoregressive, name=final)(output, future_fit)
    elif config.transform == "difference":
        output = UndoSeasonalDifference(seasonality.whole_period, autoregressive, name=final)(output, window)
    inputs = window if step is None else [window, step]
    name = f"forecast_{kind}{'_autoregressive' if autoregressive else ''}"
    return _compile(keras.Model(inputs, output, name=name), config, quantiles)


def build_single_shot(config, recurrent="lstm", seasonality=None):
    """Recurrent encoder over the window; Dense maps the final state to `horizon` steps."""
    return build_forecaster(config, recurrent, seasonality=seasonality)


def build_autoregressive(config, recurrent="lstm", seasonality=None):
    """Recurrent encoder that predicts the next step of every channel."""
    return build_forecaster(config, recurrent, autoregressive=True, seasonality=seasonality)


def build_convolutional(config, seasonality=None):
    """Two causal 1-D convolutions (the second dilated) and a Dense over the flattened features."""
    return build_forecaster(config, "conv", seasonality=seasonality)


def build_ensemble(members, name="forecast_ensemble"):
    """One model whose outputs are the mean of `members`' outputs (they take the same inputs)."""

    def inputs_of(first):
        return [keras.Input(shape=tensor.shape[1:], name=tensor.name.split(":")[0]) for tensor in first.inputs]

    return ensembles.average_models(members, inputs_of, "mean", name)


def ensemble_members(model):
    """The member models of an ensemble built by `build_ensemble`; `[model]` for a single model."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members or [model]


def model_inputs(windows, steps):
    """What a forecaster takes: the windows alone, or [windows, steps] when it reads the steps (`steps` not None)."""
    return windows if steps is None else [windows, steps]


def autoregressive_rollout(one_step, windows, horizon, steps=None):
    """Forecast `horizon` target steps by feeding predictions back.

    `one_step(inputs) -> (batch, channels)` predicts the step after each
    window; `inputs` is the windows, or `[windows, steps]` when `steps`
    (each window's last position in the series) is given. Each prediction
    is appended to the window (the oldest step drops out), the steps move
    on by one, and the model is applied again. Returns (batch, horizon):
    the target (channel 0) of every step. Works eagerly and inside
    `tf.function`.
    """
    forecasts = []
    for _ in range(horizon):
        next_step = one_step(model_inputs(windows, steps))
        forecasts.append(next_step[:, 0])
        windows = ops.concatenate([windows[:, 1:, :], ops.cast(next_step[:, None, :], windows.dtype)], axis=1)
        if steps is not None:
            steps = steps + 1
    return ops.stack(forecasts, axis=1)


def build_model(config, name, seasonality=None):
    """Build (and compile) the neural model `name` (one of `NEURAL_MODELS`, or a cell alias of one)."""
    return registry.build(f"forecast/{name}", config, seasonality=seasonality)


registry.register("forecast/conv")(build_convolutional)
for _recurrent in cells.CELLS:
    registry.register(f"forecast/{_recurrent}")(
        lambda config, seasonality=None, _recurrent=_recurrent: build_single_shot(config, _recurrent, seasonality)
    )
    registry.register(f"forecast/{_recurrent}-autoregressive")(
        lambda config, seasonality=None, _recurrent=_recurrent: build_autoregressive(config, _recurrent, seasonality)
    )
