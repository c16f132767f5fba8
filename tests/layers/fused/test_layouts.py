"""The compiled loops' layouts (states as columns, batch halves, transposed step products) give the same numbers."""

import numpy as np
import pytest
import tensorflow as tf

import layers
from layers.fused import layouts, policy
from tests.layers.fused.support import (
    KINDS,
    SETTINGS,
    assert_same,
    compare_setting,
    example_inputs,
    make_layers,
    record_splits,
    run,
    sequence_mask,
    setting_id,
)


@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_inference_in_columns_equals_keras_and_cell_path(kind, setting, monkeypatch):
    # Wide layers' compiled inference loops keep the states as columns;
    # lowering the width at which that starts runs these tiny layers so.
    monkeypatch.setattr(policy, "COLUMN_MIN_WIDTH", 1)
    calls = []
    original = layouts.BatchMajorLoops._loop_in_columns
    monkeypatch.setattr(
        layouts.BatchMajorLoops, "_loop_in_columns", lambda self, *args: calls.append(1) or original(self, *args)
    )
    compare_setting(kind, False, jit_compile=True, **setting)
    assert calls


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_compiled_inference_of_a_wide_layer_runs_in_columns(kind, monkeypatch):
    # At the real threshold (no patching): a recurrent kernel 512 wide, a
    # short masked batch.
    calls = []
    original = layouts.BatchMajorLoops._loop_in_columns
    monkeypatch.setattr(
        layouts.BatchMajorLoops, "_loop_in_columns", lambda self, *args: calls.append(1) or original(self, *args)
    )
    units = -(-policy.COLUMN_MIN_WIDTH // (4 if kind == "lstm" else 3))
    ours, references = make_layers(kind, units=units, jit_compile=True, return_sequences=True)
    inputs, _ = example_inputs(kind)
    mask = sequence_mask("left")
    result = run(ours, inputs, mask, None, training=False)
    assert calls and ours.last_path == "fused"
    for name, reference in references:
        assert_same(result, run(reference, inputs, mask, None, training=False), f"{kind} vs {name}")


# Two settings with masks, going backwards, initial states and without
# biases for the default run; every setting is `slow`.
HALVES_SETTINGS = [SETTINGS[1], SETTINGS[3]]
HALVES_MODES = ["training", "inference_in_rows", "inference_in_columns"]


@pytest.mark.parametrize("mode", HALVES_MODES)
@pytest.mark.parametrize("setting", HALVES_SETTINGS, ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_in_halves_equal_keras_and_cell_path(kind, setting, mode, monkeypatch):
    compare_in_halves(kind, setting, mode, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("mode", HALVES_MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_in_halves_equal_keras_and_cell_path_every_setting(kind, mode, monkeypatch):
    for setting in SETTINGS:
        with monkeypatch.context() as patch:
            compare_in_halves(kind, setting, mode, patch)


def compare_in_halves(kind, setting, mode, monkeypatch):
    # Traced, compiled loops run the halves of the batch as two calls;
    # lowering the thresholds runs this batch of 3 so (halves of 1 and 2
    # rows). Training splits the saving and the backward loops; the gradient
    # of an inference call reruns the saving loop, which splits too.
    for name in ("SPLIT_MIN_BATCH", "SPLIT_TRAINING_MIN_BATCH"):
        monkeypatch.setattr(policy, name, 2)
    if mode == "inference_in_columns":
        monkeypatch.setattr(policy, "COLUMN_MIN_WIDTH", 1)
    answers = record_splits(monkeypatch)
    setting = dict(setting)
    mask, initial_state = sequence_mask(setting.pop("mask", None)), setting.pop("initial_state", False)
    ours, references = make_layers(kind, jit_compile=True, **setting)
    inputs, initial = example_inputs(kind, initial_state=initial_state)
    training = mode == "training"
    result = run(ours, inputs, mask, initial, training=training, traced=True)
    assert answers == [True] and ours.last_path == "fused"
    for name, reference in references:
        assert_same(result, run(reference, inputs, mask, initial, training=training), f"{kind} {setting} vs {name}")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind, training", [("lstm", True), ("gru", False)])
def test_an_unknown_batch_is_compiled_in_halves(kind, training, batch, monkeypatch):
    # A dataset's batches without `drop_remainder`: the traced call does not
    # know the batch, compiles by default and cuts the halves where the
    # running batch's middle is, down to a batch of one (an empty half).
    answers = record_splits(monkeypatch)
    ours, references = make_layers(kind, return_sequences=True, return_state=True)
    inputs, initial = example_inputs(kind, initial_state=True, batch=batch)
    mask = sequence_mask("holes", batch=batch)
    result = run(ours, inputs, mask, initial, training=training, traced="batch unknown")
    assert answers == [True] and ours.last_loops == "compiled halves"
    for name, reference in references:
        expected = run(reference, inputs, mask, initial, training=training)
        assert_same(result, expected, f"{kind} batch {batch} vs {name}")


def test_halves_share_one_compiled_program(monkeypatch):
    # Both halves call one program, compiled once, where their shapes and
    # math agree.
    answers = record_splits(monkeypatch)

    def compiled_functions(layer, training, batch):
        spec = tf.TensorSpec((batch, 4, 3))
        concrete = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        library = concrete.graph.as_graph_def().library.function
        return [f.signature.name for f in library if f.attr["_XlaMustCompile"].b]

    assert len(compiled_functions(layers.LSTM(8), False, 16)) == 1
    # Halves of 8 and 9 rows: one program, traced for each shape.
    assert len(compiled_functions(layers.LSTM(8), False, 17)) == 2
    # Training (the forward call traces the saving loop only); with
    # recurrent dropout each half has its rows of the mask, so its own.
    assert len(compiled_functions(layers.LSTM(8), True, 16)) == 1
    assert len(compiled_functions(layers.LSTM(8, recurrent_dropout=0.5), True, 16)) == 2
    assert answers and set(answers) == {True}


def test_compiled_inference_in_columns_with_a_gradient(monkeypatch):
    # A gradient through an inference call reruns the (row) saving loop.
    monkeypatch.setattr(policy, "COLUMN_MIN_WIDTH", 1)
    for kind in KINDS:
        ours, _ = make_layers(kind, with_keras=False, jit_compile=True, return_sequences=True)
        reference, _ = make_layers(kind, with_keras=False, fused=False, return_sequences=True)
        inputs, _ = example_inputs(kind)
        x = tf.constant(inputs)
        grads = []
        for layer in (ours, reference):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(layer(x, training=False)))
            grads.append(tape.gradient(loss, [x, *layer.trainable_variables]))
        for got, want in zip(*grads):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5, err_msg=kind)


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS[:4], ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_transposed_step_products_give_the_same_numbers(kind, setting, training, monkeypatch):
    # Large kernels' step products with a small batch are computed as
    # (kernel^T @ h^T)^T; lowering the size at which that starts runs every
    # step product of these tiny layers (forward and backward) in that form.
    monkeypatch.setattr(policy, "TRANSPOSED_PRODUCT_MIN_SIZE", 1)
    compare_setting(kind, training, **setting)
