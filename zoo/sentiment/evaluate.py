"""Scoring the sentiment models: exact classification metrics, per-model reports, the results table.

The metrics are computed exactly from labels and probabilities (no Keras
metric state), so a fold's figures do not depend on batching.
"""

import os

import numpy as np

from zoo import checkpoints
from zoo.errors import UserFileNotFoundError
from zoo.sentiment.data import make_dataset

BASELINE_NAME = "baseline"


MODEL_FILE = "model.keras"


SUMMARY_METRICS = ("accuracy", "macro_f1", "roc_auc")


def confusion_matrix(true_labels, predicted_labels, num_classes):
    """Counts with rows = true class, columns = predicted class."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(
            f"Received {true_labels.shape} true labels but {predicted_labels.shape} predictions; expected equal shapes."
        )
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
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
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
        raise ValueError(
            f"Received labels of shape {binary_labels.shape} and scores of shape {scores.shape}; expected equal 1-D shapes."
        )
    if not np.isin(binary_labels, (0, 1)).all():
        raise ValueError("Received labels other than 0 and 1; ROC AUC here is for binary labels.")
    positives = int(binary_labels.sum())
    negatives = len(binary_labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"ROC AUC needs both classes; received {positives} positive and {negatives} negative examples."
        )
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


def predict_probabilities(model, dataset, batch_size=256):
    """Class probabilities of `model` for every text of `dataset`, in order."""
    return np.asarray(model.predict(make_dataset(dataset, batch_size, with_labels=False), verbose=0))


def report_model(report, name, model, summary, members, single_name, test, log):
    """Score `model` on `test` into `report["models"][name]`; for an ensemble, also every member alone.

    Member 1 of an ensemble is exactly the single model of its config (same
    seed, same split), so its figures are also reported as `single_name`.
    """
    if len(members) > 1:
        member_metrics = [
            classification_metrics(test.labels, predict_probabilities(member, test), test.class_names)
            for member in members
        ]
        summary["member_accuracies"] = [entry["accuracy"] for entry in member_metrics]
        report["models"][single_name] = {
            **member_metrics[0],
            "ensemble_member": 1,
            "parameters": int(members[0].count_params()),
        }
        log(f"{single_name} (member 1 alone): test accuracy {member_metrics[0]['accuracy']:.4f}")
    metrics = classification_metrics(test.labels, predict_probabilities(model, test), test.class_names)
    report["models"][name] = {**metrics, **summary, "parameters": int(model.count_params())}
    log(f"{name}: test accuracy {metrics['accuracy']:.4f}")


def summarize(fold_reports):
    """Mean and sample standard deviation of each metric over folds, per model."""
    names = []
    for fold_report in fold_reports:
        names += [name for name in fold_report["models"] if name not in names]
    summary = {}
    for name in names:
        entry = {"folds": sum(name in report["models"] for report in fold_reports)}
        for metric in SUMMARY_METRICS:
            values = [
                report["models"][name][metric]
                for report in fold_reports
                if name in report["models"] and report["models"][name][metric] is not None
            ]
            if values:
                entry[metric] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "values": [float(value) for value in values],
                }
        members = [
            value
            for report in fold_reports
            if name in report["models"]
            for value in report["models"][name].get("member_accuracies", [])
        ]
        if members:
            # Every member of every fold alone: the single-model accuracy of the ensemble's config.
            entry["member_accuracy"] = {
                "mean": float(np.mean(members)),
                "std": float(np.std(members, ddof=1)) if len(members) > 1 else 0.0,
                "count": len(members),
            }
        summary[name] = entry
    return summary


def format_table(summary_or_report, reference=None):
    """A plain-text table of the models' metrics (mean ± std over folds, or single values)."""
    names = list(summary_or_report["summary"] if "summary" in summary_or_report else summary_or_report["models"])
    width = max([12, *(len(name) for name in [*names, *(reference or {})])])
    lines = [f"{'model':<{width}} {'folds':>5} {'accuracy':>17} {'macro F1':>17} {'ROC AUC':>17}"]

    def cell(entry):
        if entry is None:
            return f"{'-':>17}"
        if isinstance(entry, dict):
            return f"{entry['mean'] * 100:>9.2f} ± {entry['std'] * 100:<5.2f}"
        return f"{entry * 100:>17.2f}"

    if "summary" in summary_or_report:
        rows = [(name, entry["folds"], entry) for name, entry in summary_or_report["summary"].items()]
    else:
        rows = [(name, 1, entry) for name, entry in summary_or_report["models"].items()]
    for name, fold_count, entry in rows:
        lines.append(
            f"{name:<{width}} {fold_count:>5} " + " ".join(cell(entry.get(metric)) for metric in SUMMARY_METRICS)
        )
    for name, _, entry in rows:
        if "member_accuracy" in entry:
            members = entry["member_accuracy"]
            lines.append(
                f"{name}: its {members['count']} members alone reach {members['mean'] * 100:.2f} ± "
                f"{members['std'] * 100:.2f} % accuracy"
            )
    for label, accuracy in (reference or {}).items():
        lines.append(f"{label:<{width}} {'':>5} {accuracy:>17.2f} {'(published)':>17}")
    return "\n".join(lines)


def _later_epoch_seconds(entry):
    """The seconds of every epoch after the first (which includes tracing) of a model's training, every member's."""
    seconds = entry.get("epoch_seconds") or []
    runs = seconds if seconds and isinstance(seconds[0], list) else [seconds]
    return [value for run in runs for value in run[1:]]


def _mean_std(values):
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)


def compare_implementations(report, pairs):
    """Ours against Keras's, per pair `(label, our model's name, Keras's model's name)` that both trained.

    `report` is a cross-validation's (`folds`) or one split's. Per pair:
    the folds where both trained, the test accuracy of each (mean and
    standard deviation over those folds) and the paired difference keras
    - ours, the median seconds per epoch (training and validation, every
    epoch after a training's first, pooled over folds) of each and their
    ratio keras / ours, and the mean training seconds per fold of each.
    """
    folds = report["folds"] if "folds" in report else [report]
    rows = []
    for label, ours, theirs in pairs:
        both = [fold["models"] for fold in folds if ours in fold["models"] and theirs in fold["models"]]
        if not both:
            continue
        row = {"model": label, "ours": ours, "keras": theirs, "folds": len(both)}
        for side, name in (("ours", ours), ("keras", theirs)):
            row[f"{side}_accuracy"] = _mean_std([models[name]["accuracy"] for models in both])
            later = [value for models in both for value in _later_epoch_seconds(models[name])]
            row[f"{side}_seconds_per_epoch"] = float(np.median(later)) if later else None
            row[f"{side}_seconds_per_fold"] = float(np.mean([models[name]["train_seconds"] for models in both]))
            row[f"{side}_epochs"] = float(np.mean([np.sum(models[name]["epochs_run"]) for models in both]))
        row["accuracy_difference"] = _mean_std(
            [models[theirs]["accuracy"] - models[ours]["accuracy"] for models in both]
        )
        per_epoch = row["ours_seconds_per_epoch"], row["keras_seconds_per_epoch"]
        row["epoch_time_ratio"] = per_epoch[1] / per_epoch[0] if all(per_epoch) else None
        row["fold_time_ratio"] = row["keras_seconds_per_fold"] / row["ours_seconds_per_fold"]
        rows.append(row)
    return rows


def format_comparison(rows):
    """The rows of `compare_implementations` as a plain-text table (accuracy in %)."""
    header = (
        f"{'model':<14}{'folds':>6}{'accuracy ours':>16}{'keras':>15}{'keras - ours':>15}"
        f"{'s/epoch ours':>14}{'keras':>7}{'keras/ours':>12}{'s/fold ours':>13}{'keras':>7}{'keras/ours':>12}"
    )
    lines = [header, "-" * len(header)]

    def accuracy(pair, sign=""):
        return f"{pair[0] * 100:{sign}.2f} ± {pair[1] * 100:.2f}"

    def seconds(value, digits):
        return f"{value:.{digits}f}" if value is not None else "-"

    for row in rows:
        epoch_ratio = f"{row['epoch_time_ratio']:.2f}x" if row["epoch_time_ratio"] is not None else "-"
        lines.append(
            f"{row['model']:<14}{row['folds']:>6}{accuracy(row['ours_accuracy']):>16}{accuracy(row['keras_accuracy']):>15}"
            f"{accuracy(row['accuracy_difference'], '+'):>15}{seconds(row['ours_seconds_per_epoch'], 2):>14}"
            f"{seconds(row['keras_seconds_per_epoch'], 2):>7}{epoch_ratio:>12}{row['ours_seconds_per_fold']:>13.1f}"
            f"{row['keras_seconds_per_fold']:>7.1f}{row['fold_time_ratio']:>11.2f}x"
        )
    return "\n".join(lines)


def load_trained_model(workdir, baseline=False):
    """The evaluated model of a training run in `workdir` (recurrent, or the baseline)."""
    path = os.path.join(workdir, BASELINE_NAME, MODEL_FILE) if baseline else os.path.join(workdir, MODEL_FILE)
    if not os.path.exists(path):
        raise UserFileNotFoundError(
            f"No trained model at {path!r}; run `python -m recipes.sentiment train --workdir {workdir} ...` "
            "without --folds first (cross-validation keeps only per-fold models)."
        )
    return checkpoints.load_model(path)
