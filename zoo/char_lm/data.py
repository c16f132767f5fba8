"""Text sources, the character vocabulary, the split, and stream batches.

Truncated back-propagation through time the way char-rnn does it: the text is
cut into `batch_size` contiguous streams, and batch k holds characters
`[k * seq_len, (k + 1) * seq_len)` of every stream, so row b of batch k+1
continues exactly where row b of batch k stopped. A stateful model carries its
recurrent state from one batch to the next and so reads each stream from start
to end, while gradients only flow within a batch.
"""

import dataclasses
import json
import os

import numpy as np

from zoo.errors import UserError, UserFileNotFoundError
from zoo.files import atomic_write_text, read_json, read_text, unreadable

OOV_ID = 0  # every character not seen in the training text
OOV_CHARACTER = ""  # how the out-of-vocabulary id is shown in exports and tables
EMBEDDED_NAME = "pydoc_data.topics"


# ----------------------------------------------------------------------------- sources


def read_text_file(path):
    """The contents of a UTF-8 text file; a clear error for anything else."""
    return read_text(
        path,
        "utf-8",
        kind="text file",
        expected="some text to learn from",
        fix_hint="Convert it to UTF-8 first, e.g. with iconv.",
    )


def embedded_text():
    """English help text shipped with CPython (`pydoc_data.topics`), offline.

    The topics are joined in sorted key order so the corpus is the same on
    every run of the same Python version.
    """
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def tfds_text(name, *, split="train", data_dir=None, download=False, feature="text"):
    """All `feature` strings of a TensorFlow Datasets split, concatenated.

    Nothing is downloaded unless `download=True`.
    """
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise UserError(
            f"Unknown TensorFlow Datasets name {name!r} ({str(error).splitlines()[0]}); "
            "see tfds.list_builders() for the known names."
        ) from None
    except (AssertionError, FileNotFoundError) as error:
        if download:
            raise
        raise UserFileNotFoundError(
            f"The TensorFlow Datasets corpus {name!r} is not prepared in data_dir={data_dir!r} "
            f"({str(error).splitlines()[0]}). Pass --download to fetch it, or --data-dir where it is."
        ) from None
    pieces = []
    for example in tfds.as_numpy(dataset):
        if feature not in example:
            raise UserError(
                f"The TensorFlow Datasets corpus {name!r} has no feature {feature!r}; "
                f"its features are {sorted(example)}."
            )
        value = example[feature]
        pieces.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    text = "".join(pieces)
    if not text:
        raise UserError(f"The TensorFlow Datasets corpus {name!r} (split {split!r}) has no text.")
    return text


@dataclasses.dataclass(frozen=True)
class TextSource:
    """Where the corpus comes from; stored in the work directory as data.json."""

    text_path: str | None = None  # a UTF-8 file
    tfds_name: str | None = None  # a TensorFlow Datasets name
    tfds_split: str = "train"
    data_dir: str | None = None  # TensorFlow Datasets data directory
    download: bool = False  # let TensorFlow Datasets download

    def __post_init__(self):
        if self.text_path and self.tfds_name:
            raise UserError(
                f"Received both --text {self.text_path!r} and --tfds {self.tfds_name!r}; expected at most one source."
            )

    @property
    def description(self):
        if self.text_path:
            return f"file {self.text_path}"
        if self.tfds_name:
            return f"tfds {self.tfds_name}[{self.tfds_split}]"
        return f"embedded {EMBEDDED_NAME}"

    def load(self):
        if self.text_path:
            return read_text_file(self.text_path)
        if self.tfds_name:
            return tfds_text(self.tfds_name, split=self.tfds_split, data_dir=self.data_dir, download=self.download)
        return embedded_text()

    def save(self, path):
        atomic_write_text(path, json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path):
        expected = "the data.json a training run wrote"
        fields = read_json(path, kind="corpus record", expected=expected)
        try:
            return cls(**fields)
        except TypeError as error:  # not an object, or unknown fields
            raise UserError(
                f"The corpus record {path!r} does not describe a corpus ({error}); expected {expected}."
            ) from None


# ----------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Characters to ids and back; id 0 stands for every unseen character.

    Args:
        characters: The known characters, each a one-character string, in id
            order starting at id 1.
    """

    def __init__(self, characters):
        characters = list(characters)
        for character in characters:
            if not isinstance(character, str) or len(character) != 1:
                raise ValueError(f"Vocabulary entries must be single characters; got {character!r}.")
        if len(set(characters)) != len(characters):
            raise ValueError("Vocabulary characters must be unique.")
        self.characters = characters
        self._ids = {character: index + 1 for index, character in enumerate(characters)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def size(self):
        """Number of ids, including the out-of-vocabulary id."""
        return len(self.characters) + 1

    @property
    def tokens(self):
        """The character shown for each id (`OOV_CHARACTER` for id 0)."""
        return [OOV_CHARACTER, *self.characters]

    def encode(self, text):
        get = self._ids.get
        return np.fromiter((get(character, OOV_ID) for character in text), dtype=np.int32, count=len(text))

    def decode(self, ids):
        tokens = self.tokens
        return "".join(tokens[int(index)] for index in ids)

    def save(self, path):
        atomic_write_text(path, json.dumps({"characters": self.characters}, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, path):
        if not os.path.exists(path):
            raise UserFileNotFoundError(f"No vocabulary at {path!r}; train a model in this work directory first.")
        try:
            with open(path, encoding="utf-8") as handle:
                return cls(json.load(handle)["characters"])
        except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
            raise unreadable(
                path, error, kind="vocabulary file", expected="the vocabulary.json a training run wrote"
            ) from error


# ----------------------------------------------------------------------------- split and streams


def split_sizes(length, validation_fraction):
    """(training, validation) character counts of a text of `length` characters."""
    boundary = int(round(length * (1.0 - validation_fraction)))
    return boundary, length - boundary


def split_text(text, validation_fraction):
    """(training, validation) by position: validation is the last fraction."""
    if not 0.0 < validation_fraction < 1.0:
        raise UserError(
            f"Received an invalid value for `validation_fraction`: {validation_fraction}; expected 0 < x < 1."
        )
    boundary, _ = split_sizes(len(text), validation_fraction)
    return text[:boundary], text[boundary:]


def stream_layout(length, batch_size, seq_len):
    """(stream_length, batches) for `length` ids in `batch_size` streams.

    Each stream has `stream_length = length // batch_size` ids; a batch needs
    `seq_len` inputs plus the next id as the last target, so a stream yields
    `(stream_length - 1) // seq_len` batches. The few ids left over at the end
    of each stream are not used.
    """
    stream_length = length // batch_size
    return stream_length, max(0, (stream_length - 1) // seq_len)


def require_one_batch(length, batch_size, seq_len, *, what="text", validation_fraction=None):
    """Raise `UserError` unless `length` ids make at least one batch of `batch_size` streams.

    `what` names the ids in the message ("training text", "validation
    text"); with `validation_fraction`, the message also gives the length
    of a whole text whose part `what` would be long enough.
    """
    if stream_layout(length, batch_size, seq_len)[1] >= 1:
        return
    needed = batch_size * (seq_len + 1)
    message = (
        f"The {what} has {length} characters, shorter than one batch of {batch_size} streams x "
        f"{seq_len + 1} characters ({needed})"
    )
    if validation_fraction is None:
        raise UserError(f"{message}. Use a longer text or lower `batch_size`/`seq_len`.")
    validation = what.startswith("validation")
    share = validation_fraction if validation else 1.0 - validation_fraction
    # A part of L characters holds L * share rounded, so fewer than (needed - 1) / share never suffice;
    # count up from there (each extra character adds 0 or 1 to the part).
    total = max(1, int((needed - 1) / share))
    while split_sizes(total, validation_fraction)[int(validation)] < needed:
        total += 1
    raise UserError(
        f"{message}, so the {what.split()[0]} split is empty. With validation_fraction={validation_fraction:g}, "
        f"use a text of at least {total} characters, or lower `batch_size`/`seq_len`."
    )


def stream_batches(ids, batch_size, seq_len, *, what="text"):
    """Inputs and targets shaped `(batches, batch_size, seq_len)`.

    `inputs[k, b]` is characters `[k * seq_len, (k + 1) * seq_len)` of stream
    b, and `targets[k, b]` the same shifted by one.
    """
    ids = np.asarray(ids, dtype=np.int32)
    require_one_batch(len(ids), batch_size, seq_len, what=what)
    stream_length, batches = stream_layout(len(ids), batch_size, seq_len)
    streams = ids[: stream_length * batch_size].reshape(batch_size, stream_length)
    used = batches * seq_len
    inputs = streams[:, :used].reshape(batch_size, batches, seq_len).transpose(1, 0, 2)
    targets = streams[:, 1 : used + 1].reshape(batch_size, batches, seq_len).transpose(1, 0, 2)
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)


def stream_target_positions(length, batch_size, seq_len):
    """Indices (into the ids) of every target in `stream_batches`, sorted.

    The Markov baselines score exactly these characters, so their numbers
    and the recurrent model's are over the same set.
    """
    stream_length, batches = stream_layout(length, batch_size, seq_len)
    offsets = np.arange(1, batches * seq_len + 1)
    return (np.arange(batch_size)[:, None] * stream_length + offsets[None, :]).reshape(-1)


def to_dataset(inputs, targets):
    """A `tf.data.Dataset` of the batches in order (never shuffled: order is the point)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((inputs, targets))


@dataclasses.dataclass
class CorpusSplit:
    """Everything the training and the baselines need from one corpus."""

    vocabulary: Vocabulary
    training_ids: np.ndarray
    validation_ids: np.ndarray
    total_characters: int
    validation_unknown: int  # validation characters never seen in training


def prepare_corpus(text, validation_fraction, vocabulary=None):
    """Split `text`, build the vocabulary from the training part, encode both."""
    if not isinstance(text, str):
        raise TypeError(f"Received a corpus of type {type(text).__name__}; expected str.")
    if not text:
        raise UserError("The corpus is empty; expected some text to learn from.")
    training_text, validation_text = split_text(text, validation_fraction)
    if not training_text or not validation_text:
        raise UserError(
            f"The corpus has {len(text)} characters, too few to split with validation_fraction={validation_fraction}."
        )
    vocabulary = vocabulary or Vocabulary.from_text(training_text)
    validation_ids = vocabulary.encode(validation_text)
    return CorpusSplit(
        vocabulary=vocabulary,
        training_ids=vocabulary.encode(training_text),
        validation_ids=validation_ids,
        total_characters=len(text),
        validation_unknown=int(np.sum(validation_ids == OOV_ID)),
    )
