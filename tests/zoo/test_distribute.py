"""Training under tf.distribute strategies gives the same numbers as one device."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.support import REPO
from zoo import distribute

# Train the same seeded model with the default strategy and with
# MirroredStrategy over two logical CPU devices (the global batch is split in
# two); the per-epoch losses must agree.
MIRRORED_PROGRAM = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import layers
    from zoo import distribute, training

    def train(strategy_name, workdir):
        training.set_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6, 3)).astype("float32")
        y = x[:, :, 0].sum(axis=1, keepdims=True).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        strategy = distribute.get_strategy(strategy_name)
        with strategy.scope():
            model = keras.Sequential([keras.Input((6, 3)), layers.LSTM(8), keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        result = training.fit(model, data, workdir=workdir, epochs=3, verbose=0, tensorboard=False)
        return strategy.num_replicas_in_sync, result["history"]["loss"]

    replicas_one, one = train("default", sys.argv[1] + "/one")
    replicas_two, two = train("mirrored", sys.argv[1] + "/two")
    print(json.dumps({"one": one, "two": two, "replicas": [replicas_one, replicas_two]}))
    """
)


def _run(program, *args, env_extra=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-c", program, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _result(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    result = _result(_run(MIRRORED_PROGRAM, str(tmp_path)))
    assert result["replicas"] == [1, 2]
    assert len(result["one"]) == 3
    # Same seed, same global batches: only the order of floating-point sums differs.
    for single, mirrored in zip(result["one"], result["two"]):
        assert mirrored == pytest.approx(single, rel=1e-4)


def test_strategy_names_and_chief():
    with pytest.raises(ValueError, match="strategy"):
        distribute.get_strategy("tpu-pod")
    old = os.environ.pop("TF_CONFIG", None)
    try:
        with pytest.raises(ValueError, match="TF_CONFIG"):
            distribute.get_strategy("multi-worker")
        assert distribute.is_chief()
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
        )
        assert not distribute.is_chief()
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
        )
        assert distribute.is_chief()
        os.environ["TF_CONFIG"] = "{not json"
        with pytest.raises(ValueError, match="TF_CONFIG"):
            distribute.is_chief()
    finally:
        os.environ.pop("TF_CONFIG", None)
        if old is not None:
            os.environ["TF_CONFIG"] = old


# Two worker processes on 127.0.0.1 train one model with
# MultiWorkerMirroredStrategy; only the chief's checkpoint is kept.
MULTI_WORKER_PROGRAM = textwrap.dedent(
    """
    import json, os, sys
    import tensorflow as tf
    from zoo import distribute, training
    strategy = distribute.get_strategy("multi-worker")
    import keras, numpy as np
    import layers

    training.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5, 3)).astype("float32")
    y = x[:, :, 0].sum(axis=1, keepdims=True).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with strategy.scope():
        model = keras.Sequential([keras.Input((5, 3)), layers.GRU(4), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    result = training.fit(model, data, workdir=sys.argv[1], epochs=2, verbose=0, tensorboard=False)
    print(json.dumps({"loss": result["history"]["loss"], "chief": distribute.is_chief(),
                      "replicas": strategy.num_replicas_in_sync,
                      "weights": [float(np.sum(w)) for w in model.get_weights()]}))
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_localhost_write_one_consistent_checkpoint(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workdir = tmp_path / "run"
    processes = [
        _run(
            MULTI_WORKER_PROGRAM,
            str(workdir),
            env_extra={
                "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            },
        )
        for index in range(2)
    ]
    results = [_result(process, timeout=600) for process in processes]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["replicas"] == 2 for r in results)
    # Both workers hold the same synchronised weights and losses.
    assert results[0]["weights"] == pytest.approx(results[1]["weights"], rel=1e-6)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-6)
    import keras

    import layers  # noqa: F401  (registers our classes for loading)

    checkpoint = keras.saving.load_model(workdir / "checkpoints" / "last.keras", safe_mode=True)
    assert [float(w.sum()) for w in checkpoint.get_weights()] == pytest.approx(results[0]["weights"], rel=1e-6)
    # No validation data, so no best.keras; and nothing left by the other worker.
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["last.keras"]


# The character LM's streams under MirroredStrategy on two logical CPUs: each
# replica must get the same rows at every step (checked on row ids), and the
# stateful recipe must then train exactly as on one device.
MIRRORED_STREAMS_PROGRAM = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from zoo import distribute
    from zoo.char_lm import data as data_lib, evaluate as evaluate_lib, train as train_lib
    from zoo.char_lm.config import CharLMConfig

    strategy = distribute.get_strategy("mirrored")
    # Element k holds rows 10k .. 10k+3; replica i must see rows 10k+2i, 10k+2i+1.
    rows = np.arange(3)[:, None] * 10 + np.arange(4)[None, :]
    data = tf.data.Dataset.from_tensor_slices((rows, -rows))
    seen = []
    for inputs, targets in distribute.distribute_row_streams(strategy, data, 4):
        seen.append([[v.numpy().tolist() for v in strategy.experimental_local_results(t)] for t in (inputs, targets)])
    try:
        distribute.distribute_row_streams(strategy, data, 3)
        indivisible = None
    except ValueError as error:
        indivisible = str(error)

    text = open(sys.argv[2], encoding="utf-8").read()
    curves, evaluations = {}, {}
    for name in ("default", "mirrored"):
        config = CharLMConfig(units=16, embedding_dim=8, seq_len=8, batch_size=4, epochs=2,
                              dropout=0.0, markov_orders=(1,), validation_fraction=0.25)
        workdir = f"{sys.argv[1]}/{name}"
        metrics = train_lib.train_and_evaluate(config, workdir, source=data_lib.TextSource(text_path=sys.argv[2]),
                                               strategy=distribute.get_strategy(name), verbose=0, tensorboard=False)
        curves[name] = [[row["train_nats_per_char"], row["val_nats_per_char"]] for row in metrics["curve"]]
        evaluations[name] = evaluate_lib.evaluate(workdir, which="last")["nats_per_char"]
    print(json.dumps({"seen": seen, "indivisible": indivisible, "curves": curves, "evaluations": evaluations}))
    """
)


def _words_file(tmp_path, length=1600):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "to", "dog"]
    rng = __import__("numpy").random.default_rng(0)
    text = "".join(" ".join(rng.choice(words, size=6)) + ".\n" for _ in range(length // 20))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.slow  # the two-worker char_lm test covers the row streams in the default run
def test_char_lm_streams_under_mirrored_match_one_device(tmp_path):
    result = _result(_run(MIRRORED_STREAMS_PROGRAM, str(tmp_path), _words_file(tmp_path)))
    assert result["seen"] == [
        [[[10 * k, 10 * k + 1], [10 * k + 2, 10 * k + 3]], [[-10 * k, -10 * k - 1], [-10 * k - 2, -10 * k - 3]]]
        for k in range(3)
    ]
    assert "global batch size of 3" in result["indivisible"] and "multiple of 2" in result["indivisible"]
    one, two = result["curves"]["default"], result["curves"]["mirrored"]
    assert len(one) == 2 and one[1][0] < one[0][0]
    assert sum(two, []) == pytest.approx(sum(one, []), rel=1e-5)
    # The mirrored checkpoint holds one replica's stream rows; evaluation
    # rebuilds it for all rows and scores the same as the single device.
    assert result["evaluations"]["mirrored"] == pytest.approx(result["evaluations"]["default"], rel=1e-5)
    assert result["evaluations"]["default"] == pytest.approx(one[1][1], rel=1e-5)


def _recipe_program(module):
    return f"import sys; from recipes import _cli, {module}; _cli.run({module}.main, sys.argv[1:])"


def _recipe(module, *arguments, timeout=900):
    """Run `python -m recipes.<module> ...` in one process; its stdout."""
    completed = subprocess.run(
        [sys.executable, "-c", _recipe_program(module), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _two_workers_and_one_process(module, arguments, tmp_path, timeout=900):
    """The recipe on two MultiWorkerMirroredStrategy workers (workdir `run`)
    and alone in one process (workdir `single`); (worker stdouts, single stdout)."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [
        _run(
            _recipe_program(module),
            *arguments,
            "--workdir",
            str(tmp_path / "run"),
            "--strategy",
            "multi-worker",
            env_extra={
                "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            },
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=timeout) for process in processes]
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    single = _recipe(module, *arguments, "--workdir", str(tmp_path / "single"), timeout=timeout)
    return [out for out, _ in outputs], single


def test_two_workers_run_the_char_lm_recipe_like_one_process(tmp_path):
    """`python -m recipes.char_lm train --strategy multi-worker` on two local workers."""
    text = _words_file(tmp_path)
    arguments = ["train", "--text", text, "--quiet", "--no-tensorboard"]
    for override in (
        "units=16",
        "embedding_dim=8",
        "seq_len=8",
        "batch_size=4",
        "epochs=2",
        "dropout=0",
        "markov_orders=1",
        "validation_fraction=0.25",
    ):
        arguments += ["--set", override]
    outputs, single = _two_workers_and_one_process("char_lm", arguments, tmp_path, timeout=600)

    def curve(out):
        lines = out.splitlines()
        start = lines.index("epoch  seconds  val nats/char  bits/char  perplexity")
        return [float(line.split()[2]) for line in lines[start + 1 : start + 3]]

    chief, other = curve(outputs[0]), curve(outputs[1])
    assert chief == other  # both workers hold the same synchronised model
    assert chief == pytest.approx(curve(single), rel=1e-4)  # and it trained as one process would
    assert "written by the chief" in outputs[1]
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.json", "best.keras", "last.keras"]
    assert not any(p.name.startswith(".") for p in run.rglob("*")), "a temporary file was left behind"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["val_nats_per_char"] for row in metrics["curve"]] == pytest.approx(chief, abs=1e-4)
    # The checkpoint is one consistent model: evaluating it reproduces the
    # validation loss the workers measured at the last epoch.
    evaluated = _recipe("char_lm", "evaluate", "--workdir", str(run), "--checkpoint", "last")
    assert json.loads(evaluated)["nats_per_char"] == pytest.approx(chief[-1], abs=1e-4)


@pytest.mark.slow
def test_two_workers_run_the_forecast_recipe_like_one_process(tmp_path):
    """`python -m recipes.forecast train --strategy multi-worker` on two local workers."""
    arguments = ["train", "--verbose", "0"]
    for override in (
        "dataset=elnino",
        "window=12",
        "horizon=4",
        "units=4",
        "epochs=2",
        "batch_size=64",
        "models=lstm,gru-autoregressive",
    ):
        arguments += ["--set", override]
    outputs, single = _two_workers_and_one_process("forecast", arguments, tmp_path)

    def losses(out):
        return [line.split("best validation loss ")[1] for line in out.splitlines() if "best validation loss" in line]

    assert len(losses(single)) == 2
    assert losses(outputs[0]) == losses(outputs[1]) == losses(single)
    assert "written by the chief" in outputs[1]
    chief_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    single_metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    for name in ("lstm", "gru-autoregressive"):
        assert chief_metrics["models"][name]["mase"] == pytest.approx(single_metrics["models"][name]["mase"], rel=1e-4)


@pytest.mark.slow
def test_two_workers_run_the_sentiment_recipe_like_one_process(tmp_path):
    """`python -m recipes.sentiment train --folds 2 --strategy multi-worker` on two local workers."""
    rng = __import__("numpy").random.default_rng(0)
    good, bad, filler = (
        ["great", "fine", "moving", "witty"],
        ["dull", "tedious", "messy", "flat"],
        ["a", "film", "the", "plot"],
    )
    for name, words in (("pos", good), ("neg", bad)):
        lines = [" ".join(rng.choice(words + filler, size=6)) for _ in range(60)]
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    arguments = [
        "train",
        "--class-file",
        f"pos={tmp_path / 'pos.txt'}",
        "--class-file",
        f"neg={tmp_path / 'neg.txt'}",
        "--folds",
        "2",
        "--quiet",
    ]
    for override in ("units=4", "embedding_dim=4", "epochs=2", "dropout=0", "baseline_epochs=2", "batch_size=16"):
        arguments += ["--set", override]
    outputs, single = _two_workers_and_one_process("sentiment", arguments, tmp_path)
    assert "written by the chief" in outputs[1]

    def table(out):
        return [line for line in out.splitlines() if line.startswith(("bilstm ", "baseline "))]

    assert len(table(single)) == 2
    assert table(outputs[0]) == table(outputs[1]) == table(single)
    run = tmp_path / "run"
    assert not any(p.name.startswith(".") for p in run.rglob("*")), "a temporary file was left behind"
    for fold in ("fold-01", "fold-02"):
        chief = json.loads((run / "folds" / fold / "metrics.json").read_text())
        alone = json.loads((tmp_path / "single" / "folds" / fold / "metrics.json").read_text())
        assert chief["models"]["bilstm"]["accuracy"] == pytest.approx(alone["models"]["bilstm"]["accuracy"])
