"""The character language model: builder (registered as `char_lm/<cell>`), metrics, one-step generation."""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from zoo import cells, registry
from zoo.config import require_int

METRICS_PACKAGE = "rnnzoo.char_lm"


# ----------------------------------------------------------------------------- metrics


@keras.saving.register_keras_serializable(package=METRICS_PACKAGE)
class _MeanNatsMetric(keras.metrics.Metric):
    """Accumulates the cross-entropy in nats over every predicted character."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.total_nats = self.add_variable(shape=(), initializer="zeros", name="total_nats", dtype="float64")
        self.characters = self.add_variable(shape=(), initializer="zeros", name="characters", dtype="float64")

    def update_state(self, y_true, y_pred, sample_weight=None):
        nats = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        self.total_nats.assign_add(keras.ops.cast(keras.ops.sum(nats), "float64"))
        self.characters.assign_add(keras.ops.cast(keras.ops.size(nats), "float64"))

    def mean_nats(self):
        return self.total_nats / keras.ops.maximum(self.characters, 1.0)

    def reset_state(self):
        self.total_nats.assign(0.0)
        self.characters.assign(0.0)

    def get_config(self):
        return {"name": self.name}


@keras.saving.register_keras_serializable(package=METRICS_PACKAGE)
class BitsPerCharacter(_MeanNatsMetric):
    """Mean cross-entropy in bits per character (nats / ln 2)."""

    def __init__(self, name="bits_per_char", **kwargs):
        super().__init__(name=name, **kwargs)

    def result(self):
        return keras.ops.cast(self.mean_nats() / math.log(2.0), "float32")


@keras.saving.register_keras_serializable(package=METRICS_PACKAGE)
class Perplexity(_MeanNatsMetric):
    """exp(mean cross-entropy in nats) over all characters seen so far."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)

    def result(self):
        return keras.ops.cast(keras.ops.exp(self.mean_nats()), "float32")


def bits_from_nats(nats):
    return nats / math.log(2.0)


# ----------------------------------------------------------------------------- model


def build_model(config, *, vocabulary_size, batch_size=None, stateful=True):
    """Embedding -> dropout -> `num_layers` x (recurrent layer -> dropout) -> logits.

    The recurrent layers are ours, or Keras's with `config.implementation="keras"`.

    With `stateful=True` (training and stream evaluation) the batch size is
    fixed to `batch_size` (default `config.batch_size`) and every recurrent
    layer keeps its last state as the initial state of the next batch.

    Args:
        config: A `CharLMConfig`.
        vocabulary_size: Number of character ids, including the
            out-of-vocabulary id.
        batch_size: Fixed batch size of a stateful model.
        stateful: Whether states carry from one batch to the next.

    Returns:
        An uncompiled `keras.Model` mapping `(batch, time)` int ids to
        `(batch, time, vocabulary_size)` logits.
    """
    require_int("vocabulary_size", vocabulary_size, minimum=2)
    layer_class = cells.layer_class(config.cell, config.implementation)
    batch_size = (batch_size or config.batch_size) if stateful else None
    ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="character_ids")
    hidden = keras.layers.Embedding(vocabulary_size, config.embedding_dim, name="embedding")(ids)
    # Dropout on the non-recurrent connections only (inputs and outputs of
    # each recurrent layer), so the state carried between batches is exact.
    # With `dropout_mask="sequence"` one mask covers every step of a row
    # (variational or locked dropout, Gal & Ghahramani 2016).
    noise_shape = (None, 1, None) if config.dropout_mask == "sequence" else None
    hidden = keras.layers.Dropout(config.dropout, noise_shape=noise_shape, name="embedding_dropout")(hidden)
    for index in range(config.num_layers):
        hidden = layer_class(
            config.units,
            return_sequences=True,
            stateful=stateful,
            recurrent_dropout=config.recurrent_dropout,
            name=f"{config.cell}_{index}",
            **cells.layer_arguments(config.cell, config.units, config.proj_units),
        )(hidden)
        hidden = keras.layers.Dropout(config.dropout, noise_shape=noise_shape, name=f"dropout_{index}")(hidden)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(hidden)
    return keras.Model(ids, logits, name=f"char_lm_{config.cell}")


def learning_rate(config, steps_per_epoch=None):
    """The optimizer's learning rate: `config.learning_rate`, or its cosine schedule (`lr_schedule`).

    The cosine schedule decays from `learning_rate` to 0 over
    `decay_epochs` (0: `epochs`) of `steps_per_epoch` optimizer steps each,
    a function of the optimizer's step count, which checkpoints keep, so a
    resumed run continues it where it stopped. Without `steps_per_epoch`
    (a model compiled only to be evaluated) the rate is the constant one.
    """
    if config.lr_schedule == "constant" or steps_per_epoch is None:
        return config.learning_rate
    steps_per_epoch = require_int("steps_per_epoch", steps_per_epoch)
    epochs = config.decay_epochs or config.epochs
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=epochs * steps_per_epoch)


def optimizer(model, config, steps_per_epoch=None):
    """Adam at `learning_rate(config, steps_per_epoch)`, clipped to `clip_norm`, with `weight_decay`.

    The weight decay is decoupled (AdamW, Loshchilov & Hutter 2019): every
    step shrinks each weight matrix (rank 2 or more: kernels and the
    embedding) by `weight_decay` times the current rate; biases, norm
    scales and peepholes are left alone.

    With `ema_decay`, the optimizer also keeps a moving average of the
    weights (`use_ema`), updated after every step: `average = ema_decay *
    average + (1 - ema_decay) * weights`, starting from the first step's
    weights; `zoo.training.fit(averaged_weights=True)` validates and
    checkpoints it.
    """
    adam = keras.optimizers.Adam(
        learning_rate(config, steps_per_epoch),
        global_clipnorm=config.clip_norm,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema_decay > 0,
        ema_momentum=config.ema_decay or 0.99,
    )
    if config.weight_decay:
        adam.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
    return adam


def compile_model(model, config, steps_per_epoch=None):
    """Compile with `optimizer(model, config, steps_per_epoch)`, the loss and the per-character metrics."""
    model.compile(
        optimizer=optimizer(model, config, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[BitsPerCharacter(), Perplexity()],
    )
    return model


def _builder(cell):
    def build(config, *, vocabulary_size, batch_size=None, stateful=True):
        return build_model(
            dataclasses.replace(config, cell=cell),
            vocabulary_size=vocabulary_size,
            batch_size=batch_size,
            stateful=stateful,
        )

    build.__name__ = f"build_char_lm_{cell}"
    build.__doc__ = f"`build_model` with `cell={cell!r}`; takes `vocabulary_size=` as a keyword."
    return build


for _cell in cells.CELLS:
    registry.register(f"char_lm/{_cell}")(_builder(_cell))


def recurrent_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def reset_stream_states(model):
    """Zero the carried state of every stateful recurrent layer."""
    for layer in recurrent_layers(model):
        if layer.stateful:
            layer.reset_state()


def _stream_variables(model):
    """The state variables of the stateful recurrent layers, layer by layer, state by state."""
    return [state for layer in recurrent_layers(model) if layer.stateful for state in layer.states]


def stream_states(model):
    """The carried states of the stateful recurrent layers, as NumPy arrays (as `_stream_variables` orders them)."""
    return [keras.ops.convert_to_numpy(state) for state in _stream_variables(model)]


def set_stream_states(model, arrays):
    """Assign `arrays` (as `stream_states` returns them) to the stateful recurrent layers' states.

    Raises `ValueError` if their number or shapes do not match the model's states.
    """
    states = _stream_variables(model)
    shapes = [tuple(state.shape) for state in states]
    received = [np.shape(array) for array in arrays]
    if received != shapes:
        raise ValueError(f"Received stream states of shapes {received}; expected the model's {shapes}.")
    for state, array in zip(states, arrays):
        state.assign(array)


class ResetStatesEachEpoch(keras.callbacks.Callback):
    """Streams start from a zero state at every epoch and every evaluation.

    Evaluation does not disturb the streams it interrupts: their states are
    set aside when it begins and put back when it ends. So at the end of an
    epoch cut short by the time budget (Keras validates then) the model again
    holds the training streams' states, and `carried_state` hands them to the
    backup (`zoo.callbacks.ResumableBackup`); the session that finishes the
    epoch gets them back through `resume_carried_state` and goes on from
    them instead of from zeros, as the uninterrupted run would. (Under a
    strategy with several replicas the states are per replica and are not
    carried: such a session restarts its streams from zeros.)
    """

    def __init__(self):
        super().__init__()
        self._set_aside = None
        self._keep_states = False

    def _carries(self):
        strategy = getattr(self.model, "distribute_strategy", None)
        return strategy is None or strategy.num_replicas_in_sync == 1

    def on_epoch_begin(self, epoch, logs=None):
        if self._keep_states:  # a resumed epoch continues the streams it was cut from
            self._keep_states = False
            return
        reset_stream_states(self.model)

    def on_test_begin(self, logs=None):
        self._set_aside = stream_states(self.model) if self._carries() else None
        reset_stream_states(self.model)

    def on_test_end(self, logs=None):
        if self._set_aside is not None:
            set_stream_states(self.model, self._set_aside)
            self._set_aside = None

    def carried_state(self):
        """The streams' states to back up: `{"0": array, ...}`, or `{}` when they are not carried."""
        if not self._carries():
            return {}
        return {str(index): array for index, array in enumerate(stream_states(self.model))}

    def resume_carried_state(self, arrays):
        """Continue the streams from backed-up `arrays` (from `carried_state`); `{}` leaves them at zero.

        Raises `ValueError` if they are not what `carried_state` gives for this model.
        """
        if not arrays or not self._carries():
            return
        expected = [str(index) for index in range(len(arrays))]
        if set(arrays) != set(expected):
            raise ValueError(f"Received stream states named {sorted(arrays)}; expected {expected}.")
        set_stream_states(self.model, [arrays[key] for key in expected])
        self._keep_states = True


# ----------------------------------------------------------------------------- one-step generation


class CharacterStepper(tf.Module):
    """One character at a time through the trained layers, state carried.

    Shares the weights of a trained model: it calls the model's embedding,
    each recurrent layer's cell and the dense output layer directly, so a
    character costs one cell step per layer and a prompt is read once.
    """

    def __init__(self, model, name=None):
        super().__init__(name=name)
        self.model = model
        self._embedding = model.get_layer("embedding")
        self._cells = [layer.cell for layer in recurrent_layers(model)]
        self._dense = model.get_layer("logits")
        self.vocabulary_size = int(self._dense.units)

    def zero_state(self, batch_size=1):
        states = []
        for cell in self._cells:
            sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
            states.append([tf.zeros((batch_size, size)) for size in sizes])
        return states

    def step(self, ids, states):
        """ids `(batch,)` int32 -> (logits `(batch, V)`, new states)."""
        hidden = self._embedding(ids)
        new_states = []
        for cell, state in zip(self._cells, states):
            hidden, state = cell(hidden, state, training=False)
            new_states.append(list(state) if isinstance(state, (list, tuple)) else [state])
        return self._dense(hidden), new_states

    def read(self, ids):
        """Run the prompt `ids` (1-D) once; logits for the next character and the state."""
        states = self.zero_state()
        flat = tf.nest.flatten(states)
        logits = tf.zeros((1, self.vocabulary_size))

        def body(index, logits, flat):
            logits, new = self.step(ids[index][None], tf.nest.pack_sequence_as(states, flat))
            return index + 1, logits, tf.nest.flatten(new)

        _, logits, flat = tf.while_loop(lambda index, *_: index < tf.size(ids), body, (tf.constant(0), logits, flat))
        return logits, tf.nest.pack_sequence_as(states, flat)

    def generate(self, prompt_ids, length, temperature, seed, top_k=0):
        """Sample `length` ids after `prompt_ids`; same seed, same ids.

        `temperature <= 0` picks the most likely character (greedy);
        `top_k > 0` samples among the k most likely only. The
        out-of-vocabulary id 0 is never produced.
        """
        prompt_ids = tf.convert_to_tensor(prompt_ids, tf.int32)
        tf.debugging.assert_positive(
            tf.size(prompt_ids), message="The prompt is empty; expected at least one character."
        )
        length = tf.convert_to_tensor(length, tf.int32)
        temperature = tf.convert_to_tensor(temperature, tf.float32)
        seed = tf.cast(seed, tf.int32)
        top_k = tf.convert_to_tensor(top_k, tf.int32)
        logits, states = self.read(prompt_ids)
        flat = tf.nest.flatten(states)
        not_oov = tf.one_hot(0, self.vocabulary_size, on_value=-1e9, off_value=0.0)

        def body(index, logits, flat, output):
            logits = logits + not_oov
            k = tf.where(top_k > 0, tf.minimum(top_k, self.vocabulary_size - 1), self.vocabulary_size)
            threshold = tf.math.top_k(logits, k=k).values[:, -1:]
            logits = tf.where(logits < threshold, tf.constant(-1e9, logits.dtype), logits)
            scaled = logits / tf.maximum(temperature, 1e-6)
            sampled = tf.random.stateless_categorical(scaled, 1, seed=tf.stack([seed, index]), dtype=tf.int32)[:, 0]
            chosen = tf.where(temperature > 0, sampled, tf.argmax(logits, axis=-1, output_type=tf.int32))
            logits, new = self.step(chosen, tf.nest.pack_sequence_as(states, flat))
            return index + 1, logits, tf.nest.flatten(new), output.write(index, chosen[0])

        output = tf.TensorArray(tf.int32, size=length)
        _, _, _, output = tf.while_loop(lambda index, *_: index < length, body, (tf.constant(0), logits, flat, output))
        return output.stack()

    def next_log_probs(self, prompt_ids):
        """Log-probabilities `(V,)` of the character after `prompt_ids`."""
        logits, _ = self.read(tf.convert_to_tensor(prompt_ids, tf.int32))
        return tf.nn.log_softmax(logits[0])
