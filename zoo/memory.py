"""Long-range memory tasks: the adding problem and the copy-memory task.

Two synthetic tasks whose answer depends on inputs a known number of steps in
the past, so they measure how far back a model can remember and learn:

- *Adding problem* (Hochreiter & Schmidhuber, 1997): a sequence of `length`
  pairs (value, marker), values uniform on [0, 1), exactly two markers equal
  to 1; the target is the sum of the two marked values. Predicting the mean
  (1.0) for every sequence gives a mean squared error of Var(U1 + U2) = 1/6.
  With `mark_distance=None` one mark falls uniformly in the first half and
  the other in the second half; with `mark_distance=d` the first mark sits
  exactly `d` steps before the last step and the second mark on the last
  step, so the only long-range dependency has a known distance `d`.
- *Copy-memory task* (Arjovsky, Shah & Bengio, 2016): `copy_length` symbols
  drawn from `alphabet_size` letters, then `delay - 1` blanks, a delimiter,
  and `copy_length` blanks; the target is blank everywhere except the last
  `copy_length` steps, which must repeat the symbols. A model without memory
  can at best predict blank where the target is always blank and a uniform
  guess on the last steps, a cross-entropy per step of
  `copy_length * log(alphabet_size) / (delay + 2 * copy_length)`.

This module also builds the four compared models at matched parameter counts
(our `SimpleRNN`, `LSTM`, `GRU`, and a causal dilated convolution with a
fixed receptive field), and measures how the loss at the last step depends
on the recurrent state at each earlier step (`state_gradient_norms`).
"""

import dataclasses
import math
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

import layers
from zoo import registry

TASKS = ("adding", "copy")
MODELS = ("rnn", "lstm", "gru", "conv")
RECURRENT_LAYERS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
ADDING_FEATURES = 2  # (value, marker)
CONV_KERNEL_SIZE = 3  # kernel width of every causal convolution layer


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a positive integer, got {value!r}."
        )
    return int(value)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for argument `{name}`: {value!r}; expected one of {list(choices)}."
        )
    return value


# --------------------------------------------------------------------- data
def adding_batch(rng, batch_size, length, mark_distance=None):
    """One batch of the adding problem.

    Args:
        rng: A `numpy.random.Generator`; the only source of randomness.
        batch_size: Number of sequences.
        length: Steps per sequence (at least 2).
        mark_distance: `None` for one mark in each half of the sequence, or
            an integer `d` in [1, length - 1]: first mark `d` steps before the
            last step, second mark on the last step.

    Returns:
        `(inputs, targets)`: float32 arrays of shapes `(batch_size, length, 2)`
        (value, marker) and `(batch_size, 1)`.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    length = _check_positive_int("length", length)
    if length < 2:
        raise ValueError(f"Received an invalid value for argument `length`, expected at least 2, got {length}.")
    values = rng.uniform(0.0, 1.0, size=(batch_size, length))
    rows = np.arange(batch_size)
    if mark_distance is None:
        half = length // 2
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, length, size=batch_size)
    else:
        mark_distance = _check_positive_int("mark_distance", mark_distance)
        if mark_distance > length - 1:
            raise ValueError(
                f"Received an invalid value for argument `mark_distance`, expected at most length - 1 = "
                f"{length - 1}, got {mark_distance}."
            )
        first = np.full(batch_size, length - 1 - mark_distance)
        second = np.full(batch_size, length - 1)
    markers = np.zeros((batch_size, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype("float32")
    targets = (values[rows, first] + values[rows, second])[:, None].astype("float32")
    return inputs, targets


def copy_layout(delay, copy_length=10, alphabet_size=8):
    """Sizes of the copy task: (sequence length, input features, output classes).

    Input symbols are one-hot over blank (0), letters 1..alphabet_size and
    the delimiter (alphabet_size + 1); targets are blank or a letter.
    """
    delay = _check_positive_int("delay", delay)
    copy_length = _check_positive_int("copy_length", copy_length)
    alphabet_size = _check_positive_int("alphabet_size", alphabet_size)
    return delay + 2 * copy_length, alphabet_size + 2, alphabet_size + 1


def copy_batch(rng, batch_size, delay, copy_length=10, alphabet_size=8):
    """One batch of the copy-memory task (layout of Arjovsky et al., 2016).

    Steps `[0, copy_length)` hold letters, then `delay - 1` blanks, the
    delimiter at step `copy_length + delay - 1`, then `copy_length` blanks.
    Targets are blank except the last `copy_length` steps, which repeat the
    letters; so each letter must be kept `delay + copy_length` steps.

    Returns:
        `(inputs, targets)`: float32 one-hot inputs of shape
        `(batch_size, delay + 2 * copy_length, alphabet_size + 2)` and int32
        class targets of shape `(batch_size, delay + 2 * copy_length)`.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    total, features, _ = copy_layout(delay, copy_length, alphabet_size)
    letters = rng.integers(1, alphabet_size + 1, size=(batch_size, copy_length))
    symbols = np.zeros((batch_size, total), dtype="int32")
    symbols[:, :copy_length] = letters
    symbols[:, copy_length + delay - 1] = alphabet_size + 1
    targets = np.zeros((batch_size, total), dtype="int32")
    targets[:, total - copy_length :] = letters
    inputs = np.eye(features, dtype="float32")[symbols]
    return inputs, targets


def make_batch(rng, task, batch_size, length, mark_distance=None, copy_length=10, alphabet_size=8):
    """A batch of `task` ("adding" or "copy"); `length` is T (the delay for copy)."""
    _check_choice("task", task, TASKS)
    if task == "adding":
        return adding_batch(rng, batch_size, length, mark_distance)
    return copy_batch(rng, batch_size, length, copy_length, alphabet_size)


def make_dataset(task, batch_size, length, seed, mark_distance=None, copy_length=10, alphabet_size=8):
    """An endless, seeded `tf.data.Dataset` of `(inputs, targets)` batches."""
    inputs, targets = make_batch(
        np.random.default_rng(0), task, 1, length, mark_distance, copy_length, alphabet_size
    )

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            yield make_batch(rng, task, batch_size, length, mark_distance, copy_length, alphabet_size)

    signature = (
        tf.TensorSpec((batch_size, *inputs.shape[1:]), tf.float32),
        tf.TensorSpec((batch_size, *targets.shape[1:]), tf.as_dtype(targets.dtype)),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def baseline_error(task, length, copy_length=10, alphabet_size=8):
    """The error of the best predictor that has no memory of the inputs.

    Adding: mean squared error of always predicting 1 (= 1/6). Copy:
    cross-entropy per step (nats) of predicting blank where the target is
    always blank and a uniform letter on the last `copy_length` steps.
    """
    _check_choice("task", task, TASKS)
    if task == "adding":
        return 1.0 / 6.0
    total, _, _ = copy_layout(length, copy_length, alphabet_size)
    return copy_length * math.log(alphabet_size) / total


def empirical_baseline_error(task, targets):
    """The memoryless error measured on data.

    Adding: mean squared error of predicting the constant 1. Copy: the
    cross-entropy of predicting, at each position, the empirical frequency of
    each class at that position over the batch (the best a model that knows
    only the position can do on that data).
    """
    _check_choice("task", task, TASKS)
    targets = np.asarray(targets)
    if task == "adding":
        return float(np.mean((targets - 1.0) ** 2))
    entropy = 0.0
    for position in range(targets.shape[1]):
        _, counts = np.unique(targets[:, position], return_counts=True)
        frequencies = counts / counts.sum()
        entropy -= float(np.sum(frequencies * np.log(frequencies)))
    return entropy / targets.shape[1]


# -------------------------------------------------------------------- models
def receptive_field(conv_layers, kernel_size=CONV_KERNEL_SIZE):
    """Steps the causal dilated convolution sees (dilations 1, 2, 4, ...)."""
    conv_layers = _check_positive_int("conv_layers", conv_layers)
    return 1 + (kernel_size - 1) * (2**conv_layers - 1)


def _task_sizes(task, copy_length, alphabet_size):
    """(input features, head outputs) of `task`."""
    if task == "adding":
        return ADDING_FEATURES, 1
    _, features, classes = copy_layout(1, copy_length, alphabet_size)
    return features, classes


def parameter_count(model, width, task, conv_layers=4, copy_length=10, alphabet_size=8):
    """Trainable weights of `build_model(...)` with this `width`, in closed form."""
    _check_choice("model", model, MODELS)
    features, outputs = _task_sizes(task, copy_length, alphabet_size)
    head = (width + 1) * outputs
    if model == "rnn":
        return width * (features + width + 1) + head
    if model == "lstm":
        return 4 * width * (features + width + 1) + head
    if model == "gru":  # reset_after=True: two bias rows
        return 3 * width * (features + width + 2) + head
    first = CONV_KERNEL_SIZE * features * width + width
    rest = (conv_layers - 1) * (CONV_KERNEL_SIZE * width * width + width)
    return first + rest + head


def width_for_budget(model, parameter_budget, task, conv_layers=4, copy_length=10, alphabet_size=8):
    """The width (units or filters) whose parameter count is closest to the budget."""
    parameter_budget = _check_positive_int("parameter_budget", parameter_budget)
    return min(
        range(1, 1025),
        key=lambda width: abs(
            parameter_count(model, width, task, conv_layers, copy_length, alphabet_size) - parameter_budget
        ),
    )


@dataclasses.dataclass
class MemoryConfig:
    """One model on one memory task."""

    task: Literal["adding", "copy"] = "adding"  # which task
    model: Literal["rnn", "lstm", "gru", "conv"] = "lstm"  # which model
    length: int = 100  # T: adding sequence length, or the copy task's delay
    parameter_budget: int = 4500  # trainable weights; the width is chosen to come closest
    conv_layers: int = 4  # causal conv layers, dilations 1, 2, 4, ... (receptive field 1 + 2*(2**n - 1))
    bptt_steps: Optional[int] = None  # truncated BPTT chunk length for recurrent models; None = full
    mark_distance: Optional[int] = None  # adding: None = one mark per half; d = first mark d steps before the last
    copy_length: int = 10  # copy: letters to remember
    alphabet_size: int = 8  # copy: distinct letters
    learning_rate: float = 1e-2  # Adam step size
    clipnorm: float = 1.0  # gradient norm clipping (keeps the plain RNN from exploding)
    seed: int = 0  # initial weights and data

    def validate(self):
        _check_choice("task", self.task, TASKS)
        _check_choice("model", self.model, MODELS)
        for name in ("length", "parameter_budget", "conv_layers", "copy_length", "alphabet_size"):
            _check_positive_int(name, getattr(self, name))
        if self.bptt_steps is not None:
            _check_positive_int("bptt_steps", self.bptt_steps)
            if self.model == "conv":
                raise ValueError("Received `bptt_steps` for model 'conv'; truncation applies to recurrent models only.")
        if self.mark_distance is not None:
            if self.task != "adding":
                raise ValueError("Received `mark_distance` for task 'copy'; it applies to the adding problem only.")
            if not 1 <= self.mark_distance <= self.length - 1:
                raise ValueError(
                    f"Received an invalid value for `mark_distance`: {self.mark_distance}; "
                    f"expected an integer in [1, length - 1 = {self.length - 1}]."
                )
        if self.task == "adding" and self.length < 2:
            raise ValueError(f"Received an invalid value for `length`: {self.length}; the adding problem needs at least 2.")
        for name in ("learning_rate", "clipnorm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Received an invalid value for `{name}`: {getattr(self, name)}; expected a positive number.")

    @property
    def sequence_length(self):
        if self.task == "adding":
            return self.length
        return copy_layout(self.length, self.copy_length, self.alphabet_size)[0]

    @property
    def width(self):
        return width_for_budget(
            self.model, self.parameter_budget, self.task, self.conv_layers, self.copy_length, self.alphabet_size
        )


def build_model(config):
    """The compiled model for `config`.

    Recurrent models are `Input -> <our layer> (named "recurrent") -> Dense
    (named "head")`; the adding problem reads the last step, the copy task
    every step. The convolutional model stacks causal Conv1D layers with
    dilations 1, 2, 4, ...; on the adding problem its last step sees only the
    last `receptive_field(conv_layers)` inputs.
    """
    config.validate()
    features, outputs = _task_sizes(config.task, config.copy_length, config.alphabet_size)
    every_step = config.task == "copy"
    width = config.width
    inputs = keras.Input((config.sequence_length, features), name="sequence")
    if config.model in RECURRENT_LAYERS:
        hidden = RECURRENT_LAYERS[config.model](
            width, return_sequences=every_step, bptt_steps=config.bptt_steps, name="recurrent"
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


def copy_symbol_accuracy(model, inputs, targets, copy_length):
    """Fraction of the copied letters (last `copy_length` steps) predicted right."""
    logits = model.predict(inputs, verbose=0, batch_size=256)
    predicted = np.argmax(logits[:, -copy_length:], axis=-1)
    return float(np.mean(predicted == np.asarray(targets)[:, -copy_length:]))


# ------------------------------------------------------------ gradient flow
def state_gradient_norms(cell, inputs, last_step_loss, initial_states=None):
    """How much the loss at the last step depends on the state at each step.

    Runs `cell` step by step over `inputs` (batch, steps, features), adding a
    zero tensor to every state after each step; the gradient of the loss with
    respect to that zero tensor at step t is d(loss)/d(state_t), the total
    derivative through all later steps. For an LSTM the state is (h_t, c_t).

    Args:
        cell: A recurrent cell (ours or any Keras-contract cell).
        inputs: Float array `(batch, steps, features)`.
        last_step_loss: Function `(last output, outputs of every step) ->`
            per-example loss of shape `(batch,)`. The output of a step is
            the cell's first state (h), as for every Keras-contract cell. Examples are independent,
            so the gradient of the summed loss splits into per-example ones.
        initial_states: Optional list of state tensors.

    Returns:
        float64 array `(steps,)`: at index t, the mean over the batch of the
        per-example norm of d(loss)/d(state_t). Distance from the last step
        is `steps - 1 - t`.
    """
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    if inputs.shape.rank != 3:
        raise ValueError(f"Received `inputs` of shape {tuple(inputs.shape)}; expected (batch, steps, features).")
    batch, steps = int(inputs.shape[0]), int(inputs.shape[1])
    states = initial_states or cell.get_initial_state(batch_size=batch)
    states = list(states) if isinstance(states, (list, tuple)) else [states]
    perturbations = [[tf.zeros_like(state) for state in states] for _ in range(steps)]
    with tf.GradientTape() as tape:
        tape.watch(perturbations)
        outputs = []
        for step in range(steps):
            _, new_states = cell(inputs[:, step], states, training=False)
            new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
            states = [state + zero for state, zero in zip(new_states, perturbations[step])]
            # A Keras-contract cell's output is its first state (h); reading it
            # from the perturbed state makes distance 0 part of the profile.
            outputs.append(states[0])
        loss = tf.reduce_sum(last_step_loss(outputs[-1], outputs))
    gradients = tape.gradient(loss, perturbations, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    norms = []
    for step_gradients in gradients:
        squared = sum(tf.reduce_sum(tf.square(g), axis=-1) for g in step_gradients)
        norms.append(float(tf.reduce_mean(tf.sqrt(squared))))
    return np.asarray(norms, dtype="float64")


def model_state_gradient_norms(model, config, inputs, targets):
    """`state_gradient_norms` of a recurrent model built by `build_model`.

    The loss at the last step is the task's loss there: squared error of the
    sum (adding) or cross-entropy of the last copied letter (copy).
    """
    if config.model not in RECURRENT_LAYERS:
        raise ValueError(f"Received model {config.model!r}; the state gradient applies to {sorted(RECURRENT_LAYERS)}.")
    cell = model.get_layer("recurrent").cell
    head = model.get_layer("head")
    targets = tf.convert_to_tensor(targets)

    def last_step_loss(last_output, _):
        prediction = head(last_output)
        if config.task == "adding":
            return tf.square(prediction[:, 0] - targets[:, 0])
        return tf.keras.losses.sparse_categorical_crossentropy(targets[:, -1], prediction, from_logits=True)

    return state_gradient_norms(cell, inputs, last_step_loss)


def input_gradient_reach(layer, inputs):
    """Per distance from the last step, the norm of d(last output)/d(input).

    With `bptt_steps=k` the gradient must be exactly zero for every input
    before the chunk holding the last step; this measures that directly on
    the layer (the truncation actually applied, not the one documented).
    Returns a float64 array indexed by distance (0 = last step).
    """
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = layer(inputs, training=True)
        if isinstance(output, (list, tuple)):
            output = output[0]
        if output.shape.rank == 3:
            output = output[:, -1]
        total = tf.reduce_sum(output)
    gradient = tape.gradient(total, inputs)
    per_step = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=[0, 2])).numpy().astype("float64")
    return per_step[::-1]


def untruncated_copy(layer, input_shape):
    """A copy of a recurrent `layer` with the same weights and full BPTT.

    Its input gradients show what the trained layer's forward pass depends
    on, which truncation does not limit: a truncated layer still carries
    information across chunk boundaries, it only cannot learn through them.
    """
    config = {**layer.get_config(), "bptt_steps": None}
    copy = type(layer).from_config(config)
    copy.build(tuple(input_shape))
    copy.set_weights(layer.get_weights())
    return copy


def reachable_distance(length, bptt_steps):
    """Furthest distance from the last step that gradients reach with truncation.

    Chunks start at steps 0, k, 2k, ...; the last step's chunk starts at
    k * floor((length - 1) / k), so gradients reach back
    `length - 1 - k * floor((length - 1) / k)` steps (all of them when k is None).
    """
    if bptt_steps is None:
        return length - 1
    return (length - 1) - bptt_steps * ((length - 1) // bptt_steps)


# ------------------------------------------------------------------ training
def evaluation_batch(config, size):
    """The fixed test batch of `config`: its own random stream, never trained on."""
    rng = np.random.default_rng([config.seed, 1])
    return make_batch(
        rng, config.task, size, config.length, config.mark_distance, config.copy_length, config.alphabet_size
    )


def training_dataset(config, batch_size):
    """The endless training stream of `config` (random stream 0 of its seed)."""
    return make_dataset(
        config.task,
        batch_size,
        config.length,
        [config.seed, 0],
        config.mark_distance,
        config.copy_length,
        config.alphabet_size,
    )


def train_and_evaluate(
    config,
    workdir,
    *,
    train_steps,
    batch_size,
    evaluations=4,
    test_size=512,
    max_minutes=None,
    probe_size=0,
    inspect=None,
    verbose=0,
):
    """Train one model on one task for a fixed number of batches and test it.

    Args:
        config: A `MemoryConfig`.
        workdir: Directory for this run's checkpoints and backups (a killed
            run started again continues from its last backup).
        train_steps: Batches of training, the same for every model compared.
        batch_size: Sequences per batch.
        evaluations: How many times the test error is measured along the way
            (`train_steps` must be a multiple of it).
        test_size: Sequences in the fixed test batch.
        max_minutes: Optional wall-clock budget; training stops early when it
            runs out and the result says so.
        probe_size: If positive and the model is recurrent, measure
            `model_state_gradient_norms` on this many test sequences before
            and after training.
        inspect: Optional function `(model, test_inputs, test_targets) -> dict`
            called after training; its entries are added to the result.
        verbose: Passed to `keras.Model.fit`.

    Returns:
        A JSON-ready dict: the test error (`test_error`: MSE or cross-entropy
        per step), the baseline, their ratio, the learning curve, parameter
        count, width, seconds, and the gradient profiles if probed.
    """
    from zoo import training

    config.validate()
    train_steps = _check_positive_int("train_steps", train_steps)
    evaluations = _check_positive_int("evaluations", evaluations)
    if train_steps % evaluations:
        raise ValueError(
            f"Received train_steps={train_steps} and evaluations={evaluations}; "
            "train_steps must be a multiple of evaluations."
        )
    training.set_seed(config.seed)
    model = build_model(config)
    test_inputs, test_targets = evaluation_batch(config, test_size)
    baseline = baseline_error(config.task, config.length, config.copy_length, config.alphabet_size)
    result = {
        "task": config.task,
        "model": config.model,
        "length": config.length,
        "sequence_length": config.sequence_length,
        "bptt_steps": config.bptt_steps,
        "mark_distance": config.mark_distance,
        "width": config.width,
        "parameters": int(model.count_params()),
        "baseline_error": baseline,
        "empirical_baseline_error": empirical_baseline_error(config.task, test_targets),
        "train_steps": train_steps,
        "batch_size": batch_size,
    }
    if config.model == "conv":
        result["receptive_field"] = receptive_field(config.conv_layers)

    probing = probe_size > 0 and config.model in RECURRENT_LAYERS
    if probing:
        result["state_gradient_at_init"] = model_state_gradient_norms(
            model, config, test_inputs[:probe_size], test_targets[:probe_size]
        ).tolist()
    fitted = training.fit(
        model,
        training_dataset(config, batch_size),
        workdir=workdir,
        epochs=evaluations,
        steps_per_epoch=train_steps // evaluations,
        validation_data=(test_inputs, test_targets),
        max_minutes=max_minutes,
        verbose=verbose,
        tensorboard=False,
    )
    evaluated = model.evaluate(test_inputs, test_targets, verbose=0, batch_size=256, return_dict=True)
    result.update(
        test_error=float(evaluated["loss"]),
        error_over_baseline=float(evaluated["loss"]) / baseline,
        learning_curve=fitted["history"].get("val_loss", []),
        seconds=fitted["seconds"],
        time_budget_exhausted=fitted["time_budget_exhausted"],
    )
    if config.model in RECURRENT_LAYERS:
        # Which implementation trained (the fused TensorFlow loop or the cell path).
        result["recurrent_path"] = getattr(model.get_layer("recurrent"), "last_path", None)
    if config.task == "copy":
        result["copied_letter_accuracy"] = copy_symbol_accuracy(
            model, test_inputs, test_targets, config.copy_length
        )
    if probing:
        result["state_gradient_trained"] = model_state_gradient_norms(
            model, config, test_inputs[:probe_size], test_targets[:probe_size]
        ).tolist()
    if inspect is not None:
        result.update(inspect(model, test_inputs, test_targets))
    return result


# --------------------------------------------------------------------- study
@dataclasses.dataclass
class StudyConfig:
    """The whole memory study: length ladders, gradient flow, truncated BPTT."""

    adding_lengths: tuple[int, ...] = (25, 50, 100, 200, 400)  # adding problem lengths T to train at
    copy_delays: tuple[int, ...] = (10, 25, 50, 100)  # copy task delays T (sequence length T + 2 * copy_length)
    models: tuple[str, ...] = MODELS  # compared models, from rnn, lstm, gru, conv
    train_steps: int = 400  # batches per training run, the same for every model and length
    batch_size: int = 64  # sequences per batch
    evaluations: int = 4  # test-error measurements per run (train_steps must be a multiple)
    test_size: int = 512  # sequences in each fixed test batch
    parameter_budget: int = 4500  # trainable weights per model; widths are chosen to come closest
    conv_layers: int = 4  # causal conv layers (kernel 3, dilations 1, 2, 4, ...)
    learning_rate: float = 1e-2  # Adam step size for every run
    clipnorm: float = 1.0  # gradient norm clipping for every run
    copy_length: int = 10  # copy task: letters to remember
    alphabet_size: int = 8  # copy task: distinct letters
    solve_fraction: float = 0.1  # a length counts as solved when test error < solve_fraction * baseline
    probe_length: int = 100  # adding length whose gradient-flow profile is tabulated and plotted (0 = none)
    probe_size: int = 32  # test sequences averaged in each gradient-flow profile
    truncation_length: int = 60  # adding length for the truncated-BPTT runs
    truncation_distance: int = 12  # first mark this many steps before the last step (second mark on it)
    truncation_bptt_steps: tuple[int, ...] = (4, 10, 12, 15, 30)  # chunk lengths tried (full BPTT is always added)
    truncation_models: tuple[str, ...] = ("lstm", "gru")  # recurrent models for the truncated-BPTT runs
    max_minutes_per_run: Optional[float] = 10.0  # wall-clock cap per training run; None = no cap
    seed: int = 0  # initial weights and data of every run

    def validate(self):
        for name in ("train_steps", "batch_size", "evaluations", "test_size", "parameter_budget", "conv_layers",
                     "copy_length", "alphabet_size", "probe_size", "truncation_length", "truncation_distance"):
            _check_positive_int(name, getattr(self, name))
        if self.train_steps % self.evaluations:
            raise ValueError(
                f"Received train_steps={self.train_steps} and evaluations={self.evaluations}; "
                "train_steps must be a multiple of evaluations."
            )
        for name in ("adding_lengths", "copy_delays", "truncation_bptt_steps"):
            for value in getattr(self, name):
                _check_positive_int(name, value)
        for length in self.adding_lengths:
            if length < 2:
                raise ValueError(f"Received adding_lengths containing {length}; each length must be at least 2.")
        if not self.models:
            raise ValueError(f"Received an empty `models`; expected some of {list(MODELS)}.")
        for model in self.models:
            _check_choice("models", model, MODELS)
        for model in self.truncation_models:
            _check_choice("truncation_models", model, tuple(RECURRENT_LAYERS))
        if self.probe_length and self.probe_length not in self.adding_lengths:
            raise ValueError(
                f"Received probe_length={self.probe_length}, which is not among adding_lengths "
                f"{list(self.adding_lengths)}; pick one of them or 0 for no gradient-flow profile."
            )
        if self.probe_length < 0:
            raise ValueError(f"Received probe_length={self.probe_length}; expected 0 or a length in adding_lengths.")
        if not 1 <= self.truncation_distance <= self.truncation_length - 1:
            raise ValueError(
                f"Received truncation_distance={self.truncation_distance}; expected an integer in "
                f"[1, truncation_length - 1 = {self.truncation_length - 1}]."
            )
        if not 0 < self.solve_fraction <= 1:
            raise ValueError(f"Received solve_fraction={self.solve_fraction}; expected a number in (0, 1].")
        if self.max_minutes_per_run is not None and not self.max_minutes_per_run > 0:
            raise ValueError(f"Received max_minutes_per_run={self.max_minutes_per_run}; expected a positive number or none.")
        for name in ("learning_rate", "clipnorm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Received an invalid value for `{name}`: {getattr(self, name)}; expected a positive number.")

    def run_config(self, task, model, length, bptt_steps=None, mark_distance=None):
        """The `MemoryConfig` of one run of this study."""
        config = MemoryConfig(
            task=task,
            model=model,
            length=length,
            parameter_budget=self.parameter_budget,
            conv_layers=self.conv_layers,
            bptt_steps=bptt_steps,
            mark_distance=mark_distance,
            copy_length=self.copy_length,
            alphabet_size=self.alphabet_size,
            learning_rate=self.learning_rate,
            clipnorm=self.clipnorm,
            seed=self.seed,
        )
        config.validate()
        return config


QUICK_STUDY = dict(
    adding_lengths=(8, 16),
    copy_delays=(4,),
    train_steps=20,
    batch_size=16,
    evaluations=2,
    test_size=64,
    parameter_budget=600,
    conv_layers=2,
    copy_length=3,
    alphabet_size=4,
    probe_length=16,
    probe_size=8,
    truncation_length=12,
    truncation_distance=3,
    truncation_bptt_steps=(2, 6),
    truncation_models=("lstm",),
    max_minutes_per_run=2.0,
)
"""Overrides of `StudyConfig` for `--quick`: a smoke run of every part in about a minute."""
