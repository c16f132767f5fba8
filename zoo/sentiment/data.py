"""Labelled text: loading from files or TensorFlow Datasets, stratified splits, tf.data.

Sources:

- a table: CSV, TSV or JSON Lines with a text column and a label column;
- one file per class, one example per line (the Movie Review sentence
  polarity files `rt-polarity.pos` / `rt-polarity.neg` have this shape);
- a TensorFlow Datasets name such as `imdb_reviews`, read from `data_dir`
  and downloaded only when asked.

Files are decoded strictly: a byte that is not valid in the given encoding is
an error that names the file, the byte offset and the line, rather than a
silently replaced character.
"""

import csv
import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf

from zoo.config import require_int
from zoo.errors import UserError, UserFileNotFoundError
from zoo.files import read_text, unreadable

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels that index `class_names`."""

    texts: tuple  # of str
    labels: np.ndarray  # int64, shape (n,)
    class_names: tuple  # of str; label k means class_names[k]
    source: str = ""  # where the examples came from, for messages

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(f"Received {len(self.texts)} texts but {len(self.labels)} labels; expected equal counts.")

    def __len__(self):
        return len(self.texts)

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return TextDataset(tuple(self.texts[i] for i in indices), self.labels[indices], self.class_names, self.source)

    def class_counts(self):
        return {name: int(np.sum(self.labels == index)) for index, name in enumerate(self.class_names)}

    def require_classes(self, minimum=2):
        """Raise unless at least `minimum` classes have examples (training needs two)."""
        present = [name for name, count in self.class_counts().items() if count]
        if len(present) < minimum:
            raise UserError(
                f"The data from {self.source or 'the given source'} has examples of only {len(present)} class(es) "
                f"({', '.join(present) or 'none'}); expected at least {minimum} to train a classifier."
            )

    def require_text(self):
        """Raise unless some text holds more than white space (there would be no word to learn)."""
        if not any(text.strip() for text in self.texts):
            raise UserError(
                f"Every one of the {len(self.texts)} texts from {self.source or 'the given source'} is empty or "
                "white space; expected texts with words to learn from (check the text column or the files)."
            )


# ----------------------------------------------------------------- decoding
def read_text_file(path, encoding="utf-8"):
    """The contents of `path` decoded strictly; undecodable bytes are a `UserError` naming the offset."""
    return read_text(
        path,
        encoding,
        expected="labelled examples",
        fix_hint="If the file uses another encoding, pass it with --encoding (for example --encoding cp1252 "
        "or --encoding latin-1).",
    )


# ------------------------------------------------------------------- labels
def _natural_order(values):
    """Sort label values numerically when they are all integers, else as text."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def _index_labels(raw_labels, class_names, source, positions):
    """Map label strings to indices of `class_names` (inferred and sorted when None)."""
    if class_names is None:
        class_names = tuple(_natural_order(set(raw_labels)))
    else:
        class_names = tuple(str(name) for name in class_names)
        if len(set(class_names)) != len(class_names):
            raise UserError(f"Received duplicate class names in `labels`: {list(class_names)}.")
        known = set(class_names)
        for raw, position in zip(raw_labels, positions):
            if raw not in known:
                raise UserError(
                    f"Unknown label value {raw!r} at {position} of {source}; expected one of {list(class_names)} "
                    "(the --labels given, or the classes the model was trained on)."
                )
    index = {name: position for position, name in enumerate(class_names)}
    return np.array([index[raw] for raw in raw_labels], dtype=np.int64), class_names


def _label_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ------------------------------------------------------------------- tables
def table_format(path, file_format=None):
    if file_format:
        if file_format not in ("csv", "tsv", "jsonl"):
            raise UserError(f"Received an invalid `format` {file_format!r}; expected csv, tsv or jsonl.")
        return file_format
    extension = os.path.splitext(path)[1].lower()
    if extension not in TABLE_FORMATS:
        raise UserError(
            f"Cannot tell the format of {path!r} from its extension {extension!r}; expected one of "
            f"{sorted(TABLE_FORMATS)} or an explicit --format csv|tsv|jsonl."
        )
    return TABLE_FORMATS[extension]


def _table_rows(path, text, file_format):
    """Yield (position, row dict, column names) for each example."""
    if file_format == "jsonl":
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"Line {line_number} of {path!r} is not valid JSON: {error.msg}.") from None
            if not isinstance(row, dict):
                raise UserError(
                    f"Line {line_number} of {path!r} holds a JSON {type(row).__name__}; expected an object "
                    "with a text field and a label field."
                )
            yield f"line {line_number}", row, sorted(row)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if file_format == "csv" else "\t")
    columns = reader.fieldnames or []
    for row in reader:
        # The header is line 1; a quoted field may span lines, so use the reader's count.
        position = f"line {reader.line_num}"
        # DictReader puts surplus fields in a list under None and fills missing ones with None.
        surplus = row.pop(None, [])
        if surplus or any(value is None for value in row.values()):
            fields = sum(value is not None for value in row.values()) + len(surplus)
            raise UserError(
                f"Row at {position} of {path!r} has {fields} fields where the header has "
                f"{len(columns)}; expected one value per column."
            )
        yield position, row, columns


def load_table(path, text_column="text", label_column="label", file_format=None, encoding="utf-8", class_names=None):
    """Read a CSV, TSV or JSON Lines file of labelled texts.

    Args:
        path: The file. Its format comes from the extension (.csv, .tsv,
            .jsonl) unless `file_format` is given.
        text_column, label_column: Column (or JSON field) names.
        encoding: Text encoding of the file; undecodable bytes are an error.
        class_names: Optional ordered class names; a label outside them is
            an error. By default the sorted distinct label values.
    """
    file_format = table_format(path, file_format)
    text = read_text_file(path, encoding)
    texts, raw_labels, positions = [], [], []
    try:
        rows = list(_table_rows(path, text, file_format))
    except csv.Error as error:
        raise unreadable(path, error, kind=f"{file_format.upper()} file", expected="one example per row") from error
    for position, row, columns in rows:
        for role, column in (("text", text_column), ("label", label_column)):
            if column not in row:
                raise UserError(
                    f"The {role} column {column!r} is missing from {path!r} ({position}); available columns: "
                    f"{columns}. Choose one with --{role}-column."
                )
        value, label = row[text_column], row[label_column]
        if not isinstance(value, str):
            raise UserError(
                f"The text at {position} of {path!r} is a {type(value).__name__} ({value!r}); expected a string."
            )
        if label is None or _label_text(label) == "":
            raise UserError(f"The label at {position} of {path!r} is empty; expected a class label.")
        texts.append(value)
        raw_labels.append(_label_text(label))
        positions.append(position)
    if not texts:
        raise UserError(f"The file {path!r} has a header but no examples.")
    labels, class_names = _index_labels(raw_labels, class_names, repr(path), positions)
    return TextDataset(tuple(texts), labels, class_names, source=path)


def load_class_files(files, encoding="utf-8", class_names=None):
    """Read one file per class, one example per non-blank line.

    Args:
        files: Sequence of `(class_name, path)` pairs.
        encoding: Text encoding of the files.
        class_names: Optional order of the classes; every given class must be
            in it. By default the sorted class names.
    """
    files = list(files)
    if not files:
        raise UserError("Received no class files; expected --class-file NAME=PATH at least twice.")
    names = [name for name, _ in files]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UserError(
            f"Received more than one --class-file for the classes {duplicated}; expected one file per class."
        )
    texts, raw_labels, positions = [], [], []
    for name, path in files:
        lines = [line.strip() for line in read_text_file(path, encoding).splitlines()]
        lines = [line for line in lines if line]
        texts.extend(lines)
        raw_labels.extend([name] * len(lines))
        positions.extend([f"--class-file {name}={path}"] * len(lines))
    labels, class_names = _index_labels(raw_labels, class_names, "the class files", positions)
    return TextDataset(tuple(texts), labels, class_names, source=", ".join(path for _, path in files))


def load_tfds(
    name="imdb_reviews",
    data_dir=None,
    download=False,
    split="train",
    text_key="text",
    label_key="label",
    class_names=None,
):
    """Read a TensorFlow Datasets text classification set into memory.

    Nothing is downloaded unless `download=True`; without it the data must
    already be prepared under `data_dir` (default ~/tensorflow_datasets).
    """
    import tensorflow_datasets as tfds

    try:
        dataset, info = tfds.load(name, split=split, data_dir=data_dir, download=download, with_info=True)
    except Exception as error:  # tfds raises several types for "not prepared" (AssertionError, DatasetNotFoundError)
        if download:
            raise
        raise UserFileNotFoundError(
            f"TensorFlow Datasets could not load {name!r} (split {split!r}) from data_dir={data_dir!r} without "
            f"downloading: {str(error).splitlines()[0] if str(error) else type(error).__name__}. "
            "Pass --download to fetch and prepare it (once), or --data-dir pointing at a prepared copy."
        ) from None
    features = info.features
    for key in (text_key, label_key):
        if key not in features:
            raise UserError(
                f"The TFDS dataset {name!r} has no feature {key!r}; its features are {sorted(features.keys())}."
            )
    label_feature = features[label_key]
    names = getattr(label_feature, "names", None)
    texts, raw_labels = [], []
    for example in tfds.as_numpy(dataset):
        value = example[text_key]
        texts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        label = int(example[label_key])
        raw_labels.append(names[label] if names else str(label))
    if not texts:
        raise UserError(f"The TFDS split {name}[{split}] has no examples.")
    positions = [f"example {index}" for index in range(len(texts))]
    labels, class_names = _index_labels(
        raw_labels, class_names or (tuple(names) if names else None), f"tfds {name}[{split}]", positions
    )
    return TextDataset(tuple(texts), labels, class_names, source=f"tfds:{name}[{split}]")


# ------------------------------------------------------------------- splits
def stratified_split(labels, fraction, seed, part=0):
    """Indices `(kept, held_out)`: `fraction` of each class held out, at least one, seeded.

    Every class needs two examples so that both sides see it. `part=k` holds
    out the k-th of disjoint slices of that size from the same seeded
    shuffle (`part=0` is the default split), so parts 0, 1, ... never share
    a held-out example; every class must keep at least one example.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"Received an invalid value for `fraction`: {fraction!r}; expected a number in (0, 1).")
    require_int("part", part, minimum=0, expected="an integer >= 0")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise UserError(
                f"Class index {int(label)} has {len(members)} example(s); a stratified split needs at least 2 per class."
            )
        rng.shuffle(members)
        count = min(max(1, int(round(len(members) * fraction))), len(members) - 1)
        start = part * count
        if start + count > len(members) - 1:
            raise UserError(
                f"Received `part={part}` with `fraction={fraction}`: class index {int(label)} has {len(members)} examples, "
                f"too few for {part + 1} disjoint held-out slices of {count} that leave one example kept; expected "
                f"`(part + 1) * fraction` below 1."
            )
        held.append(members[start : start + count])
        kept.append(np.concatenate([members[:start], members[start + count :]]))
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_folds(labels, folds, seed):
    """The held-out indices of each of `folds` stratified folds, seeded.

    Each class is shuffled and dealt round-robin over the folds, so every
    fold has the class ratios of the whole to within one example per class.
    """
    require_int("folds", folds, minimum=2)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < folds:
            raise UserError(
                f"Class index {int(label)} has {len(members)} example(s); {folds}-fold cross-validation needs at "
                f"least {folds} per class."
            )
        rng.shuffle(members)
        # Start each class where the last one stopped, so leftovers spread over the folds.
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return [np.flatnonzero(assignment == fold) for fold in range(folds)]


# ------------------------------------------------------------------ tf.data
def make_dataset(dataset, batch_size, shuffle=False, seed=0, with_labels=True, bucket_by_length=False):
    """A batched `tf.data.Dataset` of (string texts, int labels).

    With `bucket_by_length` (training only, with `shuffle`), every epoch
    shuffles the texts, sorts each window of 20 batches' worth by word count,
    cuts the window into batches and shuffles the batches. Each batch then
    holds texts of similar length, so the model pads (and runs its recurrent
    loop over) far fewer empty steps, while every text is still seen once per
    epoch in a seeded random order.
    """
    if bucket_by_length and not shuffle:
        raise ValueError(
            "Received `bucket_by_length=True` with `shuffle=False`; bucketing is for shuffled training batches."
        )
    texts = tf.constant(list(dataset.texts), dtype=tf.string)
    labels = tf.constant(dataset.labels, dtype=tf.int32)
    if bucket_by_length:
        return _length_bucketed(texts, labels, batch_size, seed, with_labels)
    if with_labels:
        data = tf.data.Dataset.from_tensor_slices((texts, labels))
    else:
        data = tf.data.Dataset.from_tensor_slices(texts)
    if shuffle:
        data = data.shuffle(len(dataset), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


BUCKET_WINDOW_BATCHES = 20


def _length_bucketed(texts, labels, batch_size, seed, with_labels):
    count = int(texts.shape[0])
    window = batch_size * BUCKET_WINDOW_BATCHES
    # Whitespace word counts: what TextVectorization's default split yields, up to punctuation stripping.
    lengths = tf.cast(tf.strings.split(texts).row_lengths(), tf.int32)
    data = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    data = data.batch(window).map(
        lambda positions: tf.gather(positions, tf.argsort(tf.gather(lengths, positions), stable=True))
    )
    data = data.unbatch().batch(batch_size)
    data = data.shuffle(BUCKET_WINDOW_BATCHES * 4, seed=seed + 1, reshuffle_each_iteration=True)
    # Windows hold whole batches, so the count is known; telling tf.data lets Keras see the epoch's length.
    batches = (count // window) * BUCKET_WINDOW_BATCHES + -(-(count % window) // batch_size)
    data = data.apply(tf.data.experimental.assert_cardinality(batches))
    if with_labels:
        data = data.map(lambda positions: (tf.gather(texts, positions), tf.gather(labels, positions)))
    else:
        data = data.map(lambda positions: tf.gather(texts, positions))
    return data.prefetch(tf.data.AUTOTUNE)
