"""Character-level language modelling: config, data, Markov baselines, model, training, evaluation, export.

Importing this package registers the model builders `char_lm/rnn`,
`char_lm/lstm` and `char_lm/gru` (each takes the config and
`vocabulary_size=`).
"""

from zoo.char_lm.baselines import KneserNeyMarkov, markov_table
from zoo.char_lm.config import CharLMConfig
from zoo.char_lm.data import (
    OOV_ID,
    TextSource,
    Vocabulary,
    prepare_corpus,
    stream_batches,
    stream_target_positions,
)
from zoo.char_lm.evaluate import results_table, sample
from zoo.char_lm.model import CharacterStepper, build_model, compile_model
from zoo.char_lm.train import train_and_evaluate

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
    "results_table",
    "sample",
    "train_and_evaluate",
]
