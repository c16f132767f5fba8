"""The layer-normalised cells and the LSTM variants in plain NumPy, written from their equations.

An independent reference for `layers.norm_cells` and `layers.lstm_variants`,
in the style of `tests.layers.numpy_reference` (whose activations, gate
blocks and `run_sequence` it uses): nothing here imports the project or Keras.
Each step takes the weights in the cell's order (`cell.get_weights()`), in
float64. `use_bias=False` means the list has no bias.
"""

import numpy as np

from tests.layers.numpy_reference import ACTIVATIONS, _as64, _blocks


def layer_norm(v, gamma, beta=None, epsilon=1e-3):
    """`(v - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis (biased variance)."""
    mean = v.mean(axis=-1, keepdims=True)
    variance = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    normalized = (v - mean) / np.sqrt(variance + epsilon) * gamma
    return normalized if beta is None else normalized + beta


def _inputs(x, h, input_mask, recurrent_mask):
    x, h = _as64(x, h)
    if input_mask is not None:
        x = x * input_mask
    if recurrent_mask is not None:
        h = h * recurrent_mask
    return x, h


def _take_bias(weights, use_bias):
    """`(kernel, recurrent_kernel, bias or None, rest)` of a weight list."""
    weights = _as64(*weights)
    if use_bias:
        return weights[0], weights[1], weights[2], weights[3:]
    return weights[0], weights[1], None, weights[2:]


def layer_norm_simple_rnn_step(
    x, h, *weights, activation="tanh", use_bias=True, epsilon=1e-5, input_mask=None, recurrent_mask=None
):
    """Addons' `h_t = activation(LN_scale(x W + h U) + b)`; weights kernel, recurrent, [bias], gamma."""
    x, h = _inputs(x, h, input_mask, recurrent_mask)
    kernel, recurrent_kernel, bias, (gamma,) = _take_bias(weights, use_bias)
    net = layer_norm(x @ kernel + h @ recurrent_kernel, gamma, None, epsilon)
    if bias is not None:
        net = net + bias
    h_new = ACTIVATIONS[activation](net)
    return h_new, [h_new]


def layer_norm_lstm_step(
    x,
    h,
    c,
    *weights,
    activation="tanh",
    recurrent_activation="sigmoid",
    use_bias=True,
    epsilon=1e-3,
    carry_normalized_state=True,
    input_mask=None,
    recurrent_mask=None,
):
    """Addons' layer-normalised LSTM (or Ba et al.'s with `carry_normalized_state=False`)."""
    x, h = _inputs(x, h, input_mask, recurrent_mask)
    (c,) = _as64(c)
    kernel, recurrent_kernel, bias, norms = _take_bias(weights, use_bias)
    kernel_gamma, kernel_beta, recurrent_gamma, recurrent_beta, state_gamma, state_beta = norms
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    z = layer_norm(x @ kernel, kernel_gamma, kernel_beta, epsilon)
    z = z + layer_norm(h @ recurrent_kernel, recurrent_gamma, recurrent_beta, epsilon)
    if bias is not None:
        z = z + bias
    z_i, z_f, z_c, z_o = _blocks(z, 4)
    c_raw = gate(z_f) * c + gate(z_i) * act(z_c)
    c_normalized = layer_norm(c_raw, state_gamma, state_beta, epsilon)
    h_new = gate(z_o) * act(c_normalized)
    return h_new, [h_new, c_normalized if carry_normalized_state else c_raw]


def layer_norm_gru_step(
    x,
    h,
    *weights,
    activation="tanh",
    recurrent_activation="sigmoid",
    use_bias=True,
    reset_after=True,
    epsilon=1e-3,
    input_mask=None,
    recurrent_mask=None,
):
    """The layer-normalised GRU of `layers.LayerNormGRUCell`'s docstring."""
    x, s = _inputs(x, h, input_mask, None)
    (h,) = _as64(h)
    if recurrent_mask is not None:
        s = s * recurrent_mask
    kernel, recurrent_kernel, bias, norms = _take_bias(weights, use_bias)
    kernel_gamma, kernel_beta, gates_gamma, gates_beta, candidate_gamma, candidate_beta = norms
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    if bias is None:
        input_bias, recurrent_bias = 0.0, np.zeros(recurrent_kernel.shape[-1])
    elif reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, np.zeros(recurrent_kernel.shape[-1])
    a_z, a_r, a_h = _blocks(layer_norm(x @ kernel, kernel_gamma, kernel_beta, epsilon) + input_bias, 3)
    u_z, u_r, u_h = _blocks(recurrent_kernel, 3)
    rb_z, rb_r, rb_h = _blocks(recurrent_bias, 3)
    g_z, g_r = _blocks(layer_norm(s @ np.concatenate([u_z, u_r], -1), gates_gamma, gates_beta, epsilon), 2)
    z = gate(a_z + g_z + rb_z)
    r = gate(a_r + g_r + rb_r)
    if reset_after:
        n = act(a_h + r * (layer_norm(s @ u_h, candidate_gamma, candidate_beta, epsilon) + rb_h))
    else:
        n = act(a_h + layer_norm((r * s) @ u_h, candidate_gamma, candidate_beta, epsilon))
    h_new = z * h + (1.0 - z) * n
    return h_new, [h_new]


def gated_lstm_step(
    x,
    h,
    c,
    *weights,
    activation="tanh",
    recurrent_activation="sigmoid",
    use_bias=True,
    use_peepholes=False,
    coupled_input_forget_gate=False,
    projection=False,
    cell_clip=None,
    proj_clip=None,
    input_mask=None,
    recurrent_mask=None,
):
    """An LSTM with optional peepholes, coupled input-forget gate, clipping and projection.

    Weights: kernel, recurrent kernel, [bias], [peepholes i (not with the coupled gate), f, o],
    [projection kernel]. Gate blocks i, f, c, o, or f, c, o with the coupled gate.
    """
    x, h = _inputs(x, h, input_mask, recurrent_mask)
    (c,) = _as64(c)
    kernel, recurrent_kernel, bias, rest = _take_bias(weights, use_bias)
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    z = x @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias)
    gate_count = 3 if coupled_input_forget_gate else 4
    blocks = _blocks(z, gate_count)
    z_f, z_c, z_o = blocks[-3:]
    peephole_count = (gate_count - 1) if use_peepholes else 0
    peepholes, rest = rest[:peephole_count], rest[peephole_count:]
    p_i = p_f = p_o = 0.0
    if use_peepholes:
        *p_i, p_f, p_o = peepholes
        p_i = p_i[0] if p_i else 0.0
    f = gate(z_f + p_f * c)
    i = 1.0 - f if coupled_input_forget_gate else gate(blocks[0] + p_i * c)
    c_new = f * c + i * act(z_c)
    if cell_clip is not None:
        c_new = np.clip(c_new, -cell_clip, cell_clip)
    h_new = gate(z_o + p_o * c_new) * act(c_new)
    if projection:
        h_new = h_new @ rest[0]
        if proj_clip is not None:
            h_new = np.clip(h_new, -proj_clip, proj_clip)
    return h_new, [h_new, c_new]
