"""Load weights saved from TensorFlow Addons' recurrent cells, and from `tf.compat.v1`'s LSTM cell.

`load_addons_weights(cell, source)` sets a cell's weights from arrays named as
TensorFlow names them (`rnn/layer_norm_lstm_cell/kernel_norm/gamma:0`): our
`LayerNormLSTMCell`, `LayerNormSimpleRNNCell` and `PeepholeLSTMCell` name
their weights as Addons' cells of the same names, so each weight is found by
its name below the cell (`kernel_norm/gamma`). `load_tf1_lstm_cell_weights`
converts the weights of `tf.compat.v1.nn.rnn_cell.LSTMCell` (one kernel over
`[inputs, h]`, gates i, j, f, o, `forget_bias` added inside, peepholes
`w_*_diag`, `projection/kernel`) for our `ProjectionLSTMCell`.

A `source` is a mapping from names to arrays, or the path of a Keras 2 HDF5
weights file (`model.save_weights("x.h5")` or a whole-model `.h5`).
"""

import numpy as np

# Our names of the peephole weights, and tf.compat.v1's.
_TF1_PEEPHOLES = {
    "input_gate_peephole_weights": "w_i_diag",
    "forget_gate_peephole_weights": "w_f_diag",
    "output_gate_peephole_weights": "w_o_diag",
}


def read_weights(source):
    """`{name: array}` from a mapping, or from a Keras 2 HDF5 weights file; names lose TensorFlow's `:0`."""
    if isinstance(source, dict):
        items = source.items()
    else:
        items = _read_hdf5(source)
    return {_strip(name): np.asarray(array) for name, array in items}


def _strip(name):
    name = name.decode() if isinstance(name, bytes) else str(name)
    return name[: -len(":0")] if name.endswith(":0") else name


def _read_hdf5(path):
    import h5py

    items = []
    with h5py.File(path, "r") as file:
        group = file["model_weights"] if "model_weights" in file else file
        for layer_name in group.attrs.get("layer_names", []):
            layer_name = _strip(layer_name)
            for weight_name in group[layer_name].attrs.get("weight_names", []):
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
                items.append((f"{layer_name}/{weight_name}", group[layer_name][weight_name][()]))
    if not items:
        raise ValueError(f"Received `source={path!r}`, an HDF5 file with no Keras layer weights in it.")
    return items


def _match(arrays, names, prefix, what):
    """`{name: array}` for `names`, all found below one common prefix of the source's names."""
    if prefix is not None:
        arrays = {key: value for key, value in arrays.items() if key.startswith(prefix)}
    by_prefix = {}
    for name in names:
        for key in arrays:
            if key == name or key.endswith("/" + name):
                by_prefix.setdefault(key[: len(key) - len(name)], set()).add(name)
    complete = sorted(p for p, found in by_prefix.items() if found == set(names))
    if not complete:
        best = max(by_prefix.items(), key=lambda item: len(item[1]), default=("", set()))
        missing = [name for name in names if name not in best[1]]
        raise ValueError(
            f"Received weights without {missing} for {what}, which needs {list(names)}; "
            f"the names received are {sorted(arrays)}."
        )
    if len(complete) > 1:
        raise ValueError(
            f"Received weights of several cells for {what}, below {complete}: pass `prefix=` "
            "(one of these) to choose one."
        )
    chosen = complete[0]
    unused = sorted(key for key in arrays if key.startswith(chosen) and key[len(chosen) :] not in names)
    if chosen and unused:
        raise ValueError(
            f"Received weights {unused} that {what} does not have (it has {list(names)}); "
            "the cell's arguments (use_bias, peepholes, projection) must match the saved cell's."
        )
    return {name: arrays[chosen + name] for name in names}


def _the_cell(cell):
    return getattr(cell, "cell", cell)  # a keras.layers.RNN holds its cell as `.cell`


def _set_by_name(cell, arrays, input_features):
    if not cell.built:
        cell.build((None, input_features))
    names = cell._weight_names()
    for name, weight in zip(names, cell.weights):
        if tuple(arrays[name].shape) != tuple(weight.shape):
            raise ValueError(
                f"Received weight `{name}` of shape {tuple(arrays[name].shape)} for "
                f"{type(cell).__name__} `{cell.name}`, expected shape {tuple(weight.shape)}."
            )
    cell.set_weights([arrays[name] for name in names])


def load_addons_weights(cell, source, prefix=None):
    """Set `cell`'s weights from an Addons model's, matched by name.

    `cell` is one of our cells (or a `keras.layers.RNN` holding it) with the
    arguments of the saved one; it is built from the saved kernel's shape if
    it is not built yet. Every weight must be found, below one common prefix
    (`prefix=` picks one when the source holds several cells), and the
    source must hold no other weight below that prefix.
    """
    cell = _the_cell(cell)
    names = _names_of(cell)
    arrays = _match(read_weights(source), names, prefix, f"{type(cell).__name__} `{cell.name}`")
    _set_by_name(cell, arrays, arrays["kernel"].shape[0])


def _names_of(cell):
    if cell.built:
        return cell._weight_names()
    probe = type(cell).from_config(cell.get_config())
    probe.build((None, 1))
    return probe._weight_names()


def load_tf1_lstm_cell_weights(cell, source, forget_bias=1.0, prefix=None):
    """Set a `ProjectionLSTMCell`'s (or `PeepholeLSTMCell`'s) weights from `tf.compat.v1.nn.rnn_cell.LSTMCell`'s.

    The TF1 cell adds `forget_bias` (its default 1.0) to the forget gate's
    pre-activation at every step; here it is folded into our bias. Its states
    are `(c, h)`, ours `[h, c]`. It has no coupled input-forget gate, and always
    a bias. `prefix` as in `load_addons_weights`.
    """
    cell = _the_cell(cell)
    arrays = tf1_lstm_cell_arrays(cell, source, forget_bias, prefix)
    _set_by_name(cell, arrays, arrays["kernel"].shape[0])


def tf1_lstm_cell_arrays(cell, source, forget_bias=1.0, prefix=None):
    """`{our weight name: array}` for `cell` from `tf.compat.v1.nn.rnn_cell.LSTMCell`'s weights.

    The conversion is linear apart from adding `forget_bias` to the forget
    gate's bias, so with `forget_bias=0` it also converts gradients.
    """
    cell = _the_cell(cell)
    what = f"{type(cell).__name__} `{cell.name}`"
    coupled = getattr(cell, "coupled_input_forget_gate", False)
    if coupled or not cell.use_bias or not hasattr(cell, "use_peepholes"):
        raise ValueError(
            f"Received {what} (coupled_input_forget_gate={coupled}, use_bias={cell.use_bias}); "
            "tf.compat.v1's LSTMCell has an input gate and a bias, so its weights need a "
            "ProjectionLSTMCell or PeepholeLSTMCell with coupled_input_forget_gate=False and use_bias=True."
        )
    tf1_names = ["kernel", "bias"]
    if cell.use_peepholes:
        tf1_names += list(_TF1_PEEPHOLES.values())
    if cell.proj_units is not None:
        tf1_names.append("projection/kernel")
    found = _match(read_weights(source), tf1_names, prefix, what)
    kernel, bias = found["kernel"], found["bias"].copy()
    features = kernel.shape[0] - cell._recurrent_units

    def reorder(matrix):  # gate blocks i, j, f, o -> i, f, c(j), o
        i, j, f, o = np.split(matrix, 4, axis=-1)
        return np.concatenate([i, f, j, o], axis=-1)

    units = cell.units
    bias[2 * units : 3 * units] += forget_bias
    arrays = {
        "kernel": reorder(kernel[:features]),
        "recurrent_kernel": reorder(kernel[features:]),
        "bias": reorder(bias),
    }
    if cell.use_peepholes:
        arrays.update({ours: found[theirs] for ours, theirs in _TF1_PEEPHOLES.items()})
    if cell.proj_units is not None:
        arrays["projection_kernel"] = found["projection/kernel"]
    return arrays
