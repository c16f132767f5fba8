"""Model builders by name (`"char_lm/lstm"`, `"forecast/gru"`, ...)."""

_BUILDERS = {}


def register(name):
    """Decorator: register `builder(config) -> keras.Model` under `name`."""

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
    """The builder registered as `name`; an unknown name lists the known ones."""
    _import_tasks()
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown model name {name!r}. Known models: {', '.join(sorted(_BUILDERS)) or 'none'}."
        )
    return _BUILDERS[name]


def build(name, config, **kwargs):
    """Build the model registered as `name` from `config`.

    Keyword arguments go to the builder: the character LM's builders need
    `vocabulary_size=`, which comes from the data rather than the config.
    """
    return get(name)(config, **kwargs)


def _import_tasks():
    # Task modules register their builders on import.
    import importlib

    for module in ("zoo.char_lm", "zoo.forecast", "zoo.sentiment", "zoo.memory"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
