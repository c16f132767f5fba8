"""Cross-check the from-scratch cells against Keras's built-in cells.

The grid and the comparison behind `python -m recipes.crosscheck` and the
tests in tests/layers: for every `Setting` of a grid (cell type, bias,
activations, batch and sequence sizes, and the ways `keras.layers.RNN` can
run a cell: return_sequences, return_state, go_backwards, unroll, stateful,
initial_state, masks, Bidirectional, stacked cells, inside `tf.function`),
`compare` builds the same network twice, once with our cell and once with
Keras's, copies the weights across with `set_weights`, runs both on the same
inputs, and measures:

- the outputs and final states (largest absolute difference), and
- the gradients of a fixed random projection of all outputs with respect to
  the inputs, the initial states and every weight (largest relative
  difference, per tensor `max|ours - keras| / max(max|keras|, 1e-6)`).

A setting passes when the outputs and states agree within 1e-5 (absolute)
and the gradients within 1e-4 (relative); looser under mixed precision, see
TOLERANCES. `default_grid`, `quick_grid` and `full_grid` list the settings.

Runs on the TensorFlow backend (gradients through `tf.GradientTape`, graph
settings through `tf.function`); `import layers` does not import this module.
"""

import dataclasses
import itertools

import keras
import numpy as np
import tensorflow as tf

from layers.cells import GRUCell, LSTMCell, SimpleRNNCell

OUTPUT_TOLERANCE = 1e-5  # absolute, outputs and states are O(1)
GRADIENT_TOLERANCE = 1e-4  # relative, per gradient tensor
# Under a mixed policy both sides compute in half precision; allow about two
# units in the last place at 1.0 (float16: 2**-10, bfloat16: 2**-7) for
# outputs, and ten times that, relative, for gradients.
TOLERANCES = {
    "float32": (OUTPUT_TOLERANCE, GRADIENT_TOLERANCE),
    "mixed_float16": (2 * 2.0**-10, 20 * 2.0**-10),
    "mixed_bfloat16": (2 * 2.0**-7, 20 * 2.0**-7),
}
GRADIENT_FLOOR = 1e-6  # denominators below this count as this (all-zero gradients)

# Our cell kinds; "gru_reset_before" is GRUCell(reset_after=False).
CELL_KINDS = ("simple_rnn", "lstm", "gru", "gru_reset_before")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration to compare; the defaults are the plainest case."""

    cell: str  # one of CELL_KINDS
    use_bias: bool = True  # cell's use_bias
    activation: str = "default"  # cell's `activation`, or "default" for the cell's own
    recurrent_activation: str = "default"  # LSTM/GRU gate activation, or "default"
    unit_forget_bias: bool = True  # LSTM only
    own_bias_init: bool = False  # keep each layer's initial bias (not copied): checks the initializers
    batch: int = 2  # batch size
    timesteps: int = 3  # sequence length
    features: int = 3  # input width
    units: int = 4  # cell width (the second stacked cell has units + 1)
    wrapper: str = "rnn"  # "rnn", "bidirectional" or "stacked" (two cells in one RNN)
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    unroll: bool = False
    stateful: bool = False  # two consecutive calls; the second starts from the first's state
    initial_state: bool = False  # pass a random initial_state
    mask: str = "none"  # "none", "left" or "right" padding
    mask_via: str = "argument"  # "argument" (mask=...) or "masking_layer" (keras.layers.Masking)
    graph: bool = False  # run forward and gradients inside tf.function
    direction: str = "ours_to_keras"  # weights set on one side and copied: or "keras_to_ours"

    def __post_init__(self):
        if self.cell not in CELL_KINDS:
            raise ValueError(
                f"Received an invalid value for argument `cell`, expected one of {CELL_KINDS}, got {self.cell!r}."
            )
        choices = {
            "wrapper": ("rnn", "bidirectional", "stacked"),
            "mask": ("none", "left", "right"),
            "mask_via": ("argument", "masking_layer"),
            "direction": ("ours_to_keras", "keras_to_ours"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected one "
                    f"of {allowed}, got {getattr(self, name)!r}."
                )
        if self.wrapper == "bidirectional" and self.go_backwards:
            raise ValueError(
                "keras.layers.Bidirectional refuses a layer with go_backwards=True "
                "(it makes the backward copy itself); use one or the other."
            )
        if self.stateful and self.initial_state:
            raise ValueError(
                "A stateful setting takes its initial state from the layer; "
                "`stateful` and `initial_state` cannot both be True."
            )

    def label(self):
        """A short description listing what differs from the plainest case."""
        parts = [self.cell]
        if not self.use_bias:
            parts.append("no-bias")
        if self.activation != "default" or self.recurrent_activation != "default":
            parts.append(f"act={self.activation}/{self.recurrent_activation}")
        if self.cell == "lstm" and not self.unit_forget_bias:
            parts.append("no-forget-bias")
        if self.own_bias_init:
            parts.append("init-bias")
        parts.append(f"b{self.batch}t{self.timesteps}")
        if self.wrapper != "rnn":
            parts.append(self.wrapper)
        flags = [
            ("seq", self.return_sequences),
            ("state", self.return_state),
            ("backwards", self.go_backwards),
            ("unroll", self.unroll),
            ("stateful", self.stateful),
            ("init-state", self.initial_state),
            ("graph", self.graph),
        ]
        parts += [name for name, on in flags if on]
        if self.mask != "none":
            parts.append(f"mask-{self.mask}-{'arg' if self.mask_via == 'argument' else 'Masking'}")
        if self.direction == "keras_to_ours":
            parts.append("keras->ours")
        return " ".join(parts)


@dataclasses.dataclass
class Comparison:
    """Result of one setting."""

    setting: Setting
    output_difference: float  # max |ours - keras| over outputs and states
    gradient_difference: float  # max relative difference over gradient tensors
    gradient_count: int  # number of gradient tensors compared
    dtype_policy: str = "float32"  # the global Keras dtype policy of the run

    @property
    def passed(self):
        output_tolerance, gradient_tolerance = TOLERANCES[self.dtype_policy]
        return self.output_difference <= output_tolerance and self.gradient_difference <= gradient_tolerance


def cell_arguments(setting):
    """Constructor arguments shared by our cell and Keras's for `setting`."""
    arguments = {"use_bias": setting.use_bias}
    if setting.activation != "default":
        arguments["activation"] = setting.activation
    if setting.cell != "simple_rnn" and setting.recurrent_activation != "default":
        arguments["recurrent_activation"] = setting.recurrent_activation
    if setting.cell == "lstm":
        arguments["unit_forget_bias"] = setting.unit_forget_bias
    if setting.cell.startswith("gru"):
        arguments["reset_after"] = setting.cell == "gru"
    return arguments


def make_cells(setting, units):
    """`(ours, keras)`: one of our cells and the matching Keras cell."""
    ours_class, keras_class = {
        "simple_rnn": (SimpleRNNCell, keras.layers.SimpleRNNCell),
        "lstm": (LSTMCell, keras.layers.LSTMCell),
        "gru": (GRUCell, keras.layers.GRUCell),
        "gru_reset_before": (GRUCell, keras.layers.GRUCell),
    }[setting.cell]
    arguments = cell_arguments(setting)
    return ours_class(units, **arguments), keras_class(units, **arguments)


def make_layers(setting):
    """`(ours, keras)`: the network of `setting` built twice, not yet sharing weights."""
    rnn_arguments = dict(
        return_sequences=setting.return_sequences,
        return_state=setting.return_state,
        go_backwards=setting.go_backwards,
        unroll=setting.unroll,
        stateful=setting.stateful,
    )
    networks = []
    for side in (0, 1):
        if setting.wrapper == "stacked":
            first = make_cells(setting, setting.units)[side]
            second = make_cells(setting, setting.units + 1)[side]
            network = keras.layers.RNN([first, second], **rnn_arguments)
        else:
            network = keras.layers.RNN(make_cells(setting, setting.units)[side], **rnn_arguments)
            if setting.wrapper == "bidirectional":
                network = keras.layers.Bidirectional(network)
        network.build((setting.batch, setting.timesteps, setting.features))
        networks.append(network)
    return tuple(networks)


def share_weights(setting, ours, theirs, seed):
    """Give one side random weights and copy them to the other with `set_weights`.

    With `own_bias_init` only the kernels are copied and each side keeps the
    bias its own initializer made (zeros, with ones for the LSTM forget gate
    when `unit_forget_bias`).
    """
    rng = np.random.default_rng([seed, 1])
    source, target = (ours, theirs) if setting.direction == "ours_to_keras" else (theirs, ours)
    names = [w.path.split("/")[-1] for w in source.weights]
    values = []
    for name, weight, current in zip(names, source.weights, source.get_weights()):
        if setting.own_bias_init and name == "bias":
            values.append(current)
        else:
            values.append(rng.normal(0.0, 0.5, size=tuple(weight.shape)).astype("float32"))
    source.set_weights(values)
    if setting.own_bias_init:
        copied = [v if n != "bias" else t for n, v, t in zip(names, values, target.get_weights())]
        target.set_weights(copied)
    else:
        target.set_weights(source.get_weights())


def _state_widths(setting, units):
    return [units, units] if setting.cell == "lstm" else [units]


def make_inputs(setting, seed):
    """`(sequences, initial_state, mask)` as NumPy arrays (the last two may be None).

    Padded steps (where the mask is False) hold zeros, so a Masking layer
    finds the same mask as the `mask` argument. Row 0 is never padded.
    """
    rng = np.random.default_rng([seed, 2])
    shape = (setting.batch, setting.timesteps, setting.features)
    sequences = rng.normal(0.0, 1.0, size=shape).astype("float32")
    mask = None
    if setting.mask != "none":
        mask = np.ones(shape[:2], dtype=bool)
        for row in range(1, setting.batch):
            padding = 1 + (row - 1) % setting.timesteps
            if setting.mask == "left":
                mask[row, :padding] = False
            else:
                mask[row, setting.timesteps - padding :] = False
        sequences = sequences * mask[:, :, None]
    initial_state = None
    if setting.initial_state:
        widths = _state_widths(setting, setting.units)
        if setting.wrapper == "stacked":
            second = _state_widths(setting, setting.units + 1)
            groups = [widths, second]
        elif setting.wrapper == "bidirectional":
            groups = [widths + widths]
        else:
            groups = [widths]
        initial_state = [
            [rng.normal(0.0, 0.5, size=(setting.batch, w)).astype("float32") for w in group] for group in groups
        ]
        if setting.wrapper != "stacked":
            initial_state = initial_state[0]
    return sequences, initial_state, mask


def _projection(shape, index, seed):
    rng = np.random.default_rng([seed, 3, index])
    return rng.normal(0.0, 1.0, size=tuple(shape)).astype("float32")


def run_network(setting, network, sequences, initial_state, mask, seed):
    """Outputs and gradients of `network` on the inputs.

    Returns `(outputs, gradients)`: lists of NumPy arrays. Outputs are the
    flattened outputs and states of every call (two calls when stateful);
    gradients are those of the last call's loss, a fixed random projection
    of its outputs, with respect to the sequences, the initial states and
    every trainable weight, in that order.
    """
    masking = keras.layers.Masking(0.0)
    weights = list(network.trainable_weights)

    def forward_and_gradients(sequences, initial_state):
        with tf.GradientTape() as tape:
            tape.watch(sequences)
            states = [] if initial_state is None else tf.nest.flatten(initial_state)
            tape.watch(states)
            arguments = {}
            inputs = sequences
            if mask is not None:
                if setting.mask_via == "argument":
                    arguments["mask"] = tf.constant(mask)
                else:
                    inputs = masking(sequences)
            if initial_state is not None:
                arguments["initial_state"] = initial_state
            outputs = [tf.cast(o, "float32") for o in tf.nest.flatten(network(inputs, **arguments))]
            loss = tf.add_n(
                [tf.reduce_sum(output * _projection(output.shape, index, seed)) for index, output in enumerate(outputs)]
            )
        sources = [sequences, *states, *weights]
        gradients = tape.gradient(loss, sources)
        gradients = [tf.zeros_like(s) if g is None else tf.convert_to_tensor(g) for g, s in zip(gradients, sources)]
        return outputs, gradients

    if setting.graph:
        forward_and_gradients = tf.function(forward_and_gradients)
    sequences = tf.constant(sequences)
    if initial_state is not None:
        initial_state = tf.nest.map_structure(tf.constant, initial_state)
    outputs = []
    for _ in range(2 if setting.stateful else 1):
        call_outputs, gradients = forward_and_gradients(sequences, initial_state)
        outputs += [np.asarray(o) for o in call_outputs]
    return outputs, [np.asarray(g) for g in gradients]


def relative_difference(ours, reference):
    """`max|ours - reference| / max(max|reference|, GRADIENT_FLOOR)`."""
    scale = max(float(np.max(np.abs(reference), initial=0.0)), GRADIENT_FLOOR)
    return float(np.max(np.abs(ours - reference), initial=0.0)) / scale


def compare(setting, seed=0, dtype_policy="float32"):
    """Run `setting` with our cell and with Keras's; return a `Comparison`.

    `dtype_policy` is set as Keras's global policy while both networks are
    built and run (one of TOLERANCES), and restored afterwards.
    """
    if dtype_policy not in TOLERANCES:
        raise ValueError(
            f"Received an invalid value for argument `dtype_policy`, expected one of "
            f"{sorted(TOLERANCES)}, got {dtype_policy!r}."
        )
    keras.utils.set_random_seed(seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
        ours, theirs = make_layers(setting)
        share_weights(setting, ours, theirs, seed)
        sequences, initial_state, mask = make_inputs(setting, seed)
        our_outputs, our_gradients = run_network(setting, ours, sequences, initial_state, mask, seed)
        keras_outputs, keras_gradients = run_network(setting, theirs, sequences, initial_state, mask, seed)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if [o.shape for o in our_outputs] != [o.shape for o in keras_outputs]:
        raise AssertionError(
            f"{setting.label()}: output shapes differ: ours {[o.shape for o in our_outputs]}, "
            f"Keras {[o.shape for o in keras_outputs]}"
        )
    if [g.shape for g in our_gradients] != [g.shape for g in keras_gradients]:
        raise AssertionError(f"{setting.label()}: gradient shapes differ")
    output_difference = max(float(np.max(np.abs(a - b))) for a, b in zip(our_outputs, keras_outputs))
    gradient_difference = max(relative_difference(a, b) for a, b in zip(our_gradients, keras_gradients))
    return Comparison(setting, output_difference, gradient_difference, len(our_gradients), dtype_policy)


def _variants(cell):
    """Cell-level variants: bias and activations."""
    yield {}
    yield {"use_bias": False}
    if cell == "simple_rnn":
        yield {"activation": "relu"}
    else:
        yield {"activation": "relu", "recurrent_activation": "hard_sigmoid"}
    if cell == "lstm":
        yield {"unit_forget_bias": False, "own_bias_init": True}
        yield {"unit_forget_bias": True, "own_bias_init": True}


# How RNN runs the cell; each entry is one setting per cell kind in the default grid.
_RUN_MODES = (
    {"batch": 1, "timesteps": 1},
    {"return_sequences": True, "return_state": True},
    {"go_backwards": True, "return_sequences": True},
    {"unroll": True, "return_sequences": True, "return_state": True},
    {"stateful": True, "return_state": True},
    {"initial_state": True, "return_state": True},
    {"mask": "left", "return_sequences": True, "return_state": True, "timesteps": 4, "batch": 3},
    {"mask": "right", "mask_via": "masking_layer", "return_state": True, "timesteps": 4, "batch": 3},
    {"mask": "right", "go_backwards": True, "return_sequences": True, "timesteps": 4, "batch": 3},
    {"wrapper": "bidirectional", "return_sequences": True},
    {"wrapper": "bidirectional", "initial_state": True, "return_state": True},
    {"wrapper": "stacked", "return_sequences": True, "return_state": True},
    {"wrapper": "stacked", "initial_state": True, "return_state": True, "mask": "left"},
    {"graph": True, "return_sequences": True, "return_state": True},
    {"graph": True, "mask": "left", "mask_via": "masking_layer", "return_state": True},
    {"direction": "keras_to_ours", "return_state": True},
)


def default_grid(cells=CELL_KINDS):
    """The grid `python -m recipes.crosscheck` runs: every cell variant and run mode once."""
    grid = []
    for cell in cells:
        grid += [Setting(cell, **variant) for variant in _variants(cell)]
        grid += [Setting(cell, **mode) for mode in _RUN_MODES]
    return grid


def quick_grid(cells=CELL_KINDS):
    """A cover of the default grid that takes about half as long.

    Every cell variant once, and every run mode with two cell kinds (taken in
    turn, so each cell kind meets about half of the run modes).
    """
    grid = []
    for cell in cells:
        grid += [Setting(cell, **variant) for variant in _variants(cell)]
    for index, mode in enumerate(_RUN_MODES):
        for offset in (0, 1):
            grid.append(Setting(cells[(index + offset) % len(cells)], **mode))
    return list(dict.fromkeys(grid))


def full_grid(cells=CELL_KINDS):
    """Every cell variant crossed with sizes, wrappers and run modes (slow)."""
    sizes = (
        {"batch": 1, "timesteps": 1},
        {"batch": 1, "timesteps": 4},
        {"batch": 3, "timesteps": 1},
        {"batch": 3, "timesteps": 4},
    )
    wrappers = ("rnn", "bidirectional", "stacked")
    modes = (
        {},
        {"go_backwards": True},
        {"unroll": True},
        {"stateful": True},
        {"initial_state": True},
        {"mask": "left"},
        {"mask": "right", "mask_via": "masking_layer"},
        {"graph": True, "mask": "right"},
        {"direction": "keras_to_ours", "unroll": True, "go_backwards": True},
    )
    grid = []
    for cell in cells:
        for variant, size, wrapper, mode in itertools.product(list(_variants(cell)), sizes, wrappers, modes):
            # Keras's Bidirectional.compute_mask fails for stateful layers
            # returning states (a Keras bug); keep states off in that case.
            return_state = not (wrapper == "bidirectional" and mode.get("stateful"))
            if wrapper == "bidirectional" and mode.get("go_backwards"):
                mode = {key: value for key, value in mode.items() if key != "go_backwards"}
            grid.append(
                Setting(
                    cell, wrapper=wrapper, return_sequences=True, return_state=return_state, **variant, **size, **mode
                )
            )
    return list(dict.fromkeys(grid))
