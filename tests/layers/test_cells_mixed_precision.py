"""Cells under the mixed_float16 and mixed_bfloat16 policies.

Both sides compute in half precision, so our cell and Keras's are compared
with half-precision tolerances (`layers.testing.TOLERANCES`: outputs
within two units in the last place at 1.0, i.e. 2e-3 for float16 and 1.6e-2
for bfloat16; gradients within ten times that, relative). The half-precision
result is also checked against the float32 computation with the same weights.
"""

import keras
import numpy as np
import pytest

import layers
from layers import testing

POLICIES = ["mixed_float16", "mixed_bfloat16"]
HALF_DTYPES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# |half - float32| on O(1) outputs after a few steps: a few units in the last place.
AGAINST_FLOAT32 = {"mixed_float16": 1e-2, "mixed_bfloat16": 6e-2}

SETTINGS = [
    testing.Setting("simple_rnn", return_sequences=True, return_state=True, graph=True),
    testing.Setting("lstm", return_sequences=True, return_state=True, initial_state=True),
    testing.Setting("gru", return_sequences=True, return_state=True, mask="left", batch=3, timesteps=4),
    testing.Setting("gru_reset_before", wrapper="bidirectional", return_sequences=True),
    testing.Setting("lstm", wrapper="stacked", return_state=True),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.label().replace(" ", "-"))
def test_agrees_with_keras_cell_under_the_same_policy(policy, setting):
    result = testing.compare(setting, seed=0, dtype_policy=policy)
    output_tolerance, gradient_tolerance = testing.TOLERANCES[policy]
    assert result.output_difference <= output_tolerance
    assert result.gradient_difference <= gradient_tolerance
    assert keras.config.dtype_policy().name == "float32"  # compare() put the policy back


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("cell_class", [layers.SimpleRNNCell, layers.LSTMCell, layers.GRUCell])
def test_computes_in_half_precision_close_to_float32(dtype_policy, policy, cell_class):
    sequences = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    reference = keras.layers.RNN(cell_class(5), return_sequences=True, return_state=True)
    expected = reference(sequences)
    dtype_policy(policy)
    half = keras.layers.RNN(cell_class(5), return_sequences=True, return_state=True)
    half.build(sequences.shape)
    half.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in half.weights)  # variables stay float32
    outputs = half(sequences)
    for output, target in zip(outputs, expected):
        assert keras.backend.standardize_dtype(output.dtype) == HALF_DTYPES[policy]
        difference = np.max(np.abs(np.asarray(output, dtype="float32") - np.asarray(target)))
        assert difference <= AGAINST_FLOAT32[policy]


def test_fit_step_under_mixed_float16_updates_float32_weights(dtype_policy):
    dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 3)),
            keras.layers.RNN(layers.LSTMCell(4, dropout=0.1, seed=1)),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    history = model.fit(rng.normal(size=(8, 4, 3)), rng.normal(size=(8, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert all(w.dtype == np.float32 for w in after)
    assert all(np.max(np.abs(a - b)) > 0 for a, b in zip(before, after))
