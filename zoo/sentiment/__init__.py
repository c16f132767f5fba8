"""Sentiment (text) classification: data, recurrent models, baseline, metrics, export.

Importing this package registers the model builders `sentiment/rnn`,
`sentiment/lstm` and `sentiment/gru` (see `zoo.registry`).
"""

from zoo.sentiment.baseline import build_baseline
from zoo.sentiment.config import SentimentConfig
from zoo.sentiment.data import (
    TextDataset,
    load_class_files,
    load_table,
    load_tfds,
    make_dataset,
    read_text_file,
    stratified_folds,
    stratified_split,
)
from zoo.sentiment.experiment import (
    cross_validate,
    format_table,
    load_trained_model,
    predict_probabilities,
    train_and_evaluate,
    train_test_split_run,
)
from zoo.sentiment.export import export_text_classifier
from zoo.sentiment.metrics import classification_metrics, confusion_matrix, macro_f1, roc_auc
from zoo.sentiment.model import AdversarialTextClassifier, MaskedGlobalMaxPooling1D, TruncateTokens, build_model

__all__ = [
    "SentimentConfig", "TextDataset", "load_class_files", "load_table", "load_tfds", "make_dataset",
    "read_text_file", "stratified_folds", "stratified_split", "build_model", "build_baseline",
    "TruncateTokens", "MaskedGlobalMaxPooling1D", "AdversarialTextClassifier", "train_and_evaluate", "train_test_split_run",
    "cross_validate", "format_table", "load_trained_model", "predict_probabilities",
    "export_text_classifier", "classification_metrics", "confusion_matrix", "macro_f1", "roc_auc",
]
