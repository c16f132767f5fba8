"""Sentiment (text) classification: config, data, baseline, recurrent models, training, evaluation, export.

Importing this package registers the model builders `sentiment/rnn`,
`sentiment/lstm` and `sentiment/gru` (see `zoo.registry`).
"""

from zoo.sentiment.baselines import build_baseline
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
from zoo.sentiment.evaluate import (
    classification_metrics,
    compare_implementations,
    confusion_matrix,
    format_comparison,
    format_table,
    load_trained_model,
    macro_f1,
    predict_probabilities,
    roc_auc,
)
from zoo.sentiment.export import (
    export_text_classifier,
    export_text_classifier_litert,
    export_text_classifier_onnx,
)
from zoo.sentiment.model import (
    AdversarialTextClassifier,
    MaskedGlobalMaxPooling1D,
    TruncateTokens,
    build_model,
)
from zoo.sentiment.train import cross_validate, train_and_evaluate, train_test_split_run

__all__ = [
    "SentimentConfig",
    "TextDataset",
    "load_class_files",
    "load_table",
    "load_tfds",
    "make_dataset",
    "read_text_file",
    "stratified_folds",
    "stratified_split",
    "build_model",
    "build_baseline",
    "TruncateTokens",
    "MaskedGlobalMaxPooling1D",
    "AdversarialTextClassifier",
    "train_and_evaluate",
    "train_test_split_run",
    "cross_validate",
    "format_table",
    "compare_implementations",
    "format_comparison",
    "load_trained_model",
    "predict_probabilities",
    "export_text_classifier",
    "export_text_classifier_litert",
    "export_text_classifier_onnx",
    "classification_metrics",
    "confusion_matrix",
    "macro_f1",
    "roc_auc",
]
