"""The one vocabulary of recurrent cell names, shared by every task and recipe.

Config values (`--set cell=gru`, `--set models=rnn,conv`), registry names
(`char_lm/rnn`, `forecast/gru-autoregressive`) and run names spell the cells
`rnn`, `lstm` and `gru`. Other spellings used by earlier versions and found in
saved configs (`simple_rnn`, and the layer class names `SimpleRNN`, `LSTM`,
`GRU`) are accepted wherever a cell name is read and mean the same cell; a
value is never rewritten, so a run keeps the name it was given.
"""

import layers
from zoo.errors import UserError

CELLS = ("rnn", "lstm", "gru")
ALIASES = {"simple_rnn": "rnn", "SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
# Importing `layers` here also registers our layers with Keras, which loading a checkpoint needs.
_LAYERS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


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
    """Our whole-sequence layer (`layers.SimpleRNN`, `layers.LSTM`, `layers.GRU`) for the cell `name`."""
    return _LAYERS[canonical(name)]
