"""Character-level language modelling: data, model, Markov baselines, training, export.

Importing this package registers the model builders `char_lm/rnn`,
`char_lm/lstm` and `char_lm/gru` (each takes the config and
`vocabulary_size=`).
"""

from zoo.char_lm.data import OOV_ID, TextSource, Vocabulary, prepare_corpus, stream_batches, stream_target_positions
from zoo.char_lm.markov import KneserNeyMarkov, markov_table
from zoo.char_lm.model import CharacterStepper, CharLMConfig, build_model, compile_model
from zoo.char_lm.train import evaluate, export, results_table, sample, train_and_evaluate

__all__ = [
    "OOV_ID",
    "TextSource",
    "Vocabulary",
    "prepare_corpus",
    "stream_batches",
    "stream_target_positions",
    "KneserNeyMarkov",
    "markov_table",
    "CharacterStepper",
    "CharLMConfig",
    "build_model",
    "compile_model",
    "evaluate",
    "export",
    "results_table",
    "sample",
    "train_and_evaluate",
]
