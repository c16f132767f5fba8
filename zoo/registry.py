"""Model builders by name: `"char_lm/lstm"`, `"forecast/gru-autoregressive"`, `"memory/conv"`, ...

Every task registers each of its models here as `<task>/<model>` when its
package is imported, and the task's training and evaluation build their
models through `build`, so a name in a config, a flag or a saved run means
the same model everywhere, and an unknown name fails with the list of known
ones. A cell alias (`simple_rnn`, see `zoo.cells`) names the same builder as
the canonical cell name.
"""

import importlib

from zoo import cells
from zoo.errors import UserError

TASKS = ("char_lm", "forecast", "memory", "sentiment")
_BUILDERS = {}


def register(name):
    """Decorator: register `builder(config, ...) -> keras.Model` under `name`."""

    def decorator(builder):
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"A model builder named {name!r} is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def names(prefix=""):
    """The registered names, sorted; only those starting with `prefix` if given."""
    _import_tasks()
    return sorted(name for name in _BUILDERS if name.startswith(prefix))


def get(name):
    """The builder registered as `name`; an unknown name is a `UserError` listing the known ones."""
    _import_tasks()
    task, slash, model = name.partition("/")
    key = task + slash + cells.canonical_name(model)
    if key not in _BUILDERS:
        raise UserError(f"Unknown model name {name!r}. Known models: {', '.join(sorted(_BUILDERS)) or 'none'}.")
    return _BUILDERS[key]


def build(name, config, *args, **kwargs):
    """Build the model registered as `name` from `config`.

    Further arguments go to the builder: the character LM's builders need
    `vocabulary_size=`, which comes from the data rather than the config;
    the sentiment builders take `num_classes` and `training_texts`.
    """
    return get(name)(config, *args, **kwargs)


def _import_tasks():
    # Task packages register their builders on import.
    for task in TASKS:
        importlib.import_module(f"zoo.{task}")
