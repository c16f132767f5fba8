"""Classification metrics computed exactly from labels and probabilities."""

import numpy as np


def confusion_matrix(true_labels, predicted_labels, num_classes):
    """Counts with rows = true class, columns = predicted class."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(f"Received {true_labels.shape} true labels but {predicted_labels.shape} predictions; expected equal shapes.")
    for name, values in (("true_labels", true_labels), ("predicted_labels", predicted_labels)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"Received `{name}` outside [0, {num_classes}); expected class indices.")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true_labels, predicted_labels), 1)
    return matrix


def per_class_scores(matrix):
    """Precision, recall and F1 per class; 0 where a ratio's denominator is 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positives = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, 0.0)
        recall = np.where(actual > 0, true_positives / actual, 0.0)
        denominator = predicted + actual  # = 2 TP + FP + FN
        f1 = np.where(denominator > 0, 2.0 * true_positives / denominator, 0.0)
    return precision, recall, f1


def macro_f1(matrix):
    """Unweighted mean of the per-class F1 scores."""
    return float(np.mean(per_class_scores(matrix)[2]))


def average_ranks(values):
    """Ranks 1..n of `values`, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def roc_auc(binary_labels, scores):
    """Area under the ROC curve from ranks (Mann-Whitney U), exact with ties.

    Equals the probability that a random positive scores above a random
    negative, counting ties as one half.
    """
    binary_labels = np.asarray(binary_labels)
    scores = np.asarray(scores, dtype=np.float64)
    if binary_labels.shape != scores.shape or binary_labels.ndim != 1:
        raise ValueError(f"Received labels of shape {binary_labels.shape} and scores of shape {scores.shape}; expected equal 1-D shapes.")
    if not np.isin(binary_labels, (0, 1)).all():
        raise ValueError("Received labels other than 0 and 1; ROC AUC here is for binary labels.")
    positives = int(binary_labels.sum())
    negatives = len(binary_labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"ROC AUC needs both classes; received {positives} positive and {negatives} negative examples.")
    rank_sum = average_ranks(scores)[binary_labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def classification_metrics(true_labels, probabilities, class_names):
    """Accuracy, macro F1, ROC AUC (binary, with class 1 as positive), confusion matrix, per-class scores."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true_labels = np.asarray(true_labels, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(true_labels), num_classes):
        raise ValueError(
            f"Received probabilities of shape {probabilities.shape}; expected ({len(true_labels)}, {num_classes})."
        )
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(true_labels, predicted, num_classes)
    precision, recall, f1 = per_class_scores(matrix)
    auc = None
    if num_classes == 2 and 0 < true_labels.sum() < len(true_labels):
        auc = roc_auc(true_labels, probabilities[:, 1])
    return {
        "examples": int(len(true_labels)),
        "accuracy": float(np.mean(predicted == true_labels)) if len(true_labels) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "roc_auc": auc,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, matrix.sum(axis=1))
        },
    }
