"""The examples in the cells' docstrings run and print what they claim."""

import doctest

import pytest

import layers.cells

pytestmark = pytest.mark.backends


def test_docstring_examples_pass():
    result = doctest.testmod(layers.cells, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15  # the examples exist
    assert result.failed == 0


def test_every_public_cell_documents_args_call_arguments_and_an_example():
    for cell_class in (layers.cells.SimpleRNNCell, layers.cells.LSTMCell, layers.cells.GRUCell):
        text = cell_class.__doc__
        sections = [text.index(name) for name in ("Reference", "Args:", "Call arguments:", "Example:") if name in text]
        assert len(sections) == 4, cell_class.__name__
        assert sections == sorted(sections), f"{cell_class.__name__}: sections out of Keras order"
