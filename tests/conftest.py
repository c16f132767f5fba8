"""Settings shared by every test: quiet TensorFlow, no leaked global Keras state."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


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
