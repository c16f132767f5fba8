"""Benchmark the fused sequence layers against Keras's built-in layers.

For SimpleRNN, LSTM and GRU and a grid of sizes (batch, steps, inputs,
units), four contenders with the same weights:

- `fused`: our layer (`layers.LSTM`, ...), which takes the fused TensorFlow
  path (one input projection, a `tf.while_loop` recurrence and hand-written
  back-propagation through time), as it runs by default inside a
  `tf.function` with known shapes: its loops compiled by XLA where
  `jit_compile="auto"` compiles them (inference always; training up to 512
  units, or more with a batch of 64 or more), graph loops otherwise;
- `fused-graph`: the same layer with `jit_compile=False`, its loops run by
  TensorFlow's graph executor;
- `cell`: our cell inside `keras.layers.RNN` (the generic cell path);
- `keras`: Keras's built-in layer (`keras.layers.LSTM`, ...). Without a GPU
  it runs Keras's own cell inside `keras.layers.RNN`, so it is also the
  "Keras cell" baseline;
- with `--whole-batch`, also `fused-whole`: our layer with its compiled
  loops on the whole batch at once (`layers.fused.whole_batches`), where
  `fused` runs the two halves of the batch on two cores at the sizes where
  that measured faster (layers/README.md#batch-halves).

The variant layers (`--cells LayerNormLSTM,LayerNormGRU,LayerNormSimpleRNN,
PeepholeLSTM,ProjectionLSTM`, `VARIANT_KINDS`) have no Keras layer and no
floor: their contenders are `fused`, `fused-graph` and `cell` (the same
maths built from our cell in `keras.layers.RNN`), and their speed-ups are
relative to `cell` (the `x cell` column). `ProjectionLSTM` projects to half
the units (`proj_units = units // 2`).

Two measurements per contender, each a `tf.function` traced and run twice
before timing:

- `train`: one training step: forward pass (`training=True`) over the whole
  sequence (`return_sequences=True`), mean squared error against a fixed
  target, gradients, and an SGD update;
- `forward`: one inference pass (`training=False`).

Beside the contenders, a `floor`: the matrix products that every float32
implementation of the same math must do, and nothing else, with the same
shapes (G = number of gate blocks: 1 SimpleRNN, 3 GRU, 4 LSTM):

- forward floor: the input projection of all steps at once,
  `[steps * batch, inputs] @ [inputs, G * units]`, then `steps` sequential
  recurrent products `h @ recurrent_kernel` (`[batch, units] @
  [units, G * units]`) in a `tf.while_loop`;
- training floor: the forward floor, then `steps` sequential backward
  products `dz @ recurrent_kernel^T` (`[batch, G * units] @
  [G * units, units]`) in a `tf.while_loop`, then the two weight-gradient
  products over all steps, `H^T @ dZ` and `X^T @ dZ`.

Each product is timed in the forms TensorFlow's CPU kernels run at different
speeds, and the fastest is kept: the states as rows (`h @ U`) or as columns
(`U^T @ h^T`), the whole batch at once or its two halves as two independent
calls that the graph executor runs at the same time (as the fused layer's
compiled loops do), the weight-gradient products as one product or one per
gate block; the table names the layout (`floor(rows)`, `floor(columns)`,
`floor(rows-halves)`, `floor(columns-halves)`). No gate arithmetic, no
bias, no optimizer update, so `keras / floor` approximates the largest
speed-up over Keras's layer that an implementation built on these kernels
can reach, and `fused / floor` says how much of our time is spent outside
the unavoidable products. It is not a strict bound: the floor runs the
products as TensorFlow's kernels under the compile setting asked for, and
the fused layer compiles its loops with XLA even with `--xla off`, whose
products can run faster, so `fused / floor` can fall below 1.

With `--xla on` (or `both`), each step function (and the floor) is compiled
with `tf.function(jit_compile=True)`, for every contender alike: Keras 3 does
not compile by itself on a CPU-only machine, so the fair comparisons are
"both without XLA" and "both with XLA". Speed-ups are always relative to
Keras's layer under the same setting.

The contenders (and the floor, under every compile setting asked for) are
timed round-robin (the order rotates every repeat) in one process, so a
change of machine load hits all of them alike; the table shows medians of
wall-clock time, the process CPU time per call (all threads, less sensitive
to other processes on a shared machine), the speed-up over Keras's built-in
layer (`keras median / contender median`, same compile setting), the
paired speed-up (`paired x`: the median over repeats of Keras's time over
the contender's in the same repeat, which cancels load changes slower than
one repeat) and the time as a multiple of the floor (`contender median /
floor median`).

With `--memory`, the peak memory of training steps is measured for the
fused layer (compiled loops and graph loops) and Keras's layer as the
sequence length doubles: each point runs in a fresh Python process that
traces the step and records its resident set size, then reports the peak
resident set size (`VmHWM`) over that size for the first step, which
compiles the loops where they are compiled (XLA's compiler takes memory
once), and, with the peak reset, for four later steps (see `memory_point`).

With `--mode fit`, the layers are timed where users run them instead:
`model.fit` and `model.predict` of a small Keras model per batch, on arrays,
a `tf.data` pipeline and padded variable-length batches, against the same
model with Keras's layer (see `recipes._bench_fit`).

Usage:

    python -m recipes.bench                       # default grid, 15 repeats
    python -m recipes.bench --grid small --repeats 5
    python -m recipes.bench --grid full --json bench.json --memory
    python -m recipes.bench --xla both            # without and with XLA
    python -m recipes.bench --size 64,100,64,256 --threads 1   # one size, one thread
    python -m recipes.bench --quick               # a few seconds, for smoke tests
    python -m recipes.bench --size 64,100,64,256 --cells LayerNormLSTM,PeepholeLSTM   # variants against our cell
    python -m recipes.bench --mode fit            # model.fit / predict, 64,100,64,256, 7 rounds
    python -m recipes.bench --mode fit --cells GRU --paths padded --outputs last --rounds 9
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from recipes import _bench_fit, _cli
from zoo.errors import UserError

CELL_KINDS = ("SimpleRNN", "LSTM", "GRU")
VARIANT_KINDS = ("LayerNormSimpleRNN", "LayerNormLSTM", "LayerNormGRU", "PeepholeLSTM", "ProjectionLSTM")
CONTENDERS = ("fused", "fused-graph", "cell", "keras")
# The variants have no Keras layer (and no floor): `cell` is their reference.
VARIANT_CONTENDERS = ("fused", "fused-graph", "cell")
# With `--whole-batch`: our layer with its compiled loops on the whole batch
# at once (`layers.fused.whole_batches`), to show what splitting it gives.
WHOLE_BATCH = "fused-whole"
FLOOR = "floor"
# The floor is timed with the states as rows and as columns, each with the
# whole batch at once and with its two halves at the same time (see
# `floor_functions`); the fastest is the floor.
FLOOR_LAYOUTS = ("rows", "columns", "rows-halves", "columns-halves")
XLA_SETTINGS = {"off": (False,), "on": (True,), "both": (False, True)}
MODES = ("layer", "fit")
# Gate blocks per cell: the recurrent kernel is [units, GATES * units].
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
GRIDS = {
    # (batch, steps, inputs, units)
    "small": [(8, 50, 32, 32), (64, 100, 64, 256)],
    "default": [(8, 100, 32, 32), (64, 100, 64, 256), (16, 50, 64, 1024)],
    "full": [
        (8, 100, 32, 32),
        (16, 100, 64, 256),
        (64, 100, 64, 128),
        (64, 100, 64, 256),
        (64, 200, 64, 256),
        (128, 100, 128, 512),
        (16, 50, 64, 1024),
        (64, 100, 64, 1024),
    ],
}
QUICK_SIZES = [(4, 6, 3, 5)]
MEMORY_LENGTHS = (50, 100, 200, 400)
MEMORY_SIZE = (64, 64, 256)  # batch, inputs, units; the length varies
MEMORY_CONTENDERS = ("fused", "fused-graph", "keras")


def _layer_classes(kind):
    """(our layer, Keras's layer or `None`, our cell) of a cell kind."""
    import keras

    import layers

    builtin = {"SimpleRNN": keras.layers.SimpleRNN, "LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU}.get(kind)
    ours = getattr(layers, kind)
    return ours, builtin, ours.cell_class


def cell_options(kind, units):
    """The cell arguments a kind is benchmarked with besides `units`."""
    return {"proj_units": max(1, units // 2)} if kind == "ProjectionLSTM" else {}


def output_width(kind, units):
    return cell_options(kind, units).get("proj_units", units)


def build_contender(name, kind, units):
    """One contender's layer (unbuilt), `return_sequences=True`."""
    import keras

    ours, builtin, cell = _layer_classes(kind)
    options = cell_options(kind, units)
    if name in ("fused", WHOLE_BATCH):  # (WHOLE_BATCH differs in how its steps are traced)
        return ours(units, return_sequences=True, **options)
    if name == "fused-graph":
        return ours(units, return_sequences=True, jit_compile=False, **options)
    if name == "cell":
        return keras.layers.RNN(cell(units, **options), return_sequences=True)
    if name == "keras" and builtin is not None:
        return builtin(units, return_sequences=True)
    raise ValueError(f"Received an invalid contender {name!r} for {kind}, expected one of {contenders_of(kind)}.")


def contenders_of(kind, whole_batch=False):
    """The contenders timed for a kind (with `--whole-batch`, also `fused-whole`)."""
    names = CONTENDERS if kind in CELL_KINDS else VARIANT_CONTENDERS
    return names + ((WHOLE_BATCH,) if whole_batch else ())


def step_functions(layer, inputs, targets, jit_compile=False):
    """(train_step, forward) `tf.function`s of `layer`, both traced once."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(learning_rate=1e-3)
    optimizer.build(layer.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def train_step(inputs, targets):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(inputs, training=True) - targets))
        gradients = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(gradients, layer.trainable_variables)
        return loss

    @tf.function(jit_compile=jit_compile)
    def forward(inputs):
        return tf.reduce_sum(layer(inputs, training=False))

    train = lambda: train_step(inputs, targets).numpy()  # noqa: E731
    infer = lambda: forward(inputs).numpy()  # noqa: E731
    for _ in range(2):  # trace, then one run to settle allocations
        train()
        infer()
    return train, infer


def floor_functions(kind, size, seed, jit_compile=False, layout="rows"):
    """(train_floor, forward_floor, details): the unavoidable matrix products, traced once.

    See the module docstring. Every product has the shapes of the real
    step. The loops carry their result into the next step, so the products
    run one after another as in any recurrence, and control dependencies
    order the stages (projection, forward loop, backward loop, weight
    gradients) as the data dependencies of a real step would. The per-step
    results are reduced back to `units` by a slice (forward) or widened to
    `G * units` by a tile (backward), the cheapest ops that keep the shapes;
    with G = 1 there is neither.

    `layout` "rows" keeps the states as `[batch, units]` rows (`h @ U`);
    "columns" keeps them transposed, `[units, batch]` (`U^T @ h^T`), the
    same products with the other operand order, which TensorFlow's kernels
    run at a different speed. With "-halves" (`rows-halves`,
    `columns-halves`), the products of the two halves of the batch run as
    two independent calls in one traced function, which the graph executor
    runs at the same time, as the fused layer's compiled loops do. The
    weight-gradient products are timed as one product and as one per gate
    block, and the faster is kept (`details["weight_gradients"]`).
    """
    import numpy as np
    import tensorflow as tf

    if layout not in FLOOR_LAYOUTS:
        raise ValueError(f"Received an invalid layout {layout!r}, expected one of {FLOOR_LAYOUTS}.")
    layout, _, halves = layout.partition("-")
    batch, steps, features, units = size
    gates = GATES[kind]
    width = gates * units
    rng = np.random.default_rng(seed)

    def uniform(*shape, limit=0.1):
        return tf.constant(rng.uniform(-limit, limit, size=shape).astype("float32"))

    # The values do not change the time, as long as the carried states stay
    # normal floats: a variance of 1 / (summed terms) keeps their size about
    # constant over the steps, where a decay would reach subnormal numbers,
    # which the CPU handles far more slowly. So the two loops' operands,
    # `[units, G * units]` and `[G * units, units]`, are drawn apart (the
    # second is not the transpose of the first), each scaled for the loop
    # that sums over its rows (rows layout) or columns (columns layout).
    forward_limit, backward_limit = (3.0 / units) ** 0.5, (3.0 / width) ** 0.5
    kernel = uniform(features, width)
    if layout == "rows":
        recurrent_kernel = uniform(units, width, limit=forward_limit)
        recurrent_kernel_t = uniform(width, units, limit=backward_limit)
    else:
        recurrent_kernel = uniform(units, width, limit=backward_limit)
        recurrent_kernel_t = uniform(width, units, limit=forward_limit)

    def part_arguments(rows):
        # Time-major inputs, the initial state and stand-ins for the states
        # and gate gradients of all steps (the weight-gradient products read
        # them as a real step would); passed as arguments so nothing is
        # constant-folded, and drawn apart for each half, so no two calls
        # have the same arguments.
        initial = uniform(rows, units) if layout == "rows" else uniform(units, rows)
        return {
            "inputs": uniform(steps * rows, features),
            "initial": initial,
            "states": uniform(steps * rows, units),
            "gate_gradients": uniform(steps * rows, width),
        }

    parts = [part_arguments(batch)] if not halves else [part_arguments(batch // 2), part_arguments(batch - batch // 2)]

    if layout == "rows":

        def forward_product(h):
            z = tf.matmul(h, recurrent_kernel)
            return z if gates == 1 else z[:, :units]

        def backward_product(dh):
            dz = dh if gates == 1 else tf.tile(dh, [1, gates])
            return tf.matmul(dz, recurrent_kernel_t)
    else:

        def forward_product(h):
            z = tf.matmul(recurrent_kernel_t, h)
            return z if gates == 1 else z[:units]

        def backward_product(dh):
            dz = dh if gates == 1 else tf.tile(dh, [gates, 1])
            return tf.matmul(recurrent_kernel, dz)

    def recurrence(product, start):
        def body(t, h):
            return t + 1, product(h)

        return tf.while_loop(lambda t, h: t < steps, body, (tf.constant(0), start))[1]

    def forward_products(inputs, initial):
        projected = tf.matmul(inputs, kernel)
        with tf.control_dependencies([projected]):
            start = tf.identity(initial)
        return projected, recurrence(forward_product, start)

    @tf.function(jit_compile=jit_compile)
    def forward_floor(inputs, initial):
        projected, h = forward_products(inputs, initial)
        return h[0, 0], projected[0, 0]

    def weight_gradients(inputs, states, gate_gradients, blocked):
        if not blocked:
            return (
                tf.matmul(states, gate_gradients, transpose_a=True),
                tf.matmul(inputs, gate_gradients, transpose_a=True),
            )
        # One product per gate block, as if each block's gradients were kept
        # apart (no split counted).
        blocks = tf.split(gate_gradients, gates, axis=-1)
        return (
            tf.concat([tf.matmul(states, block, transpose_a=True) for block in blocks], axis=-1),
            tf.concat([tf.matmul(inputs, block, transpose_a=True) for block in blocks], axis=-1),
        )

    def make_train_floor(blocked):
        @tf.function(jit_compile=jit_compile)
        def train_floor(inputs, initial, states, gate_gradients):
            projected, h = forward_products(inputs, initial)
            dh = recurrence(backward_product, h)
            with tf.control_dependencies([dh]):
                d_recurrent_kernel, d_kernel = weight_gradients(inputs, states, gate_gradients, blocked)
            return dh[0, 0], projected[0, 0], d_recurrent_kernel[0, 0], d_kernel[0, 0]

        return train_floor

    def over_parts(function, names):
        """A callable that runs `function` on every part (at once, in one traced function) and fetches."""
        arguments = [[part[name] for name in names] for part in parts]

        @tf.function
        def all_parts():
            results = [function(*part) for part in arguments]
            # The first part's values, each with the other parts' summed in.
            return [tf.add_n(list(values)) for values in zip(*results)]

        return lambda: [value.numpy() for value in all_parts()]

    train_names = ("inputs", "initial", "states", "gate_gradients")
    candidates = {"whole": over_parts(make_train_floor(False), train_names)}
    if gates > 1:
        candidates["blocks"] = over_parts(make_train_floor(True), train_names)
    # The weight-gradient products as one product or one per gate block,
    # whichever is faster here (TensorFlow's CPU kernels favour one or the
    # other depending on the widths): the floor takes the faster.
    fastest, best = None, float("inf")
    for name, candidate in candidates.items():
        candidate()  # trace
        seconds = _fastest_of(candidate, 3)
        if seconds < best:
            fastest, best = name, seconds
    train = candidates[fastest]
    infer = over_parts(forward_floor, ("inputs", "initial"))
    for _ in range(2):
        train()
        infer()
    return train, infer, {"weight_gradients": fastest}


def _fastest_of(function, calls):
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def time_round_robin(functions, repeats):
    """Wall and process-CPU seconds per call, {name: (walls, cpus)}, interleaved."""
    names = list(functions)
    samples = {name: ([], []) for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            functions[name]()
            samples[name][0].append(time.perf_counter() - wall_start)
            samples[name][1].append(time.process_time() - cpu_start)
    return samples


def _batch_setting(name):
    """The context a contender's steps are traced in: whole batches for `WHOLE_BATCH`."""
    import contextlib

    from layers import fused

    return fused.whole_batches() if name == WHOLE_BATCH else contextlib.nullcontext()


def paired_speedup(reference_walls, walls):
    """The median over repeats of the reference's time over the contender's in the same repeat."""
    return statistics.median(reference / wall for reference, wall in zip(reference_walls, walls, strict=True))


def contender_label(name, jit_compile):
    return f"{name}+xla" if jit_compile else name


def benchmark_case(kind, size, repeats, seed, xla_settings=(False,), contenders=CONTENDERS):
    """Time every contender and the floor on one (cell kind, size); a dict of results.

    `result[mode][label]` for every contender label (`fused`, `keras+xla`,
    ...) and the floor; ratios are against Keras's layer and the floor
    under the same compile setting. A variant kind has no Keras layer and
    no floor: its ratios are against `cell` (`result["reference"]`), and
    its `floor_multiple`s are `None`.
    """
    import numpy as np

    batch, steps, features, units = size
    reference = "keras" if "keras" in contenders else "cell"
    with_floor = kind in GATES
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(batch, steps, features)).astype("float32")
    targets = rng.normal(size=(batch, steps, output_width(kind, units))).astype("float32")
    weights = None
    functions = {}
    floor_details = {}
    for jit_compile in xla_settings:
        for name in contenders:
            layer = build_contender(name, kind, units)
            layer.build((batch, steps, features))
            if weights is None:
                weights = [rng.uniform(-0.1, 0.1, size=w.shape).astype("float32") for w in layer.get_weights()]
            layer.set_weights(weights)
            # (`step_functions` traces the steps, which is when the split is chosen.)
            with _batch_setting(name):
                functions[contender_label(name, jit_compile)] = step_functions(layer, inputs, targets, jit_compile)
            if name.startswith("fused") and layer.last_path != "fused":
                raise RuntimeError(f"the fused contender ran the cell path: {layer.fallback_reason}")
        for layout in FLOOR_LAYOUTS if with_floor else ():
            label = contender_label(f"{FLOOR}-{layout}", jit_compile)
            train, infer, floor_details[label] = floor_functions(kind, size, seed, jit_compile, layout)
            functions[label] = (train, infer)
    result = {
        "cell": kind,
        "batch": batch,
        "steps": steps,
        "inputs": features,
        "units": units,
        "xla": list(xla_settings),
        "reference": reference,
    }
    for mode, index in (("train", 0), ("forward", 1)):
        samples = time_round_robin({label: fns[index] for label, fns in functions.items()}, repeats)
        result[mode] = {}
        for jit_compile in xla_settings:
            if with_floor:
                # The floor is the fastest layout (by median wall time).
                layout = min(
                    FLOOR_LAYOUTS,
                    key=lambda name: statistics.median(samples[contender_label(f"{FLOOR}-{name}", jit_compile)][0]),
                )
                floor_samples = samples[contender_label(f"{FLOOR}-{layout}", jit_compile)]
                samples[contender_label(FLOOR, jit_compile)] = floor_samples
            keras_walls, keras_cpus = samples[contender_label(reference, jit_compile)]
            floor_walls, floor_cpus = samples[contender_label(FLOOR, jit_compile)] if with_floor else (None, None)
            for name in contenders + ((FLOOR,) if with_floor else ()):
                walls, cpus = samples[contender_label(name, jit_compile)]
                result[mode][contender_label(name, jit_compile)] = {
                    "xla": jit_compile,
                    **(
                        {"layout": layout, **floor_details[contender_label(f"{FLOOR}-{layout}", jit_compile)]}
                        if name == FLOOR
                        else {}
                    ),
                    "median_ms": 1e3 * statistics.median(walls),
                    "min_ms": 1e3 * min(walls),
                    "cpu_median_ms": 1e3 * statistics.median(cpus),
                    "speedup": statistics.median(keras_walls) / statistics.median(walls),
                    "paired_speedup": paired_speedup(keras_walls, walls),
                    "cpu_speedup": statistics.median(keras_cpus) / statistics.median(cpus),
                    "floor_multiple": _ratio_of_medians(walls, floor_walls),
                    "cpu_floor_multiple": _ratio_of_medians(cpus, floor_cpus),
                }
    return result


def _ratio_of_medians(samples, reference):
    """`median(samples) / median(reference)`, `None` without a reference."""
    return None if reference is None else statistics.median(samples) / statistics.median(reference)


# ----------------------------------------------------------------- memory
_MEMORY_PROBE = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
from recipes.bench import build_contender

def rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])

name, kind, batch, steps, features, units, seed = sys.argv[1:]
batch, steps, features, units, seed = map(int, (batch, steps, features, units, seed))
rng = np.random.default_rng(seed)
inputs = tf.constant(rng.normal(size=(batch, steps, features)).astype("float32"))
targets = tf.constant(rng.normal(size=(batch, steps, units)).astype("float32"))
layer = build_contender(name, kind, units)
layer.build((batch, steps, features))
variables = layer.trainable_variables

@tf.function
def train_step(inputs, targets):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(layer(inputs, training=True) - targets))
    gradients = tape.gradient(loss, variables)
    for variable, gradient in zip(variables, gradients):
        variable.assign_sub(1e-3 * gradient)
    return loss

train_step.get_concrete_function(inputs, targets)
before = rss_kib("VmRSS")
train_step(inputs, targets).numpy()  # compiles the loops, where they are compiled
first = (rss_kib("VmHWM") - before) / 1024.0
steady = None
try:
    # Linux: writing 5 resets the peak (VmHWM) to the current RSS.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
except OSError:
    pass
else:
    for _ in range(4):
        train_step(inputs, targets).numpy()
    steady = (rss_kib("VmHWM") - before) / 1024.0
print(json.dumps({"first_step_mib": first, "later_steps_mib": steady}))
"""


def memory_point(name, kind, steps, seed):
    """Peak RSS growth (MiB) of training steps, measured in a fresh process.

    Returns `{"first_step_mib": ..., "later_steps_mib": ...}`: the peak
    RSS of the first step, and of the next four, over the RSS before the
    first step (model built, step traced). The first step includes the
    compilation of compiled loops (XLA's compiler itself takes about 100
    MiB the first time); the later steps' peak does not, but does include
    what the first step left allocated (compiled code, and memory the
    allocator keeps; later steps can peak higher than the first). It is
    `None` where the peak cannot be reset (`/proc/self/clear_refs`, Linux).
    """
    batch, features, units = MEMORY_SIZE
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, name, kind, str(batch), str(steps), str(features), str(units), str(seed)],
        capture_output=True,
        text=True,
        cwd=repository,
        env={**os.environ, "PYTHONPATH": repository + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe for {name} {kind} failed: {completed.stderr[-1000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def benchmark_memory(kinds, seed):
    results = []
    for kind in kinds:
        for steps in MEMORY_LENGTHS:
            row = {"cell": kind, "steps": steps}
            for name in MEMORY_CONTENDERS:
                row[name] = memory_point(name, kind, steps, seed)
            results.append(row)
    return results


# ---------------------------------------------------------------- reporting
def machine_description():
    """CPU model, core count, load averages and library versions."""
    import keras
    import tensorflow as tf

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def timing_header(reference="keras"):
    """The header of `format_timing_rows`'s lines; `x keras` (or `x cell`) names the reference."""
    return (
        f"{'cell':18s} {'batch':>5s} {'steps':>5s} {'in':>4s} {'units':>5s}  {'mode':7s} "
        f"{'contender':25s} {'median ms':>10s} {'x ' + reference:>8s} {'paired x':>8s} {'cpu ms':>9s} "
        f"{'cpu x':>6s} {'/ floor':>8s}"
    )


TIMING_HEADER = timing_header()


def format_timing_rows(results):
    """One line per (case, mode, contender), matching `TIMING_HEADER`.

    For the floor, `x keras` is Keras's time over the floor's (see the
    module docstring); its label names the fastest layout (`floor(rows)`,
    `floor(columns-halves)`, ...).
    """
    lines = []
    for result in results:
        for mode in ("train", "forward"):
            for label, entry in result[mode].items():
                if "layout" in entry:
                    label = label.replace(FLOOR, f"{FLOOR}({entry['layout']})")
                floor_multiple = entry["floor_multiple"]
                lines.append(
                    f"{result['cell']:18s} {result['batch']:5d} {result['steps']:5d} {result['inputs']:4d} "
                    f"{result['units']:5d}  {mode:7s} {label:25s} {entry['median_ms']:10.1f} "
                    f"{entry['speedup']:8.2f} {entry['paired_speedup']:8.2f} {entry['cpu_median_ms']:9.1f} "
                    f"{entry['cpu_speedup']:6.2f} "
                    + (f"{floor_multiple:8.2f}" if floor_multiple is not None else f"{'-':>8s}")
                )
    return "\n".join(lines)


def format_memory_table(rows):
    batch, features, units = MEMORY_SIZE
    lines = [
        f"peak RSS growth of training steps (MiB), batch {batch}, inputs {features}, units {units}: "
        "later steps (the first step, which compiles, in parentheses)",
        f"{'cell':9s} {'steps':>5s} {'fused':>17s} {'fused-graph':>17s} {'keras':>17s} {'fused/keras':>11s} "
        f"{'graph/keras':>11s}",
    ]

    def later(point):
        return point["later_steps_mib"]

    def ratio(a, b):
        return a / b if a is not None and b else float("nan")

    def cell(point):
        value = "n/a" if later(point) is None else f"{later(point):.1f}"
        return f"{value} ({point['first_step_mib']:.1f})"

    for row in rows:
        fused, graph, keras = row["fused"], row["fused-graph"], row["keras"]
        lines.append(
            f"{row['cell']:9s} {row['steps']:5d} {cell(fused):>17s} {cell(graph):>17s} {cell(keras):>17s} "
            f"{ratio(later(fused), later(keras)):11.2f} {ratio(later(graph), later(keras)):11.2f}"
        )
    return "\n".join(lines)


def _parse_size(text):
    try:
        size = tuple(int(part) for part in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise UserError(
            f"Received an invalid value for argument `--size`: {text!r}; expected four positive "
            "integers batch,steps,inputs,units such as 64,100,64,256."
        )
    return size


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.bench",
        description="Time our fused SimpleRNN/LSTM/GRU, our cells in keras.layers.RNN and "
        "Keras's built-in layers (training step and forward pass).",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="layer",
        help="layer (default): the layer alone, a training step and a forward pass in their own "
        "tf.function; fit: model.fit and model.predict of Sequential([Input, layer, (pooling), Dense]) "
        "per batch, on arrays, a tf.data pipeline and padded variable-length batches.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights, inputs and targets (default 0).")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="Layer mode: timed calls per contender and measurement (default 15).",
    )
    parser.add_argument(
        "--grid",
        choices=sorted(GRIDS),
        default=None,
        help="Layer mode: sizes to run, small, default or full (default: default).",
    )
    parser.add_argument(
        "--size",
        dest="sizes",
        action="append",
        default=None,
        metavar="B,T,I,U",
        help="Time this size (batch,steps,inputs,units) instead of the grid; repeatable. "
        f"Fit mode: default {','.join(map(str, _bench_fit.DEFAULT_SIZE))}.",
    )
    parser.add_argument(
        "--cells",
        default=",".join(CELL_KINDS),
        help=f"Comma-separated subset of {','.join(CELL_KINDS)} (default: those three) and of the "
        f"variant layers {','.join(VARIANT_KINDS)}, timed against our cell in keras.layers.RNN.",
    )
    parser.add_argument("--json", dest="json_path", default=None, help="Also write the results to this JSON file.")
    parser.add_argument(
        "--memory",
        action="store_true",
        help=f"Also measure peak memory of a training step at lengths {MEMORY_LENGTHS} (one fresh process per point).",
    )
    parser.add_argument(
        "--xla",
        choices=sorted(XLA_SETTINGS),
        default="off",
        help="Compile every step function (and the floor) with XLA: off, on, or both "
        "settings side by side (default: off).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="TensorFlow intra- and inter-op threads; 0 keeps TensorFlow's default "
        "(all cores). 1 measures the work itself, little disturbed by other processes "
        "on a shared machine.",
    )
    parser.add_argument(
        "--whole-batch",
        action="store_true",
        help=f"Also time our layer with its compiled loops on the whole batch at once "
        f"(`{WHOLE_BATCH}`), beside the default, which runs the batch's halves on two "
        "cores where that measured faster.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny sizes and 3 repeats: checks that everything runs, not speed."
    )
    parser.add_argument(
        "--paths",
        default=None,
        help=f"Fit mode: comma-separated subset of {','.join(_bench_fit.PATHS)} (default: all): NumPy arrays, "
        "a tf.data pipeline with prefetch, padded batches of random lengths with a Masking layer.",
    )
    parser.add_argument(
        "--outputs",
        default=None,
        help="Fit mode: comma-separated subset of sequences,last (default: both): return_sequences=True "
        "(then pooled) or False.",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"Fit mode: timed rounds, each one fit and one predict per contender, alternated "
        f"(default {_bench_fit.DEFAULT_ROUNDS}; one more, not counted, traces and compiles).",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help=f"Fit mode: batches per fit and per predict (default {_bench_fit.DEFAULT_BATCHES}).",
    )
    args = parser.parse_args(argv)
    if args.mode == "fit":
        return _fit_arguments(args)
    for flag, value in (("--paths", args.paths), ("--outputs", args.outputs), ("--rounds", args.rounds)):
        if value is not None:
            raise UserError(f"Received `{flag}` with --mode layer; it applies to --mode fit only.")
    if args.batches is not None:
        raise UserError("Received `--batches` with --mode layer; it applies to --mode fit only.")
    args.repeats = 15 if args.repeats is None else args.repeats
    args.grid = args.grid or "default"
    if args.threads < 0:
        raise UserError(f"Received an invalid value for argument `--threads`: {args.threads}; expected >= 0.")
    if args.repeats < 1:
        raise UserError(f"Received an invalid value for argument `--repeats`: {args.repeats}; expected >= 1.")
    args.cells = _cli.comma_separated("--cells", args.cells, CELL_KINDS + VARIANT_KINDS)
    if args.memory and not set(args.cells) <= set(CELL_KINDS):
        raise UserError(
            f"Received `--memory` with --cells {','.join(args.cells)}; the memory measurement covers "
            f"{','.join(CELL_KINDS)} only (it compares with Keras's layer)."
        )
    if args.sizes is not None:
        args.sizes = [_parse_size(text) for text in args.sizes]
    if args.quick:
        args.repeats = min(args.repeats, 3)
    return args


def _positive(flag, value):
    if value < 1:
        raise UserError(f"Received an invalid value for argument `{flag}`: {value}; expected >= 1.")
    return value


def _fit_arguments(args):
    """Check and complete the arguments of `--mode fit`."""
    for flag, given in (
        ("--repeats", args.repeats is not None),
        ("--grid", args.grid is not None),
        ("--memory", args.memory),
        ("--xla", args.xla != "off"),
        ("--quick", args.quick),
    ):
        if given:
            raise UserError(
                f"Received `{flag}` with --mode fit; it applies to --mode layer only "
                "(fit mode takes --size, --rounds and --batches)."
            )
    if args.threads < 0:
        raise UserError(f"Received an invalid value for argument `--threads`: {args.threads}; expected >= 0.")
    args.cells = _cli.comma_separated("--cells", args.cells, _bench_fit.CELL_KINDS)
    args.paths = _cli.comma_separated("--paths", args.paths or ",".join(_bench_fit.PATHS), _bench_fit.PATHS)
    args.outputs = _cli.comma_separated("--outputs", args.outputs or ",".join(_bench_fit.OUTPUTS), _bench_fit.OUTPUTS)
    args.rounds = _positive("--rounds", _bench_fit.DEFAULT_ROUNDS if args.rounds is None else args.rounds)
    args.batches = _positive("--batches", _bench_fit.DEFAULT_BATCHES if args.batches is None else args.batches)
    args.sizes = [_parse_size(text) for text in args.sizes] if args.sizes else [_bench_fit.DEFAULT_SIZE]
    return args


def _run_fit_mode(args, started):
    """`--mode fit`: print the table (and write the JSON report); the exit status."""
    print(
        f"machine: {started['cpu']}, {started['cores']} cores, load average "
        f"{' '.join(f'{v:.2f}' for v in started['load_average'])}; TensorFlow {started['tensorflow']}, "
        f"Keras {started['keras']}; mode fit, {args.rounds} rounds of {args.batches} batches, seed {args.seed}, "
        f"threads {args.threads or 'default'}",
        flush=True,
    )
    results = _bench_fit.run(
        args.sizes,
        args.cells,
        args.paths,
        args.outputs,
        args.rounds,
        args.batches,
        args.seed,
        args.whole_batch,
        lambda text: print(text, flush=True),
    )
    arguments = {
        "mode": "fit",
        "seed": args.seed,
        "sizes": [list(size) for size in args.sizes],
        "cells": list(args.cells),
        "paths": list(args.paths),
        "outputs": list(args.outputs),
        "rounds": args.rounds,
        "batches": args.batches,
        "threads": args.threads,
        "whole_batch": args.whole_batch,
    }
    return _finish(args.json_path, started, arguments, {"fit": results})


def _finish(json_path, started, arguments, results):
    """Print the load average at the end and write the JSON report (if `json_path`); the exit status, 0."""
    finished = machine_description()["load_average"]
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in finished)}")
    if json_path:
        report = {"machine": started, "load_average_end": finished, "arguments": arguments, **results}
        with open(json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


def main(argv=None):
    """Run the benchmark named by the command line; return the exit status."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if args.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        except RuntimeError as error:  # TensorFlow already started in this process
            raise UserError(f"Cannot apply `--threads {args.threads}`: {error}") from None
    keras.utils.set_random_seed(args.seed)
    if args.mode == "fit":
        return _run_fit_mode(args, machine_description())
    sizes = QUICK_SIZES if args.quick else args.sizes or GRIDS[args.grid]
    started = machine_description()
    print(
        f"machine: {started['cpu']}, {started['cores']} cores, load average "
        f"{' '.join(f'{v:.2f}' for v in started['load_average'])}; TensorFlow {started['tensorflow']}, "
        f"Keras {started['keras']}; {args.repeats} repeats, seed {args.seed}, XLA {args.xla}, "
        f"threads {args.threads or 'default'}",
        flush=True,
    )
    results = []
    header = None
    for size in sizes:
        for kind in args.cells:
            contenders = contenders_of(kind, args.whole_batch)
            results.append(benchmark_case(kind, size, args.repeats, args.seed, XLA_SETTINGS[args.xla], contenders))
            if timing_header(results[-1]["reference"]) != header:
                header = timing_header(results[-1]["reference"])
                print(header, flush=True)
            print(format_timing_rows(results[-1:]), flush=True)
    memory = benchmark_memory(args.cells, args.seed) if args.memory and not args.quick else []
    if memory:
        print(format_memory_table(memory))
    arguments = {
        "mode": "layer",
        "seed": args.seed,
        "repeats": args.repeats,
        "grid": "quick" if args.quick else "sizes" if args.sizes else args.grid,
        "cells": list(args.cells),
        "xla": args.xla,
        "threads": args.threads,
        "whole_batch": args.whole_batch,
    }
    memory_report = {"size": dict(zip(("batch", "inputs", "units"), MEMORY_SIZE)), "rows": memory}
    return _finish(args.json_path, started, arguments, {"timing": results, "memory": memory_report})


if __name__ == "__main__":
    _cli.run(main)
