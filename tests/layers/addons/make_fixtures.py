"""Record TensorFlow Addons' recurrent cells as `.npz` fixtures for `tests/layers/test_addons_fixtures.py`.

The default test suite never imports TensorFlow Addons: it reads the files this
script writes next to itself. To write them again, in a virtual environment of
its own outside the repository (Addons needs Keras 2, this project Keras 3):

    python3.11 -m venv /work/venv-addons
    /work/venv-addons/bin/pip install tensorflow-cpu==2.15.1 tensorflow-addons==0.23.0
    /work/venv-addons/bin/python tests/layers/addons/make_fixtures.py

(run from the repository root; it prints one line per fixture written).

What is recorded, per case (one `.npz` per case, named after it):

- `weight/<name>`: every weight of the cell under the name TensorFlow gives it
  (`rnn/layer_norm_lstm_cell/kernel_norm/gamma:0`), in the cell's order
  (`weight_names` lists the names in that order);
- `inputs`, `mask` (if any), `initial_state/<k>` (if any);
- `output/<k>`: the outputs of `RNN(cell, return_sequences=True,
  return_state=True)` (the sequence, then the final states);
- `projection/<k>`: fixed random arrays `P_k`; the loss is `sum_k sum(output_k * P_k)`;
- `gradient/inputs`, `gradient/initial_state/<k>`, `gradient/weight/<name>`:
  that loss's gradients;
- `cell_config`: the cell's `get_config()` as JSON; `case`: the case as JSON.

Addons has no LSTM with a projection layer or a coupled input-forget gate.
For the projection (LSTMP, Sak et al. 2014, with and without peepholes and
clipping) the reference TensorFlow 2.15 offers is `tf.compat.v1.nn.rnn_cell.LSTMCell`
(`num_proj`, `use_peepholes`, `cell_clip`, `proj_clip`; gates i, j, f, o,
one kernel over `[inputs, h]`, `forget_bias` added inside, states `(c, h)`);
its cases start with `tf1_`. The coupled gate (CIFG) has no reference in
TensorFlow 2.15 or Addons (it was `tf.contrib.rnn.CoupledInputForgetGateLSTMCell`,
removed with `tf.contrib`): the tests check it against NumPy.

For the checkpoint migration test, `<case>.h5` holds the weights of
`Sequential([Input, RNN(cell)])` as Keras 2 saves them (`save_weights`).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_addons as tfa  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, TIME, FEATURES = 3, 5, 4
# Left padding on row 1, a hole in row 2: masked steps carry the state over.
MASK = np.array([[True] * 5, [False, False, True, True, True], [True, True, False, True, True]])

# case: (cell class, cell arguments, options); options: mask, initial_state, h5
CASES = {
    "layer_norm_lstm": ("LayerNormLSTMCell", dict(units=3), dict(h5=True)),
    "layer_norm_lstm_masked_initial_state": ("LayerNormLSTMCell", dict(units=4), dict(mask=True, initial_state=True)),
    "layer_norm_lstm_relu_no_bias": (
        "LayerNormLSTMCell",
        dict(units=2, activation="relu", use_bias=False, norm_epsilon=1e-2),
        dict(mask=True),
    ),
    "layer_norm_simple_rnn": ("LayerNormSimpleRNNCell", dict(units=3), dict(h5=True)),
    "layer_norm_simple_rnn_masked_initial_state": (
        "LayerNormSimpleRNNCell",
        dict(units=4, activation="relu", layernorm_epsilon=1e-3),
        dict(mask=True, initial_state=True),
    ),
    "layer_norm_simple_rnn_no_bias": ("LayerNormSimpleRNNCell", dict(units=5, use_bias=False), dict()),
    "peephole_lstm": ("PeepholeLSTMCell", dict(units=3), dict(h5=True)),
    "peephole_lstm_masked_initial_state": (
        "PeepholeLSTMCell",
        dict(units=4, activation="relu"),
        dict(mask=True, initial_state=True),
    ),
    "tf1_lstmp": ("tf1.LSTMCell", dict(num_units=4, num_proj=2), dict()),
    "tf1_lstmp_peepholes_masked_initial_state": (
        "tf1.LSTMCell",
        dict(num_units=4, num_proj=3, use_peepholes=True),
        dict(mask=True, initial_state=True),
    ),
    "tf1_lstmp_peepholes_clipped": (
        "tf1.LSTMCell",
        dict(num_units=3, num_proj=2, use_peepholes=True, cell_clip=0.6, proj_clip=0.3),
        dict(mask=True),
    ),
}


def make_cell(class_name, arguments):
    if class_name == "tf1.LSTMCell":
        return tf.compat.v1.nn.rnn_cell.LSTMCell(**arguments)
    return getattr(tfa.rnn, class_name)(**arguments)


def random_weights(weights, rng):
    """Non-trivial values for every weight: gains around 1, everything else around 0."""
    values = []
    for weight in weights:
        shape = tuple(weight.shape)
        if weight.name.rsplit("/", 1)[-1].startswith("gamma"):
            values.append(1.0 + 0.3 * rng.normal(size=shape))
        else:
            values.append(0.6 * rng.normal(size=shape))
    return [v.astype("float32") for v in values]


def record(name, class_name, arguments, options, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(class_name, arguments)
    rnn = tf.keras.layers.RNN(cell, return_sequences=True, return_state=True)
    inputs = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    state_sizes = tf.nest.flatten(cell.state_size)
    initial_state = None
    if options.get("initial_state"):
        initial_state = [rng.normal(size=(BATCH, size)).astype("float32") for size in state_sizes]
    mask = MASK if options.get("mask") else None
    rnn(inputs)  # builds
    weights = rnn.weights
    for weight, value in zip(weights, random_weights(weights, rng)):
        weight.assign(value)

    tensors = [tf.constant(inputs)] + ([tf.constant(s) for s in initial_state] if initial_state else [])
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        outputs = rnn(tensors[0], mask=mask, initial_state=tensors[1:] or None)
        projections = [rng.normal(size=tuple(o.shape)).astype("float32") for o in outputs]
        loss = tf.add_n([tf.reduce_sum(o * p) for o, p in zip(outputs, projections)])
    gradients = tape.gradient(loss, tensors + list(weights))

    arrays = {"inputs": inputs, "weight_names": np.array([w.name for w in weights])}
    if mask is not None:
        arrays["mask"] = mask
    for k, state in enumerate(initial_state or []):
        arrays[f"initial_state/{k}"] = state
    for k, (output, projection) in enumerate(zip(outputs, projections)):
        arrays[f"output/{k}"] = output.numpy()
        arrays[f"projection/{k}"] = projection
    arrays["gradient/inputs"] = gradients[0].numpy()
    for k in range(len(tensors) - 1):
        arrays[f"gradient/initial_state/{k}"] = gradients[1 + k].numpy()
    for weight, gradient in zip(weights, gradients[len(tensors) :]):
        arrays[f"weight/{weight.name}"] = weight.numpy()
        arrays[f"gradient/weight/{weight.name}"] = gradient.numpy()
    config = cell.get_config() if class_name != "tf1.LSTMCell" else dict(arguments)
    arrays["cell_config"] = np.array(json.dumps(config))
    arrays["case"] = np.array(json.dumps({"class_name": class_name, "arguments": arguments, **options}))
    np.savez_compressed(os.path.join(HERE, f"{name}.npz"), **arrays)

    if options.get("h5"):
        model = tf.keras.Sequential([tf.keras.Input((TIME, FEATURES)), tf.keras.layers.RNN(cell)])
        model.save_weights(os.path.join(HERE, f"{name}.h5"))
    scale = max(float(np.max(np.abs(arrays[f"output/{k}"]))) for k in range(len(outputs)))
    print(f"{name}: {class_name} {arguments}, {len(weights)} weights, max |output| {scale:.3f}")


def main():
    print(f"tensorflow {tf.__version__}, tensorflow-addons {tfa.__version__}")
    for seed, (name, (class_name, arguments, options)) in enumerate(CASES.items()):
        record(name, class_name, arguments, options, seed)


if __name__ == "__main__":
    main()
