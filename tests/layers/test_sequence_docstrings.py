"""The sequence layers' docstrings run their examples and document the paths."""

import doctest

import layers.sequence


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
