"""An export that fails or is killed half-way leaves the previous export loadable."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.support import REPO
from zoo.export import export_saved_model


class Scale(tf.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = tf.Variable(float(factor))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": x * self.factor}


def _served(path):
    return tf.saved_model.load(str(path)).signatures["serve"](tf.constant([1.0, 2.0]))["y"].numpy()


def test_failed_verification_keeps_previous_export(tmp_path):
    path = tmp_path / "export"
    module = Scale(2.0)
    export_saved_model(module, str(path), {"serve": module.serve})
    np.testing.assert_allclose(_served(path), [2.0, 4.0])

    def refuse(loaded):
        raise ValueError("verification failed")

    broken = Scale(3.0)
    with pytest.raises(ValueError, match="verification failed"):
        export_saved_model(broken, str(path), {"serve": broken.serve}, verify=refuse)
    np.testing.assert_allclose(_served(path), [2.0, 4.0])
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(
            broken, str(path), {"serve": broken.serve}, verify=lambda loaded: (_ for _ in ()).throw(KeyboardInterrupt())
        )
    np.testing.assert_allclose(_served(path), [2.0, 4.0])
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary left behind

    export_saved_model(broken, str(path), {"serve": broken.serve})
    np.testing.assert_allclose(_served(path), [3.0, 6.0])


def test_missing_signature_and_bad_path(tmp_path):
    module = Scale(1.0)
    with pytest.raises(ValueError, match="path"):
        export_saved_model(module, "", {"serve": module.serve})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file"):
        export_saved_model(module, str(tmp_path / "file"), {"serve": module.serve})


KILLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    import tensorflow as tf
    from tests.zoo.test_export import Scale
    from zoo.export import export_saved_model
    module = Scale(5.0)
    def slow_verify(loaded):
        print("verifying", flush=True)
        time.sleep(120)
    export_saved_model(module, sys.argv[1], {"serve": module.serve}, verify=slow_verify)
    """
)


def test_export_killed_mid_way_keeps_previous_export(tmp_path):
    path = tmp_path / "export"
    module = Scale(2.0)
    export_saved_model(module, str(path), {"serve": module.serve})
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    # The new SavedModel is fully written (and being verified) when this line comes.
    assert process.stdout.readline().strip() == "verifying"
    process.send_signal(signal.SIGKILL)
    process.wait()
    np.testing.assert_allclose(_served(path), [2.0, 4.0])
