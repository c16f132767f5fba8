"""Measuring a trained memory model: copied-letter accuracy and gradient-flow probes.

The probes measure how the loss at the last step depends on the recurrent
state at each earlier step (`state_gradient_norms`), and how far back the
gradient of the last output reaches into the inputs (`input_gradient_reach`),
which shows the truncation `bptt_steps` actually applies.
"""

import numpy as np
import tensorflow as tf

from zoo import cells


def copy_symbol_accuracy(model, inputs, targets, copy_length):
    """Fraction of the copied letters (last `copy_length` steps) predicted right."""
    logits = model.predict(inputs, verbose=0, batch_size=256)
    predicted = np.argmax(logits[:, -copy_length:], axis=-1)
    return float(np.mean(predicted == np.asarray(targets)[:, -copy_length:]))


def state_gradient_norms(cell, inputs, last_step_loss, initial_states=None):
    """How much the loss at the last step depends on the state at each step.

    Runs `cell` step by step over `inputs` (batch, steps, features), adding a
    zero tensor to every state after each step; the gradient of the loss with
    respect to that zero tensor at step t is d(loss)/d(state_t), the total
    derivative through all later steps. For an LSTM the state is (h_t, c_t);
    for a projection LSTM (r_t, c_t), the projection r_t of size `proj_units`
    being its output and fed-back state. The norm is over all of a step's
    states together.

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
    if not cells.is_cell(config.model):
        raise ValueError(f"Received model {config.model!r}; the state gradient applies to {list(cells.CELLS)}.")
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
