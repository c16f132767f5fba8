"""The sequence layers' docstrings run their examples and document the paths."""

import doctest

import layers.sequence
import layers.variant_sequence


def test_docstring_examples_pass():
    result = doctest.testmod(layers.sequence, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0


def test_each_layer_documents_fused_path_fallback_and_truncation():
    for layer_class in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        text = layer_class.__doc__
        for phrase in (
            "Fused path.",
            "Fallback.",
            "Truncated back-propagation through time.",
            "bptt_steps",
            "Example:",
        ):
            assert phrase in text, f"{layer_class.__name__} lacks {phrase!r}"
        assert "{shared}" not in text and "{cell}" not in text
        assert layer_class.cell_class.__name__ in text


def test_variant_layers_docstring_examples_pass_and_document_the_paths():
    result = doctest.testmod(layers.variant_sequence, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
    variants = (
        layers.LayerNormSimpleRNN,
        layers.LayerNormLSTM,
        layers.LayerNormGRU,
        layers.PeepholeLSTM,
        layers.ProjectionLSTM,
    )
    for layer_class in variants:
        text = layer_class.__doc__
        for phrase in ("Fused path.", "Fallback.", "Truncated back-propagation through time.", "Example:"):
            assert phrase in text, f"{layer_class.__name__} lacks {phrase!r}"
        assert "{shared}" not in text and layer_class.cell_class.__name__ in text
