"""The one vocabulary of recurrent cell names, shared by every task and recipe.

Config values (`--set cell=gru`, `--set models=rnn,conv`), registry names
(`char_lm/rnn`, `forecast/gru-autoregressive`) and run names spell the cells
`rnn`, `lstm` and `gru`, and the variants of `layers` (see layers/README.md)
`layernorm_rnn`, `layernorm_lstm`, `layernorm_gru`, `peephole_lstm` and
`projection_lstm`. Other spellings used by earlier versions and found in
saved configs (`simple_rnn`, and the layer class names `SimpleRNN`, `LSTM`,
`GRU`) are accepted wherever a cell name is read and mean the same cell; a
value is never rewritten, so a run keeps the name it was given.

Every cell is built as `layer_class(name)(units, **layer_arguments(name,
units, proj_units), ...)`: `projection_lstm` needs the size of its
projection, `proj_units`, which is `units // 2` unless a config sets it (its
output and the state it feeds back have that size; the cell state keeps
`units`). The other cells take their layer's defaults.

Every recipe config has an `implementation` field: "ours" (the layers of
`layers`, the default) or "keras" (`keras.layers.SimpleRNN`, `LSTM` and
`GRU`, for the plain cells only), so that the same recipe model can be
trained with either and compared. Our layers use Keras's weight names,
shapes and order of initialisation, so the same seed gives both the same
initial weights.
"""

import keras

import layers
from zoo.config import require_choice, require_int
from zoo.errors import UserError

PLAIN = ("rnn", "lstm", "gru")
VARIANTS = ("layernorm_rnn", "layernorm_lstm", "layernorm_gru", "peephole_lstm", "projection_lstm")
CELLS = PLAIN + VARIANTS
PROJECTION = "projection_lstm"
IMPLEMENTATIONS = ("ours", "keras")
ALIASES = {"simple_rnn": "rnn", "SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
# Importing `layers` here also registers our layers with Keras, which loading a checkpoint needs.
_LAYERS = {
    "rnn": layers.SimpleRNN,
    "lstm": layers.LSTM,
    "gru": layers.GRU,
    "layernorm_rnn": layers.LayerNormSimpleRNN,
    "layernorm_lstm": layers.LayerNormLSTM,
    "layernorm_gru": layers.LayerNormGRU,
    "peephole_lstm": layers.PeepholeLSTM,
    "projection_lstm": layers.ProjectionLSTM,
}
_KERAS_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def is_cell(name):
    """Whether `name` is a cell name or one of its aliases."""
    return name in CELLS or name in ALIASES


def canonical(name, field="cell"):
    """The canonical spelling of the cell `name`; `UserError` naming `field` for anything else."""
    if name in CELLS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    raise UserError(f"Received an invalid value for `{field}`: {name!r}; expected one of {list(CELLS)}.")


def canonical_name(name):
    """A model name with a leading cell alias spelled canonically; any other name unchanged.

    `"simple_rnn"` -> `"rnn"`, `"simple_rnn-autoregressive"` -> `"rnn-autoregressive"`,
    `"conv"` -> `"conv"`.
    """
    cell, dash, rest = name.partition("-")
    return ALIASES.get(cell, cell) + dash + rest


def layer_class(name, implementation="ours"):
    """The whole-sequence layer class for the cell `name`.

    With `implementation="ours"`: `layers.SimpleRNN`, ..., `layers.ProjectionLSTM`;
    with "keras": `keras.layers.SimpleRNN`, `LSTM` or `GRU` (a plain cell
    only). Anything else is a `UserError` (see `require_implementation`).
    """
    cell = canonical(name)
    require_implementation(implementation, [cell])
    return _KERAS_LAYERS[cell] if implementation == "keras" else _LAYERS[cell]


def require_implementation(implementation, names=(), field="cell"):
    """Check the config setting `implementation`: "ours" or "keras", and with "keras", plain cells only.

    `names` are the cell or model names the setting applies to (model names
    such as `lstm-autoregressive` are read by their leading cell; names that
    are no cell, such as `conv`, do not depend on it). A variant cell with
    "keras" is a `UserError` naming `field`: Keras has no built-in layer
    for it. Returns `implementation`.
    """
    require_choice("implementation", implementation, IMPLEMENTATIONS)
    if implementation == "keras":
        variants = []
        for name in names:
            cell = canonical_name(name).partition("-")[0]
            if cell in VARIANTS and name not in variants:
                variants.append(name)
        if variants:
            raise UserError(
                f"Received implementation='keras' with {field}={','.join(variants)}; Keras has no built-in layer "
                f"for {', '.join(variants)}, only for {', '.join(PLAIN)} (set implementation=ours to train the "
                "variant with our layers)."
            )
    return implementation


def has_keras_layer(name):
    """Whether the cell (or model) `name` has a Keras built-in layer: `rnn`, `lstm`, `gru` (aliases allowed)."""
    return canonical_name(name).partition("-")[0] in PLAIN


def projection_units(units, proj_units=0):
    """The projection size of a `projection_lstm` of `units`: `proj_units`, or `units // 2` (at least 1) for 0."""
    return proj_units or max(1, units // 2)


def layer_arguments(name, units, proj_units=0):
    """The constructor arguments beyond `units` that the cell `name` needs: `{"proj_units": ...}` or `{}`."""
    if canonical(name) == PROJECTION:
        return {"proj_units": projection_units(units, proj_units)}
    return {}


def require_proj_units(proj_units, names=None, field="cell"):
    """Check the config setting `proj_units`: 0 or a positive integer, and if `names` are given, used by one of them.

    A nonzero value with no `projection_lstm` among the model or cell names
    `names` is a `UserError` naming `field`: the setting would change nothing.
    """
    require_int("proj_units", proj_units, minimum=0, expected=f"0 (units // 2 for {PROJECTION}) or a positive integer")
    if (
        proj_units
        and names is not None
        and not any(canonical_name(name).partition("-")[0] == PROJECTION for name in names)
    ):
        raise UserError(
            f"Received proj_units={proj_units} with {field}={','.join(names)}; proj_units applies to "
            f"{PROJECTION} only (set {field}={PROJECTION}, or leave proj_units=0)."
        )
    return proj_units
