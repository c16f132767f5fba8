"""Dropout on the fused path draws the masks the cell path draws, also when the batch is split."""

import numpy as np
import pytest

from layers.fused import policy
from tests.layers.fused.support import (
    KINDS,
    VARIANT_KINDS,
    assert_same,
    example_inputs,
    make_layers,
    record_splits,
    run,
    sequence_mask,
)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bptt_steps, jit_compile", [(None, "auto"), (2, "auto"), (None, True), (2, True)])
def test_dropout_masks_equal_the_cell_paths_for_the_same_seed(kind, bptt_steps, jit_compile):
    check_dropout(kind, bptt_steps, jit_compile)


@pytest.mark.parametrize(
    "kind, bptt_steps, jit_compile",
    # (Every variant in every setting: `slow`, below.)
    [("layer_norm_lstm", 2, True), ("layer_norm_gru_reset_before", None, "auto")],
)
def test_variant_layers_dropout_masks_equal_the_cell_paths(kind, bptt_steps, jit_compile):
    check_dropout(kind, bptt_steps, jit_compile)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(VARIANT_KINDS))
def test_every_variant_layers_dropout_masks_equal_the_cell_paths(kind):
    for bptt_steps, jit_compile in [(None, "auto"), (2, "auto"), (None, True), (2, True)]:
        check_dropout(kind, bptt_steps, jit_compile)


def check_dropout(kind, bptt_steps, jit_compile):
    """Dropout on the fused path against the cell path with the same seed; inference ignores it."""
    # Eager calls run graph loops under "auto"; True compiles them.
    options = dict(return_sequences=True, return_state=True, dropout=0.3, recurrent_dropout=0.4, seed=5)
    if bptt_steps:
        options["bptt_steps"] = bptt_steps
    fused, _ = make_layers(kind, with_keras=False, jit_compile=jit_compile, **options)
    cell_path, _ = make_layers(kind, with_keras=False, fused=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    result = run(fused, inputs, mask, initial, training=True)
    expected = run(cell_path, inputs, mask, initial, training=True)
    assert fused.last_path == "fused" and cell_path.last_path == "cell"
    assert_same(result, expected, f"{kind} dropout")
    # Dropout changed something, and inference ignores it.
    plain, _ = make_layers(kind, with_keras=False, **{k: v for k, v in options.items() if "dropout" not in k})
    assert np.max(np.abs(result[0][0] - run(plain, inputs, mask, initial, training=True)[0][0])) > 1e-2
    assert_same(run(fused, inputs, mask, initial), run(plain, inputs, mask, initial), "inference")


@pytest.mark.parametrize("kind", [*KINDS, "projection_lstm"])
def test_dropout_masks_are_split_with_the_batch(kind, monkeypatch):
    # Training in halves: each half's loops take their rows of the recurrent
    # dropout mask, so the numbers stay those of the cell path (both traced,
    # the first call of each, with the same seed).
    monkeypatch.setattr(policy, "SPLIT_TRAINING_MIN_BATCH", 2)
    answers = record_splits(monkeypatch)
    options = dict(return_sequences=True, return_state=True, dropout=0.3, recurrent_dropout=0.4, seed=5, bptt_steps=2)
    ours, _ = make_layers(kind, with_keras=False, jit_compile=True, **options)
    cell_path, _ = make_layers(kind, with_keras=False, fused=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    result = run(ours, inputs, mask, initial, training=True, traced=True)
    assert answers == [True] and ours.last_path == "fused"
    assert_same(result, run(cell_path, inputs, mask, initial, training=True, traced=True), f"{kind} dropout")


def test_dropout_draws_new_masks_for_every_call():
    layer, _ = make_layers("lstm", with_keras=False, dropout=0.5, seed=1)
    inputs, _ = example_inputs("lstm")
    first = np.asarray(layer(inputs, training=True))
    second = np.asarray(layer(inputs, training=True))
    assert np.max(np.abs(first - second)) > 1e-3
