"""The variant cells under test, each with its NumPy reference step (`tests.layers.numpy_variants`)."""

import layers
from tests.layers import numpy_variants as reference

UNITS = 3
FEATURES = 4

# kind: (cell class, cell arguments, reference step, reference options)
KINDS = {
    "layer_norm_simple_rnn": (layers.LayerNormSimpleRNNCell, {}, reference.layer_norm_simple_rnn_step, {}),
    "layer_norm_lstm": (layers.LayerNormLSTMCell, {}, reference.layer_norm_lstm_step, {}),
    "layer_norm_lstm_paper": (
        layers.LayerNormLSTMCell,
        {"carry_normalized_state": False},
        reference.layer_norm_lstm_step,
        {"carry_normalized_state": False},
    ),
    "layer_norm_gru": (layers.LayerNormGRUCell, {}, reference.layer_norm_gru_step, {}),
    "layer_norm_gru_reset_before": (
        layers.LayerNormGRUCell,
        {"reset_after": False},
        reference.layer_norm_gru_step,
        {"reset_after": False},
    ),
    "peephole_lstm": (layers.PeepholeLSTMCell, {}, reference.gated_lstm_step, {"use_peepholes": True}),
    "projection_lstm": (layers.ProjectionLSTMCell, {"proj_units": 2}, reference.gated_lstm_step, {"projection": True}),
    "projection_lstm_all_options": (
        layers.ProjectionLSTMCell,
        dict(proj_units=2, use_peepholes=True, coupled_input_forget_gate=True, cell_clip=0.5, proj_clip=0.3),
        reference.gated_lstm_step,
        dict(projection=True, use_peepholes=True, coupled_input_forget_gate=True, cell_clip=0.5, proj_clip=0.3),
    ),
    "coupled_gate_lstm": (
        layers.ProjectionLSTMCell,
        {"coupled_input_forget_gate": True},
        reference.gated_lstm_step,
        {"coupled_input_forget_gate": True},
    ),
}
# The layer-normalised simple RNN's default epsilon is Addons' 1e-5, the others' 1e-3.
EPSILON = {"layer_norm_simple_rnn": 1e-5}


def make_cell(kind, units=UNITS, **arguments):
    cell_class, cell_arguments, _, _ = KINDS[kind]
    return cell_class(units, **{**cell_arguments, **arguments})


def reference_step(kind, **cell_arguments):
    """`(step, options)` of the NumPy reference for `kind` built with `cell_arguments`."""
    _, _, step, options = KINDS[kind]
    options = dict(options)
    for key in ("activation", "recurrent_activation", "use_bias"):
        if key in cell_arguments:
            options[key] = cell_arguments[key]
    if kind.startswith("layer_norm"):
        options["epsilon"] = EPSILON.get(kind, 1e-3)
    return step, options


def state_widths(cell):
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def random_weights(network, rng, scale=0.6):
    """Gains (`gamma`) around 1, every other weight around 0."""
    values = []
    for weight in network.weights:
        shape = tuple(weight.shape)
        if weight.name == "gamma":
            values.append(1.0 + 0.3 * rng.normal(size=shape))
        else:
            values.append(scale * rng.normal(size=shape))
    return [v.astype("float32") for v in values]
