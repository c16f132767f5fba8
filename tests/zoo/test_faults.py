"""Fault injection: a process killed (SIGKILL) while it writes never leaves a file a user cannot load.

A small program trains a toy model through `zoo.training.fit` (checkpoints
every epoch, a backup every 2 batches) and exports SavedModels through
`zoo.export.export_saved_model`. `FAULT=<what>:<n>` makes it kill itself at
the n-th time it reaches <what>:

- `checkpoint-write`: a `.keras` checkpoint half written;
- `backup-write`: the backup's weights half written;
- `backup-swap`: the new backup complete, just before it replaces the old;
- `export-write`: a SavedModel written, not yet verified or moved into place;
- `export-swap`: the new export complete and verified, just before it replaces the old.

Every completed save appends a line to `saves.jsonl` (what, and a digest of
the weights or outputs it holds). After the kill, every file a user could
load must load and hold exactly the last completed save, and a resumed run
must finish.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.support import REPO

PROGRAM = textwrap.dedent(
    """
    import json, os, signal, sys
    import keras, numpy as np, tensorflow as tf
    from zoo import export, files, training

    workdir, action = sys.argv[1], sys.argv[2]
    what, _, nth = os.environ.get("FAULT", "none:0").partition(":")
    counts = {}

    def reached(point):
        counts[point] = counts.get(point, 0) + 1
        if point == what and counts[point] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    def record(kind, value):
        with open(os.path.join(workdir, "saves.jsonl"), "a") as stream:
            stream.write(json.dumps({"kind": kind, "value": value}) + "\\n")
            stream.flush()
            os.fsync(stream.fileno())

    def digest(model):
        return float(sum(np.abs(w).sum() for w in model.get_weights()))

    def half_written(original, kind):
        def write(self, path, *args, **kwargs):
            original(self, path, *args, **kwargs)
            if what == kind and counts.get(kind, 0) + 1 == int(nth):
                data = open(path, "rb").read()
                open(path, "wb").write(data[: len(data) // 2])
            reached(kind)
        return write

    keras.Model.save = half_written(keras.Model.save, "checkpoint-write")
    keras.Model.save_weights = half_written(keras.Model.save_weights, "backup-write")
    exchange = files._exchange
    def swap(first, second):
        if os.path.basename(second) in ("latest", "export"):
            reached("backup-swap" if os.path.basename(second) == "latest" else "export-swap")
        return exchange(first, second)
    files._exchange = swap
    save_model = tf.saved_model.save
    def saved_model(*args, **kwargs):
        save_model(*args, **kwargs)
        reached("export-write")
    tf.saved_model.save = saved_model
    save_checkpoint = training.AtomicCheckpoint._save
    def checkpoint(self, name):
        save_checkpoint(self, name)
        record(name, digest(self.model))
    training.AtomicCheckpoint._save = checkpoint
    save_backup = training.ResumableBackup._save
    def backup(self):
        save_backup(self)
        if os.path.exists(os.path.join(self.latest, "position.json")):
            record("backup", [digest(self.model), self.epoch, self.batches_done])
    training.ResumableBackup._save = backup

    training.set_seed(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    if action == "train":
        training.fit(model, data, workdir=workdir, epochs=4, validation_data=data, backup_every_batches=2,
                     verbose=0, tensorboard=False, resume=True)
        print(json.dumps({"iterations": int(model.optimizer.iterations.numpy())}))
    else:
        probe = tf.constant(x[:4])
        for step in range(3):
            model.layers[-1].bias.assign([float(step)])
            serve = tf.function(lambda inputs: {"y": model(inputs)},
                                input_signature=[tf.TensorSpec([None, 3], tf.float32)])
            export.export_saved_model(model, os.path.join(workdir, "export"), {"serving_default": serve})
            record("export", float(np.sum(model(probe))))
    """
)


def _run(workdir, action, fault=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "FAULT": fault or "none:0"}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, workdir, action], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _saves(workdir, kind):
    path = os.path.join(workdir, "saves.jsonl")
    lines = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    return [line["value"] for line in lines if line["kind"] == kind]


def _killed(result):
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def _weights_digest(path, weights_only=False):
    import keras

    if weights_only:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
        model.load_weights(path)
    else:
        model = keras.saving.load_model(path, safe_mode=True)
    return float(sum(np.abs(w).sum() for w in model.get_weights()))


def _no_leftovers(directory):
    """No temporary or set-aside file or directory stays beside what a user loads."""
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            assert not name.startswith((".tmp-", ".latest.previous", ".export.previous")), os.path.join(root, name)


@pytest.mark.parametrize(
    "fault", [pytest.param("checkpoint-write:3", marks=pytest.mark.slow), "backup-write:4", "backup-swap:5"]
)
def test_killed_training_keeps_loadable_checkpoints_and_backup_and_resumes(tmp_path, fault):
    workdir = str(tmp_path)
    _killed(_run(workdir, "train", fault))
    checkpoints = _saves(workdir, "last.keras")
    if checkpoints:
        last = os.path.join(workdir, "checkpoints", "last.keras")
        assert _weights_digest(last) == pytest.approx(checkpoints[-1], rel=1e-6)
    backups = _saves(workdir, "backup")
    assert backups, "the kill came after at least one completed backup"
    latest = os.path.join(workdir, "backup", "latest")
    assert _weights_digest(os.path.join(latest, "weights.weights.h5"), weights_only=True) == pytest.approx(
        backups[-1][0], rel=1e-6
    )
    assert json.load(open(os.path.join(latest, "position.json"))) == {"epoch": backups[-1][1], "batch": backups[-1][2]}

    resumed = _run(workdir, "train")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # 4 epochs of 6 batches: the resumed run ends at exactly the uninterrupted step count.
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["iterations"] == 24
    _no_leftovers(workdir)


@pytest.mark.parametrize("fault", [pytest.param("export-write:2", marks=pytest.mark.slow), "export-swap:1"])
def test_a_killed_export_leaves_the_previous_export_whole(tmp_path, fault):
    import tensorflow as tf

    workdir = str(tmp_path)
    _killed(_run(workdir, "export", fault))
    exports = _saves(workdir, "export")
    assert len(exports) == 1  # the second export was killed
    loaded = tf.saved_model.load(os.path.join(workdir, "export"))
    probe = np.random.default_rng(0).normal(size=(48, 3)).astype("float32")[:4]
    output = loaded.signatures["serving_default"](tf.constant(probe))["y"].numpy()
    assert float(np.sum(output)) == pytest.approx(exports[-1], rel=1e-6)
    finished = _run(workdir, "export")  # a later export replaces it and cleans up
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(_saves(workdir, "export")) == 4
    _no_leftovers(workdir)


def test_a_later_write_removes_only_the_temporaries_of_dead_writers(tmp_path):
    from zoo.files import atomic_write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-metrics.json-{int(dead.stdout)}-abc"
    stale.write_text("half")
    live = tmp_path / f".tmp-metrics.json-{os.getppid()}-def"  # a concurrent writer, still running
    live.write_text("in progress")
    atomic_write_text(str(tmp_path / "metrics.json"), "{}")
    assert sorted(os.listdir(tmp_path)) == [live.name, "metrics.json"]
