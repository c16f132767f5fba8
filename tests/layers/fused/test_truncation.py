"""Truncated back-propagation through time (`bptt_steps`) against a step-by-step `stop_gradient` reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layers.fused.support import (
    KINDS,
    TIMESTEPS,
    VARIANT_KINDS,
    assert_same,
    example_inputs,
    make_layers,
    run,
    sequence_mask,
)


def truncated_reference(cell, inputs, mask, initial_state, bptt_steps, go_backwards):
    """Step-by-step loop over the cell with explicit `stop_gradient` at chunk starts.

    Returns all outputs (batch, time, units) and the final states; masked
    steps carry the states and repeat the previous output (zeros before the
    first valid step), as `keras.layers.RNN` does.
    """
    steps = list(range(inputs.shape[1]))
    if go_backwards:
        steps.reverse()
    states = list(initial_state)
    previous_output = tf.zeros_like(states[0])
    outputs = []
    for position, t in enumerate(steps):
        if position > 0 and position % bptt_steps == 0:
            states = [tf.stop_gradient(s) for s in states]
            previous_output = tf.stop_gradient(previous_output)
        output, new_states = cell(inputs[:, t], states)
        if mask is not None:
            valid = mask[:, t : t + 1]
            new_states = [tf.where(valid, n, s) for n, s in zip(new_states, states)]
            output = tf.where(valid, output, previous_output)
        states, previous_output = list(new_states), output
        outputs.append(output)
    return tf.stack(outputs, axis=1), states


class _TruncatedReference(keras.layers.Layer):
    """Wraps `truncated_reference` so that `run` can drive it like a layer."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.supports_masking = True

    def call(self, inputs, mask=None, initial_state=None, training=False):
        sequence, states = truncated_reference(
            self.layer.cell, inputs, mask, initial_state, self.layer.bptt_steps, self.layer.go_backwards
        )
        return [sequence, *states]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bptt_steps, go_backwards, mask", [(2, False, "holes"), (3, True, "left"), (1, False, None)])
def test_truncated_bptt_equals_stop_gradient_reference(kind, bptt_steps, go_backwards, mask):
    check_truncation(kind, bptt_steps, go_backwards, mask)


@pytest.mark.parametrize(
    "kind, bptt_steps, go_backwards, mask",
    # (Every variant in every setting: `slow`, below.)
    [("projection_lstm", 3, True, "left")],
)
def test_variant_layers_truncated_bptt_equals_stop_gradient_reference(kind, bptt_steps, go_backwards, mask):
    check_truncation(kind, bptt_steps, go_backwards, mask)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(VARIANT_KINDS))
def test_every_variant_layers_truncated_bptt_equals_stop_gradient_reference(kind):
    for bptt_steps, go_backwards, mask in [(2, False, "holes"), (3, True, "left"), (1, False, None)]:
        check_truncation(kind, bptt_steps, go_backwards, mask)


def check_truncation(kind, bptt_steps, go_backwards, mask):
    """The fused path (graph and compiled loops, training and not) and the cell path against the reference."""
    options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards, bptt_steps=bptt_steps)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask_array = sequence_mask(mask)
    reference_layer, _ = make_layers(kind, with_keras=False, **options)
    expected = run(_TruncatedReference(reference_layer), inputs, mask_array, initial)
    for fused, training, jit_compile in (
        (True, True, "auto"),
        (True, False, "auto"),
        (True, True, True),
        (True, False, True),
        (False, True, "auto"),
    ):
        layer, _ = make_layers(kind, with_keras=False, fused=fused, jit_compile=jit_compile, **options)
        result = run(layer, inputs, mask_array, initial, training=training)
        assert layer.last_path == ("fused" if fused else "cell")
        label = f"{kind} bptt_steps={bptt_steps} fused={fused} training={training} jit_compile={jit_compile}"
        assert_same(result, expected, label)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_truncation_changes_gradients_but_not_outputs(kind):
    inputs, initial = example_inputs(kind, initial_state=True)
    full_layer, _ = make_layers(kind, with_keras=False, return_sequences=True)
    truncated_layer, _ = make_layers(kind, with_keras=False, return_sequences=True, bptt_steps=2)
    long_layer, _ = make_layers(kind, with_keras=False, return_sequences=True, bptt_steps=TIMESTEPS)
    full = run(full_layer, inputs, None, initial, training=True)
    truncated = run(truncated_layer, inputs, None, initial, training=True)
    np.testing.assert_allclose(truncated[0][0], full[0][0], atol=1e-6)
    input_gradient_change = np.max(np.abs(truncated[1][0] - full[1][0]))
    assert input_gradient_change > 1e-3
    # The initial state gets gradient only through the first chunk (steps 0 and 1).
    assert np.max(np.abs(truncated[1][1] - full[1][1])) > 1e-3
    # A chunk as long as the sequence is full back-propagation.
    assert_same(run(long_layer, inputs, None, initial, training=True), full, "bptt_steps=T")
