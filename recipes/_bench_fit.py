"""`python -m recipes.bench --mode fit`: the sequence layers where users run them, `model.fit` and `model.predict`.

The layer-alone mode (`recipes.bench`'s default) explains where the time
goes; this mode measures what a user sees. For each cell kind, size, input
path and output, every contender is the same model,

    keras.Sequential([Input, (Masking), recurrent layer, (GlobalAveragePooling1D), Dense(1)])

compiled with `optimizer="adam", loss="mse"`, with the same initial
weights, where the recurrent layer is

- `fused`: our layer (`layers.LSTM`, ...) as it runs by default
  (`jit_compile="auto"`);
- `fused-graph`: our layer with `jit_compile=False` (graph loops, the path
  for shapes unknown when `fit` traces its step);
- `keras`: Keras's built-in layer (`keras.layers.LSTM`, ...), LSTM and
  GRU with `use_cudnn=False`;
- with `--whole-batch`, also `fused-whole`: our default layer with its
  compiled loops on the whole batch at once (`layers.fused.whole_batches`,
  around every call of this contender's `fit` and `predict`).

The pooling layer follows the recurrent one when it returns sequences
(`--outputs sequences`), and not when it returns the last output
(`--outputs last`). The input paths (`--paths`):

- `arrays`: NumPy arrays, `model.fit(x, y, batch_size=B)` and
  `model.predict(x, batch_size=B)`, a whole number of batches (so every
  batch has B rows and the traced step knows its shapes);
- `dataset`: a `tf.data` pipeline as a user writes one,
  `from_tensor_slices(...).shuffle(...).batch(B).prefetch(AUTOTUNE)`:
  `batch` without `drop_remainder` leaves the batch dimension unknown to
  the step `fit` traces;
- `padded`: sequences of random lengths between T/2 and T, zero-padded to
  the longest in each batch (`Input((None, features))`, a `Masking` layer
  before the recurrent one), the same pipeline: the time dimension is
  unknown to the traced step and differs from batch to batch.

Timing. A callback takes the wall time of every batch, from
`on_train_batch_begin` to `on_train_batch_end` (`fit`: the training step,
fetching its batch included) and from `on_predict_batch_begin` to
`on_predict_batch_end` (`predict`). Each round runs, for every contender in
turn (the order rotates each round), one `fit` of `--batches` batches, then
each contender's `predict` over the same inputs, all in one process. A
first round, not counted, traces and compiles everything. Reported per
(mode, contender): the median time per batch over all timed batches, the
ratio of Keras's median to the contender's (`x keras`), the paired ratio
(`paired x`: per round, Keras's median batch time over the contender's,
then the median over rounds, which cancels load changes slower than a
round) and its spread, the lowest and highest of those per-round ratios;
and the median process CPU time per batch (all threads, the input
pipeline's included) with Keras's over it (`cpu x`), which depends less on
other processes on a shared machine.
`loops` names the loops our layer ran in the last step traced
(`layer.last_loops`: "compiled halves", printed `compiled-halves`,
"compiled" or "graph").
"""

import dataclasses
import statistics
import time

CELL_KINDS = ("SimpleRNN", "LSTM", "GRU")
PATHS = ("arrays", "dataset", "padded")
OUTPUTS = ("sequences", "last")
CONTENDERS = ("fused", "fused-graph", "keras")
WHOLE_BATCH = "fused-whole"
MODES = ("fit", "predict")
DEFAULT_SIZE = (64, 100, 64, 256)  # batch, steps, inputs, units
DEFAULT_ROUNDS = 7
DEFAULT_BATCHES = 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One measured setting: a cell kind, a size, an input path and an output."""

    kind: str
    size: tuple  # (batch, steps, inputs, units)
    path: str
    outputs: str

    @property
    def return_sequences(self):
        return self.outputs == "sequences"


def build_layer(name, kind, units, return_sequences):
    """The recurrent layer of contender `name`."""
    import keras

    import layers

    if name in ("fused", WHOLE_BATCH):  # (WHOLE_BATCH differs in how its steps are traced)
        return getattr(layers, kind)(units, return_sequences=return_sequences)
    if name == "fused-graph":
        return getattr(layers, kind)(units, return_sequences=return_sequences, jit_compile=False)
    if name == "keras":
        # (Keras's SimpleRNN has no cuDNN path, and no `use_cudnn`.)
        options = {} if kind == "SimpleRNN" else {"use_cudnn": False}
        return getattr(keras.layers, kind)(units, return_sequences=return_sequences, **options)
    raise ValueError(f"Received an invalid contender {name!r}, expected one of {CONTENDERS + (WHOLE_BATCH,)}.")


def build_model(name, case):
    """`Sequential([Input, (Masking), layer, (pooling), Dense(1)])`, compiled with Adam and MSE."""
    import keras

    batch, steps, features, units = case.size
    padded = case.path == "padded"
    stack = [keras.Input((None if padded else steps, features))]
    if padded:
        stack.append(keras.layers.Masking(mask_value=0.0))
    stack.append(build_layer(name, case.kind, units, case.return_sequences))
    if case.return_sequences:
        stack.append(keras.layers.GlobalAveragePooling1D())
    stack.append(keras.layers.Dense(1))
    model = keras.Sequential(stack)
    model.compile(optimizer="adam", loss="mse")
    return model


@dataclasses.dataclass
class Inputs:
    """What `fit` and `predict` receive on one path: positional and keyword arguments each."""

    fit_args: tuple
    fit_kwargs: dict
    predict_args: tuple
    predict_kwargs: dict


def make_inputs(case, batches, seed):
    """The data of one case, `batches` batches of `case.size`'s shape (see the module docstring)."""
    import numpy as np
    import tensorflow as tf

    batch, steps, features, _ = case.size
    count = batch * batches
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, steps, features)).astype("float32")
    y = rng.normal(size=(count, 1)).astype("float32")
    if case.path == "arrays":
        return Inputs((x, y), {"batch_size": batch}, (x,), {"batch_size": batch})
    autotune = tf.data.AUTOTUNE
    if case.path == "dataset":
        train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(count, seed=seed).batch(batch).prefetch(autotune)
        infer = tf.data.Dataset.from_tensor_slices(x).batch(batch).prefetch(autotune)
        return Inputs((train,), {"shuffle": False}, (infer,), {})  # (the pipeline shuffles)
    # Padded: random lengths, zeros after each sequence's end, each batch
    # cut to its longest sequence.
    lengths = rng.integers(max(1, steps // 2), steps + 1, size=count).astype("int32")
    x[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0

    def trimmed(x, lengths, *rest):
        return (x[:, : tf.reduce_max(lengths)], *rest)

    train = (
        tf.data.Dataset.from_tensor_slices((x, lengths, y))
        .shuffle(count, seed=seed)
        .batch(batch)
        .map(trimmed)
        .prefetch(autotune)
    )
    infer = tf.data.Dataset.from_tensor_slices((x, lengths)).batch(batch).map(trimmed).prefetch(autotune)
    return Inputs((train,), {"shuffle": False}, (infer,), {})


def batch_timer():
    """A Keras callback that keeps the wall and process CPU time of every training and prediction batch.

    In `.seconds` and `.cpu_seconds`; the CPU time is that of all the
    process's threads (the input pipeline's too).
    """
    import keras

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self.cpu_seconds = []
            self._start = self._cpu_start = None

        def _begin(self, batch, logs=None):
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def _end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu_start)

        on_train_batch_begin = on_predict_batch_begin = _begin
        on_train_batch_end = on_predict_batch_end = _end

    return BatchTimer()


def _batch_setting(name):
    import contextlib

    from layers import fused

    return fused.whole_batches() if name == WHOLE_BATCH else contextlib.nullcontext()


def run_mode(model, name, mode, inputs):
    """One `fit` (one epoch) or `predict` over `inputs`; (wall seconds, CPU seconds) of each batch."""
    timer = batch_timer()
    with _batch_setting(name):
        if mode == "fit":
            model.fit(*inputs.fit_args, epochs=1, verbose=0, callbacks=[timer], **inputs.fit_kwargs)
        else:
            model.predict(*inputs.predict_args, verbose=0, callbacks=[timer], **inputs.predict_kwargs)
    return timer.seconds, timer.cpu_seconds


def paired_ratios(reference_rounds, rounds):
    """Per round, the reference's median batch time over the contender's."""
    return [
        statistics.median(reference) / statistics.median(own)
        for reference, own in zip(reference_rounds, rounds, strict=True)
    ]


def _every(rounds):
    return [second for one_round in rounds for second in one_round]


def summarise(samples, cpu_samples, loops, contenders):
    """Per mode and contender: medians, ratios to Keras and their spread (see the module docstring).

    `samples[mode][name]` is a list of rounds, each a list of batch wall
    seconds; `cpu_samples` the same of process CPU seconds.
    """
    summary = {}
    for mode in MODES:
        keras_rounds = samples[mode]["keras"]
        keras_median = statistics.median(_every(keras_rounds))
        keras_cpu_median = statistics.median(_every(cpu_samples[mode]["keras"]))
        summary[mode] = {}
        for name in contenders:
            rounds = samples[mode][name]
            every = _every(rounds)
            cpu_median = statistics.median(_every(cpu_samples[mode][name]))
            ratios = paired_ratios(keras_rounds, rounds)
            summary[mode][name] = {
                "loops": loops[mode].get(name),
                "median_ms": 1e3 * statistics.median(every),
                "speedup": keras_median / statistics.median(every),
                "cpu_median_ms": 1e3 * cpu_median,
                "cpu_speedup": keras_cpu_median / cpu_median if cpu_median > 0 else float("nan"),
                "paired_speedup": statistics.median(ratios),
                "paired_min": min(ratios),
                "paired_max": max(ratios),
                "round_ratios": ratios,
                "batches": len(every),
                "batch_ms": [[round(1e3 * second, 3) for second in r] for r in rounds],
            }
    return summary


def benchmark_case(case, rounds, batches, seed, contenders):
    """Time `fit` and `predict` of every contender on one case; a dict of results (see `summarise`)."""
    import keras

    inputs = make_inputs(case, batches, seed)
    keras.utils.set_random_seed(seed)
    models, weights = {}, None
    for name in contenders:
        models[name] = build_model(name, case)
        if weights is None:
            weights = models[name].get_weights()
        models[name].set_weights(weights)
    samples = {mode: {name: [] for name in contenders} for mode in MODES}
    cpu_samples = {mode: {name: [] for name in contenders} for mode in MODES}
    loops = {mode: {} for mode in MODES}
    names = list(contenders)
    for round_index in range(rounds + 1):  # round 0 traces and compiles: not counted
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for mode in MODES:
            for name in order:
                seconds, cpu_seconds = run_mode(models[name], name, mode, inputs)
                if round_index:
                    samples[mode][name].append(seconds)
                    cpu_samples[mode][name].append(cpu_seconds)
                else:
                    recurrent = models[name].layers[1 if case.path == "padded" else 0]
                    loops[mode][name] = getattr(recurrent, "last_loops", None)
                    if name != "keras" and recurrent.last_path != "fused":
                        raise RuntimeError(f"the {name} contender ran the cell path: {recurrent.fallback_reason}")
    batch, steps, features, units = case.size
    return {
        "cell": case.kind,
        "batch": batch,
        "steps": steps,
        "inputs": features,
        "units": units,
        "path": case.path,
        "outputs": case.outputs,
        **summarise(samples, cpu_samples, loops, contenders),
    }


HEADER = (
    f"{'cell':9s} {'batch':>5s} {'steps':>5s} {'in':>4s} {'units':>5s} {'path':8s} {'outputs':9s} {'mode':7s} "
    f"{'contender':12s} {'loops':15s} {'median ms':>9s} {'x keras':>7s} {'paired x':>8s} {'range':>11s} "
    f"{'cpu ms':>8s} {'cpu x':>6s}"
)


def format_rows(result):
    """One line per (mode, contender) of one case, matching `HEADER`."""
    lines = []
    for mode in MODES:
        for name, entry in result[mode].items():
            spread = f"{entry['paired_min']:.2f}-{entry['paired_max']:.2f}"
            lines.append(
                f"{result['cell']:9s} {result['batch']:5d} {result['steps']:5d} {result['inputs']:4d} "
                f"{result['units']:5d} {result['path']:8s} {result['outputs']:9s} {mode:7s} {name:12s} "
                f"{(entry['loops'] or '-').replace(' ', '-'):15s} {entry['median_ms']:9.1f} {entry['speedup']:7.2f} "
                f"{entry['paired_speedup']:8.2f} {spread:>11s} {entry['cpu_median_ms']:8.1f} "
                f"{entry['cpu_speedup']:6.2f}"
            )
    return "\n".join(lines)


def parse_rows(text):
    """The rows of `format_rows` output in `text` (for tests and scripts): a list of dicts."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 16 or fields[0] not in CELL_KINDS:
            continue
        low, high = fields[13].split("-")
        rows.append(
            {
                "cell": fields[0],
                "size": tuple(int(f) for f in fields[1:5]),
                "path": fields[5],
                "outputs": fields[6],
                "mode": fields[7],
                "contender": fields[8],
                "loops": fields[9],
                "median_ms": float(fields[10]),
                "speedup": float(fields[11]),
                "paired_speedup": float(fields[12]),
                "paired_min": float(low),
                "paired_max": float(high),
                "cpu_median_ms": float(fields[14]),
                "cpu_speedup": float(fields[15]),
            }
        )
    return rows


def run(sizes, kinds, paths, outputs, rounds, batches, seed, whole_batch, report):
    """Time every case; print each case's rows as it finishes (through `report`); return the results."""
    contenders = CONTENDERS + ((WHOLE_BATCH,) if whole_batch else ())
    results = []
    report(HEADER)
    for size in sizes:
        for kind in kinds:
            for path in paths:
                for output in outputs:
                    results.append(benchmark_case(Case(kind, size, path, output), rounds, batches, seed, contenders))
                    report(format_rows(results[-1]))
    return results
