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
"""

import layers
from zoo.config import require_int
from zoo.errors import UserError

PLAIN = ("rnn", "lstm", "gru")
VARIANTS = ("layernorm_rnn", "layernorm_lstm", "layernorm_gru", "peephole_lstm", "projection_lstm")
CELLS = PLAIN + VARIANTS
PROJECTION = "projection_lstm"
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


def layer_class(name):
    """Our whole-sequence layer (`layers.SimpleRNN`, ..., `layers.ProjectionLSTM`) for the cell `name`."""
    return _LAYERS[canonical(name)]


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
