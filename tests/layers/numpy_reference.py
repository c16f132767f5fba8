"""Recurrent cells in plain NumPy, written from the equations.

An independent reference for `layers.cells`: nothing here imports the project
or Keras. Weights use Keras's layout (kernel `(features, gates * units)`,
recurrent kernel `(units, gates * units)`, gate blocks side by side in the
order SimpleRNN: h; LSTM: i, f, c, o; GRU: z, r, h), so the arrays returned by
`cell.get_weights()` can be passed in unchanged. Computation is in float64.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid(x):
    """Keras 3's hard sigmoid: 0 below -3, 1 above 3, linear in between."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def relu(x):
    return np.maximum(x, 0.0)


def linear(x):
    return x


ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "relu": relu,
    "linear": linear,
    None: linear,
}


def _blocks(matrix, count):
    """Split the last axis of `matrix` into `count` equal gate blocks."""
    width = matrix.shape[-1] // count
    return [matrix[..., k * width : (k + 1) * width] for k in range(count)]


def _as64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def simple_rnn_step(x, h, kernel, recurrent_kernel, bias=None, activation="tanh", input_mask=None, recurrent_mask=None):
    """One Elman step: `h_t = activation(x W + h U + b)`. Returns `(h_t, [h_t])`."""
    x, h, kernel, recurrent_kernel, bias = _as64(x, h, kernel, recurrent_kernel, bias)
    if input_mask is not None:
        x = x * input_mask
    if recurrent_mask is not None:
        h = h * recurrent_mask
    pre_activation = x @ kernel + h @ recurrent_kernel
    if bias is not None:
        pre_activation = pre_activation + bias
    h_new = ACTIVATIONS[activation](pre_activation)
    return h_new, [h_new]


def lstm_step(
    x,
    h,
    c,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    recurrent_activation="sigmoid",
    input_mask=None,
    recurrent_mask=None,
):
    """One LSTM step with gates i, f, c, o. Returns `(h_t, [h_t, c_t])`."""
    x, h, c, kernel, recurrent_kernel, bias = _as64(x, h, c, kernel, recurrent_kernel, bias)
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    if input_mask is not None:
        x = x * input_mask
    if recurrent_mask is not None:
        h = h * recurrent_mask
    w_i, w_f, w_c, w_o = _blocks(kernel, 4)
    u_i, u_f, u_c, u_o = _blocks(recurrent_kernel, 4)
    b_i, b_f, b_c, b_o = _blocks(bias, 4) if bias is not None else (0.0,) * 4
    input_gate = gate(x @ w_i + h @ u_i + b_i)
    forget_gate = gate(x @ w_f + h @ u_f + b_f)
    candidate = act(x @ w_c + h @ u_c + b_c)
    output_gate = gate(x @ w_o + h @ u_o + b_o)
    c_new = forget_gate * c + input_gate * candidate
    h_new = output_gate * act(c_new)
    return h_new, [h_new, c_new]


def gru_step(
    x,
    h,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    recurrent_activation="sigmoid",
    reset_after=True,
    input_mask=None,
    recurrent_mask=None,
):
    """One GRU step with gates z (update), r (reset), h (candidate).

    `reset_after=True`: candidate `activation(x W_h + b_h + r * (h U_h + b'_h))`
    with the bias of shape `(2, 3 * units)` (input row, recurrent row).
    `reset_after=False`: candidate `activation(x W_h + (r * h) U_h + b_h)` with
    the bias of shape `(3 * units,)`. The recurrent dropout mask multiplies
    the state inside the recurrent products only; the carried state in
    `z * h + (1 - z) * candidate` is the undropped one. Returns `(h_t, [h_t])`.
    """
    x, h, kernel, recurrent_kernel, bias = _as64(x, h, kernel, recurrent_kernel, bias)
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    if input_mask is not None:
        x = x * input_mask
    h_dropped = h * recurrent_mask if recurrent_mask is not None else h
    w_z, w_r, w_h = _blocks(kernel, 3)
    u_z, u_r, u_h = _blocks(recurrent_kernel, 3)
    if bias is None:
        input_bias = recurrent_bias = (0.0, 0.0, 0.0)
    elif reset_after:
        input_bias, recurrent_bias = _blocks(bias[0], 3), _blocks(bias[1], 3)
    else:
        input_bias, recurrent_bias = _blocks(bias, 3), (0.0, 0.0, 0.0)
    update_gate = gate(x @ w_z + input_bias[0] + h_dropped @ u_z + recurrent_bias[0])
    reset_gate = gate(x @ w_r + input_bias[1] + h_dropped @ u_r + recurrent_bias[1])
    if reset_after:
        candidate = act(x @ w_h + input_bias[2] + reset_gate * (h_dropped @ u_h + recurrent_bias[2]))
    else:
        candidate = act(x @ w_h + input_bias[2] + (reset_gate * h_dropped) @ u_h)
    h_new = update_gate * h + (1.0 - update_gate) * candidate
    return h_new, [h_new]


def padding_mask(batch, timesteps, padding):
    """A mask with rows 1 and 2 padded by 2 and 4 steps, on the `"left"` or the `"right"`; `None` for no padding."""
    if not padding:
        return None
    mask = np.ones((batch, timesteps), bool)
    mask[1, :2] = mask[2, :4] = False
    return mask if padding == "left" else mask[:, ::-1].copy()


def run_sequence(
    step, sequences, initial_states, weights, return_sequences=True, go_backwards=False, mask=None, **step_options
):
    """Run `step` over `sequences` of shape `(batch, time, features)`.

    Follows `keras.layers.RNN`'s semantics: where `mask[b, t]` is False the
    state of row b is carried over unchanged and the output repeats the
    previous output (zeros before the first unmasked step). With
    `go_backwards` the steps are taken last to first, and the returned
    sequence is in that (reversed) order, as Keras returns it.

    Returns `(output, final_states)` with output `(batch, time, units)` when
    `return_sequences` else `(batch, units)`.
    """
    sequences = np.asarray(sequences, dtype=np.float64)
    states = [np.asarray(s, dtype=np.float64) for s in initial_states]
    order = range(sequences.shape[1])
    if go_backwards:
        order = reversed(order)
    outputs = []
    previous_output = None
    for t in order:
        output, new_states = step(sequences[:, t], *states, *weights, **step_options)
        if mask is not None:
            keep = np.asarray(mask)[:, t][:, None]
            if previous_output is None:
                previous_output = np.zeros_like(output)
            output = np.where(keep, output, previous_output)
            new_states = [np.where(keep, new, old) for new, old in zip(new_states, states)]
        states = new_states
        previous_output = output
        outputs.append(output)
    if return_sequences:
        return np.stack(outputs, axis=1), states
    return outputs[-1], states
