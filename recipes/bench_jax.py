"""Benchmark the sequence layers' fused JAX path against Keras's built-in layers on JAX.

For SimpleRNN, LSTM and GRU at one or more sizes (batch, steps, inputs,
units), four contenders with the same weights, and the floor under them, all
on the JAX backend:

- `fused`: our layer (`layers.LSTM`, ...), which takes the fused JAX path
  (`layers.fused_jax`: a `jax.lax.scan` recurrence and a hand-written
  backward scan, with the weight gradients one product each after it);
- `fused-projected`: the same path with the inputs of all steps projected
  by one matrix product before the scans, instead of by each step inside
  them (`layers.fused_jax.inner_loop.PROJECT_EACH_STEP`), to show that
  choice;
- `cell`: the same layer with `fused=False`, our cell inside
  `keras.layers.RNN`;
- `keras`: Keras's built-in layer (`keras.layers.LSTM`, ...), which on a
  CPU runs Keras's own cell in `keras.layers.RNN` (a `jax.lax.scan`,
  differentiated by JAX);
- `products`: not a layer but the floor under all of them: only the matrix
  products a training step (or a forward pass) of that cell cannot avoid,
  with the same shapes and in the same loops, and nothing else (no gate
  arithmetic, records or masks): per step `x_t @ kernel + h @
  recurrent_kernel` forward and `dz_t @ recurrent_kernel^T` backward, then
  the kernel and recurrent kernel gradients as one product each (the
  training step differentiates the weights only, so no layer computes the
  inputs' gradient).
  No layer can be faster than it; `x keras` of this row is the most any
  layer could gain over Keras's.

Two measurements per contender, each a `jax.jit`-compiled function of the
layer's `stateless_call`, compiled and run twice before timing:

- `train`: one training step: forward pass (`training=True`,
  `return_sequences=True`), mean squared error against a fixed target,
  gradients (`jax.value_and_grad`) and an SGD update of the weights, which
  the next call receives;
- `forward`: one inference pass (`training=False`), summed.

The contenders are timed round-robin (the order rotates every repeat) in
one process, so a change of machine load hits all of them alike. The table
shows, per contender, the median wall time with the range over repeats,
the speed-up over Keras's layer (`keras median / contender median`) and the
paired speed-up (the median over repeats of Keras's time over the
contender's in the same repeat) with its range.

It is a separate program from `recipes.bench` (TensorFlow's) because the
Keras backend is fixed when Keras is first imported: this one sets
`KERAS_BACKEND=jax` itself and refuses to run in a process whose Keras
already runs another backend.

Usage:

    python -m recipes.bench_jax                        # (64, 100, 64, 256), 15 repeats
    python -m recipes.bench_jax --size 8,50,32,32 --repeats 9 --cells LSTM,GRU
    python -m recipes.bench_jax --quick                # a few seconds, for smoke tests
"""

import argparse
import contextlib
import os
import statistics
import sys

CELL_KINDS = ("SimpleRNN", "LSTM", "GRU")
CONTENDERS = ("fused", "fused-projected", "cell", "keras", "products")
DEFAULT_SIZE = (64, 100, 64, 256)
QUICK_SIZE = (4, 6, 3, 5)


def use_jax_backend():
    """Select the JAX backend before Keras is imported; a `RuntimeError` if Keras runs another."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "jax":
            raise RuntimeError(
                f"Keras already runs the {keras.backend.backend()!r} backend in this process; "
                "run `python -m recipes.bench_jax` in a fresh process."
            )
    os.environ["KERAS_BACKEND"] = "jax"


def build_contender(name, kind, units):
    """One contender's layer (unbuilt), `return_sequences=True`."""
    import keras

    import layers

    ours = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}[kind]
    if name in ("fused", "fused-projected"):  # (they differ in how their steps are traced)
        return ours(units, return_sequences=True)
    if name == "cell":
        return ours(units, return_sequences=True, fused=False)
    if name == "keras":
        builtin = {"SimpleRNN": keras.layers.SimpleRNN, "LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU}
        return builtin[kind](units, return_sequences=True)
    raise ValueError(f"Received an invalid contender {name!r}, expected one of {CONTENDERS}.")


def step_functions(layer, inputs, targets, learning_rate=1e-3):
    """(train, forward): callables running the layer's jitted training step and forward pass.

    Each is compiled and run twice here. `train` keeps the updated weights
    for its next call.
    """
    import jax
    import jax.numpy as jnp

    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss_of(trainable, inputs, targets):
        outputs, _ = layer.stateless_call(trainable, non_trainable, inputs, training=True)
        return jnp.mean(jnp.square(outputs - targets))

    @jax.jit
    def train_step(trainable, inputs, targets):
        loss, gradients = jax.value_and_grad(loss_of)(trainable, inputs, targets)
        return [w - learning_rate * g for w, g in zip(trainable, gradients)], loss

    @jax.jit
    def forward(trainable, inputs):
        outputs, _ = layer.stateless_call(trainable, non_trainable, inputs, training=False)
        return jnp.sum(outputs)

    state = {"trainable": [v.value for v in layer.trainable_variables]}

    def train():
        state["trainable"], loss = train_step(state["trainable"], inputs, targets)
        loss.block_until_ready()

    def infer():
        forward(state["trainable"], inputs).block_until_ready()

    for _ in range(2):  # compile, then one run to settle allocations
        train()
        infer()
    return train, infer


GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def product_functions(kind, inputs, units, seed):
    """(train, forward) of the `products` contender: a cell's unavoidable matrix products alone.

    The products have a training step's shapes: the forward loop's
    `x_t @ kernel + h @ recurrent_kernel` (the next `h` is a slice of the
    result, so the steps stay a chain), the backward loop's `dz_t @
    recurrent_kernel^T` (chained through an addition), and after it
    `x^T @ dz` and `h^T @ dz` over all steps. `dz` and `h`
    are fixed random arrays of the right shapes. Each is compiled and run
    twice here.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    batch, steps, features = inputs.shape
    width = GATES[kind] * units
    rng = np.random.default_rng(seed)

    def array(*shape):
        return jnp.asarray(rng.uniform(-0.1, 0.1, size=shape).astype("float32"))

    kernel, recurrent_kernel = array(features, width), array(units, width)
    dz, h = array(steps, batch, width), array(steps, batch, units)
    x = jnp.swapaxes(inputs, 0, 1)

    def forward_loop(kernel, recurrent_kernel, x):
        def step(h_t, x_t):
            return (x_t @ kernel + h_t @ recurrent_kernel)[:, :units], None

        return jax.lax.scan(step, jnp.zeros((batch, units), x.dtype), x)[0]

    @jax.jit
    def train_step(kernel, recurrent_kernel, x, dz, h):
        final = forward_loop(kernel, recurrent_kernel, x)
        transposed = recurrent_kernel.T

        def step(d_h, dz_t):
            return dz_t @ transposed + d_h, None

        d_initial = jax.lax.scan(step, final, dz, reverse=True)[0]
        flat_dz = dz.reshape(-1, width)
        d_kernel = x.reshape(-1, features).T @ flat_dz
        d_recurrent = h.reshape(-1, units).T @ flat_dz
        return d_kernel, d_recurrent, d_initial

    forward = jax.jit(forward_loop)

    def train():
        jax.block_until_ready(train_step(kernel, recurrent_kernel, x, dz, h))

    def infer():
        forward(kernel, recurrent_kernel, x).block_until_ready()

    for _ in range(2):
        train()
        infer()
    return train, infer


@contextlib.contextmanager
def _projection_setting(name):
    """While tracing `fused-projected`, the fused path projects all steps' inputs before the scans."""
    from layers.fused_jax import inner_loop

    previous = inner_loop.PROJECT_EACH_STEP
    inner_loop.PROJECT_EACH_STEP = name != "fused-projected" and previous
    try:
        yield
    finally:
        inner_loop.PROJECT_EACH_STEP = previous


def benchmark_case(kind, size, repeats, seed):
    """Time every contender on one (cell kind, size); a dict of results per mode and contender."""
    import jax.numpy as jnp
    import numpy as np

    from recipes.bench import paired_speedup, time_round_robin

    batch, steps, features, units = size
    rng = np.random.default_rng(seed)
    inputs = jnp.asarray(rng.normal(size=(batch, steps, features)).astype("float32"))
    targets = jnp.asarray(rng.normal(size=(batch, steps, units)).astype("float32"))
    weights = None
    functions = {}
    for name in CONTENDERS:
        if name == "products":
            functions[name] = product_functions(kind, inputs, units, seed)
            continue
        layer = build_contender(name, kind, units)
        layer.build((batch, steps, features))
        if weights is None:
            weights = [rng.uniform(-0.1, 0.1, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        with _projection_setting(name):
            functions[name] = step_functions(layer, inputs, targets)
        if name.startswith("fused") and layer.last_path != "fused":
            raise RuntimeError(f"the fused contender ran the cell path: {layer.fallback_reason}")
    result = {"cell": kind, "size": size}
    for mode, index in (("train", 0), ("forward", 1)):
        walls, _ = zip(*time_round_robin({name: fns[index] for name, fns in functions.items()}, repeats).values())
        samples = dict(zip(functions, walls))
        keras_walls = samples["keras"]
        result[mode] = {
            name: {
                "median_ms": 1e3 * statistics.median(walls),
                "min_ms": 1e3 * min(walls),
                "max_ms": 1e3 * max(walls),
                "speedup": statistics.median(keras_walls) / statistics.median(walls),
                "paired_speedup": paired_speedup(keras_walls, walls),
                "paired_min": min(k / w for k, w in zip(keras_walls, walls)),
                "paired_max": max(k / w for k, w in zip(keras_walls, walls)),
            }
            for name, walls in samples.items()
        }
    return result


HEADER = (
    f"{'cell':9s} {'batch, steps, in, units':>23s}  {'mode':7s} {'contender':15s} "
    f"{'median ms':>9s} {'(min-max)':>15s} {'x keras':>7s} {'paired x':>8s} {'(min-max)':>11s}"
)


def format_rows(results):
    """One line per (case, mode, contender), matching `HEADER`."""
    lines = []
    for result in results:
        size = ", ".join(str(n) for n in result["size"])
        for mode in ("train", "forward"):
            for name, entry in result[mode].items():
                lines.append(
                    f"{result['cell']:9s} {size:>23s}  {mode:7s} {name:15s} {entry['median_ms']:9.1f} "
                    f"{entry['min_ms']:7.1f}-{entry['max_ms']:<7.1f} {entry['speedup']:7.2f} "
                    f"{entry['paired_speedup']:8.2f} {entry['paired_min']:5.2f}-{entry['paired_max']:<5.2f}"
                )
    return "\n".join(lines)


def _size_argument(text):
    """`--size`, parsed as `recipes.bench` parses it."""
    from recipes.bench import _parse_size

    try:
        return _parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _parse_cells(text):
    kinds = tuple(part.strip() for part in text.split(","))
    unknown = [kind for kind in kinds if kind not in CELL_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {CELL_KINDS}, got {text!r}")
    return kinds


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.bench_jax",
        description="Time the fused JAX path of our sequence layers against Keras's layers on JAX.",
    )
    parser.add_argument(
        "--size",
        type=_size_argument,
        action="append",
        help="batch,steps,inputs,units; repeatable (default: 64,100,64,256)",
    )
    parser.add_argument(
        "--cells",
        type=_parse_cells,
        default=CELL_KINDS,
        help="comma-separated cell kinds (default: SimpleRNN,LSTM,GRU)",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per contender and mode (default: 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs, targets and weights")
    parser.add_argument("--quick", action="store_true", help="a tiny size and 3 repeats, for smoke tests")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error(f"argument --repeats: expected a positive integer, got {arguments.repeats}")
    if arguments.quick:
        arguments.size, arguments.repeats = [QUICK_SIZE], 3
    elif not arguments.size:
        arguments.size = [DEFAULT_SIZE]
    return arguments


def main(argv=None):
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    use_jax_backend()
    import jax
    import keras

    print(
        f"jax {jax.__version__}, keras {keras.__version__}, {os.cpu_count()} cores, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {arguments.repeats} repeats"
    )
    print(HEADER)
    results = []
    for size in arguments.size:
        for kind in arguments.cells:
            results.append(benchmark_case(kind, size, arguments.repeats, arguments.seed))
            print(format_rows(results[-1:]), flush=True)
    return results


if __name__ == "__main__":
    main()
