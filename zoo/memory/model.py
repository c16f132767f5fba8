"""The compared models, built at matched parameter counts.

Our `SimpleRNN`, `LSTM` and `GRU` (the study's default four with the
convolution), the variant cells of `zoo.cells` (`layernorm_lstm`, ...), and a
causal dilated convolution with a fixed receptive field; `width_for_budget`
picks each model's width so that its parameter count comes closest to a
common budget. A `projection_lstm` of width `u` projects to `u // 2`
(`zoo.cells.projection_units`), and its head reads the projection.
"""

import dataclasses

import keras

from zoo import cells, registry
from zoo.config import require_int
from zoo.errors import UserError
from zoo.memory.data import ADDING_FEATURES, copy_layout

MODELS = (*cells.CELLS, "conv")
DEFAULT_MODELS = (*cells.PLAIN, "conv")  # the study's default comparison
CONV_KERNEL_SIZE = 3  # kernel width of every causal convolution layer


def require_model(field, name):
    """Return `name` if it is one of `MODELS` (a cell alias such as `simple_rnn` allowed), else `UserError`."""
    if name == "conv" or cells.is_cell(name):
        return name
    raise UserError(f"Received an invalid value for `{field}`: {name!r}; expected one of {list(MODELS)}.")


def receptive_field(conv_layers, kernel_size=CONV_KERNEL_SIZE):
    """Steps the causal dilated convolution sees (dilations 1, 2, 4, ...)."""
    conv_layers = require_int("conv_layers", conv_layers)
    return 1 + (kernel_size - 1) * (2**conv_layers - 1)


def _task_sizes(task, copy_length, alphabet_size):
    """(input features, head outputs) of `task`."""
    if task == "adding":
        return ADDING_FEATURES, 1
    _, features, classes = copy_layout(1, copy_length, alphabet_size)
    return features, classes


def parameter_count(model, width, task, conv_layers=4, copy_length=10, alphabet_size=8):
    """Trainable weights of `build_model(...)` with this `width`, in closed form."""
    model = cells.canonical_name(require_model("model", model))
    features, outputs = _task_sizes(task, copy_length, alphabet_size)
    head = (width + 1) * outputs
    lstm = 4 * width * (features + width + 1)
    gru = 3 * width * (features + width + 2)  # reset_after=True: two bias rows
    if model == "rnn":
        return width * (features + width + 1) + head
    if model == "lstm":
        return lstm + head
    if model == "gru":
        return gru + head
    if model == "layernorm_rnn":  # one gamma, no beta
        return width * (features + width + 2) + head
    if model == "layernorm_lstm":  # gamma and beta over 4u (kernel), 4u (recurrent), u (state)
        return lstm + 18 * width + head
    if model == "layernorm_gru":  # gamma and beta over 3u (kernel), 2u (recurrent), u (candidate)
        return gru + 12 * width + head
    if model == "peephole_lstm":  # three peephole vectors
        return lstm + 3 * width + head
    if model == "projection_lstm":  # the recurrent kernel and the head read the projection
        projection = cells.projection_units(width)
        return 4 * width * (features + projection + 1) + width * projection + (projection + 1) * outputs
    first = CONV_KERNEL_SIZE * features * width + width
    rest = (conv_layers - 1) * (CONV_KERNEL_SIZE * width * width + width)
    return first + rest + head


def width_for_budget(model, parameter_budget, task, conv_layers=4, copy_length=10, alphabet_size=8):
    """The width (units or filters) whose parameter count is closest to the budget."""
    parameter_budget = require_int("parameter_budget", parameter_budget)
    return min(
        range(1, 1025),
        key=lambda width: abs(
            parameter_count(model, width, task, conv_layers, copy_length, alphabet_size) - parameter_budget
        ),
    )


def build_model(config):
    """The compiled model for `config`.

    Recurrent models are `Input -> <our layer, or Keras's with
    implementation="keras"> (named "recurrent") -> Dense (named "head")`;
    the adding problem reads the last step, the copy task every step. The convolutional model stacks causal Conv1D layers with
    dilations 1, 2, 4, ...; on the adding problem its last step sees only the
    last `receptive_field(conv_layers)` inputs.
    """
    config.validate()
    features, outputs = _task_sizes(config.task, config.copy_length, config.alphabet_size)
    every_step = config.task == "copy"
    width = config.width
    inputs = keras.Input((config.sequence_length, features), name="sequence")
    if cells.is_cell(config.model):
        # Keras's layers take no `bptt_steps` (`MemoryConfig.validate` refuses one with them).
        truncation = {} if config.implementation == "keras" else {"bptt_steps": config.bptt_steps}
        hidden = cells.layer_class(config.model, config.implementation)(
            width,
            return_sequences=every_step,
            name="recurrent",
            **truncation,
            **cells.layer_arguments(config.model, width),
        )(inputs)
    else:
        hidden = inputs
        for index in range(config.conv_layers):
            hidden = keras.layers.Conv1D(
                width,
                CONV_KERNEL_SIZE,
                dilation_rate=2**index,
                padding="causal",
                activation="relu",
                name=f"conv_{index + 1}",
            )(hidden)
        if not every_step:
            hidden = keras.layers.Cropping1D((config.sequence_length - 1, 0), name="last_step")(hidden)
            hidden = keras.layers.Reshape((width,), name="flatten_last_step")(hidden)
    logits_or_value = keras.layers.Dense(outputs, name="head")(hidden)
    model = keras.Model(inputs, logits_or_value, name=f"{config.task}_{config.model}")
    if config.task == "adding":
        loss, metrics = "mse", []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=loss,
        metrics=metrics,
    )
    return model


for _name in MODELS:
    registry.register(f"memory/{_name}")(
        (lambda model_name: lambda config: build_model(dataclasses.replace(config, model=model_name)))(_name)
    )
