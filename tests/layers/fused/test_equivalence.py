"""The fused path, as graph loops and compiled by XLA, equals Keras's layers and the cell path."""

import itertools

import numpy as np
import pytest

from tests.layers.fused.support import (
    KINDS,
    SETTINGS,
    VARIANT_KINDS,
    assert_same,
    compare_setting,
    covering_settings,
    differences,
    example_inputs,
    make_layers,
    run,
    sequence_mask,
    setting_id,
)


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_keras_and_cell_path(kind, setting, training):
    compare_setting(kind, training, **setting)


@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_loops_equal_keras_and_cell_path(kind, setting, training):
    # The same comparisons with the loops compiled by XLA (one dense tensor
    # per record) instead of run as graph loops (records in a TensorList).
    compare_setting(kind, training, jit_compile=True, **setting)


FULL_GRID = [
    dict(
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        mask=mask,
        initial_state=initial_state,
        use_bias=use_bias,
    )
    for return_sequences, return_state, go_backwards, mask, initial_state, use_bias in itertools.product(
        [False, True], [False, True], [False, True], [None, "right", "left", "holes"], [False, True], [True, False]
    )
]


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("kind", [*KINDS, *VARIANT_KINDS])
def test_fused_equals_keras_and_cell_path_full_grid(kind, training):
    # (The variants have no Keras layer: the cell path only.)
    for setting in FULL_GRID:
        compare_setting(kind, training, **setting)


def covering(offset, kinds=tuple(VARIANT_KINDS)):
    """`covering_settings` of the variants, as test parameters with readable ids."""
    return [
        pytest.param(kind, setting, training, id=f"{kind}-{setting_id(setting)}-{'bptt' if training else 'inference'}")
        for kind, setting, training in covering_settings(kinds, offset)
    ]


# Compiling costs seconds per test: in the default run, the variants whose
# compiled steps differ most (a joined product before the normalisation,
# one apart from it, the GRU's input normalisation, a projection's width).
COMPILED_VARIANTS = (
    "layer_norm_simple_rnn",
    "layer_norm_lstm",
    "layer_norm_gru_reset_before",
    "projection_lstm_coupled",
)


@pytest.mark.parametrize("kind, setting, training", covering(0))
def test_variant_layers_fused_equal_the_cell_path(kind, setting, training):
    # Each variant with the settings in turn; all of them are `slow` below.
    compare_setting(kind, training, **setting)


@pytest.mark.parametrize("kind, setting, training", covering(1, COMPILED_VARIANTS))
def test_variant_layers_compiled_loops_equal_the_cell_path(kind, setting, training):
    compare_setting(kind, training, jit_compile=True, **setting)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph_loops", "compiled_loops"])
@pytest.mark.parametrize("training", [True, False], ids=["hand_written_bptt", "inference_loop"])
@pytest.mark.parametrize("kind", list(VARIANT_KINDS))
def test_variant_layers_equal_the_cell_path_in_every_setting(kind, training, jit_compile):
    for setting in SETTINGS:
        compare_setting(kind, training, jit_compile=jit_compile, **setting)


@pytest.mark.parametrize(
    "activation, recurrent_activation",
    [("relu", "hard_sigmoid"), ("linear", "tanh"), ("hard_sigmoid", "relu")],
)
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_supports_common_activations(kind, activation, recurrent_activation):
    options = {"activation": activation}
    if kind != "simple_rnn":
        options["recurrent_activation"] = recurrent_activation
    ours, references = make_layers(kind, return_sequences=True, return_state=True, with_keras=False, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    for training in (True, False):
        result = run(ours, inputs, mask, initial, training=training)
        assert ours.last_path == "fused"
        assert_same(result, run(references[0][1], inputs, mask, initial, training=training), activation)


@pytest.mark.parametrize(
    "kind, activation, recurrent_activation",
    [
        ("layer_norm_simple_rnn", "linear", None),
        ("layer_norm_lstm", "relu", "hard_sigmoid"),
        ("layer_norm_gru", "relu", "linear"),
        ("layer_norm_gru_reset_before", "hard_sigmoid", "linear"),
        ("projection_lstm", "linear", "tanh"),
        ("projection_lstm_coupled", "relu", "linear"),
    ],
)
def test_variant_layers_support_common_activations(kind, activation, recurrent_activation):
    options = {"activation": activation}
    if recurrent_activation is not None:
        options["recurrent_activation"] = recurrent_activation
    ours, references = make_layers(kind, return_sequences=True, return_state=True, **options)
    inputs, initial = example_inputs(kind, initial_state=True)
    mask = sequence_mask("holes")
    for training in (True, False):
        result = run(ours, inputs, mask, initial, training=training)
        assert ours.last_path == "fused", ours.fallback_reason
        assert_same(result, run(references[0][1], inputs, mask, initial, training=training), f"{kind} {activation}")


def test_float64_runs_fused_and_matches_keras_closely():
    ours, references = make_layers("lstm", return_sequences=True, return_state=True, dtype="float64")
    inputs, initial = example_inputs("lstm", initial_state=True)
    inputs = inputs.astype("float64")
    initial = [s.astype("float64") for s in initial]
    for training in (True, False):
        result = run(ours, inputs, sequence_mask("left"), initial, training=training)
        assert ours.last_path == "fused"
        assert result[0][0].dtype == np.float64
        for _, reference in references:
            expected = run(reference, inputs, sequence_mask("left"), initial, training=training)
            output_difference, _ = differences(result, expected)
            assert output_difference < 1e-12
            for a, b in zip(result[1], expected[1]):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["layer_norm_lstm", "projection_lstm"])
def test_variant_layers_in_float64_match_the_cell_path_closely(kind):
    ours, references = make_layers(kind, return_sequences=True, return_state=True, dtype="float64")
    inputs, initial = example_inputs(kind, initial_state=True)
    inputs, initial = inputs.astype("float64"), [s.astype("float64") for s in initial]
    result = run(ours, inputs, sequence_mask("left"), initial, training=True)
    assert ours.last_path == "fused" and result[0][0].dtype == np.float64
    expected = run(references[0][1], inputs, sequence_mask("left"), initial, training=True)
    for a, b in zip(result[0] + result[1], expected[0] + expected[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_unroll_runs_fused_with_the_same_numbers():
    rolled, _ = make_layers("gru", return_sequences=True, with_keras=False)
    unrolled, _ = make_layers("gru", return_sequences=True, unroll=True, with_keras=False)
    inputs, _ = example_inputs("gru")
    for training in (True, False):
        expected = run(rolled, inputs, sequence_mask("right"), training=training)
        result = run(unrolled, inputs, sequence_mask("right"), training=training)
        assert unrolled.last_path == "fused"
        for a, b in zip(result[0] + result[1], expected[0] + expected[1]):
            np.testing.assert_array_equal(a, b)
