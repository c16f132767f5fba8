"""Settings shared by every test: quiet TensorFlow, no leaked global Keras state, backends.

The Keras backend is the one `KERAS_BACKEND` names (TensorFlow by default).
On another backend only the tests marked `backends` run (a module marks
itself with `pytestmark = pytest.mark.backends`), except those also marked
`tensorflow_only`; the rest are skipped with the reason. So
`KERAS_BACKEND=jax pytest tests/layers -m backends` runs the layer tests
that hold on every backend.
"""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_requested = os.environ.get("KERAS_BACKEND", "tensorflow")
if _requested in _BACKEND_PACKAGES and importlib.util.find_spec(_BACKEND_PACKAGES[_requested]) is None:
    import pytest

    raise pytest.UsageError(
        f"KERAS_BACKEND={_requested}, but {_BACKEND_PACKAGES[_requested]} is not installed; "
        'install the backends with `pip install -e ".[backends]"`.'
    )

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    not_marked = pytest.mark.skip(
        reason=f"runs on the TensorFlow backend only (not marked `backends`); KERAS_BACKEND={BACKEND}"
    )
    tensorflow_only = pytest.mark.skip(reason=f"TensorFlow-only; KERAS_BACKEND={BACKEND}")
    for item in items:
        if "backends" not in item.keywords:
            item.add_marker(not_marked)
        elif "tensorflow_only" in item.keywords:
            item.add_marker(tensorflow_only)


@pytest.fixture(autouse=True)
def _restore_keras_global_state():
    """Put back the global dtype policy after each test, whatever the test set."""
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.fixture
def dtype_policy():
    """Set a global dtype policy for one test: `dtype_policy("mixed_float16")`.

    The previous policy is restored afterwards (also by the autouse fixture).
    """
    previous = keras.config.dtype_policy()

    def set_policy(name):
        keras.config.set_dtype_policy(name)
        return keras.config.dtype_policy()

    yield set_policy
    keras.config.set_dtype_policy(previous)
