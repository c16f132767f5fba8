"""Markov (n-gram) character models: the baselines a recurrent model must beat.

An order-k model predicts a character from the k characters before it. The
probabilities are interpolated Kneser-Ney (Chen and Goodman, 1998, "An
empirical study of smoothing techniques for language modeling"):

    P_j(w | h_j) = max(c_j(h_j w) - D_j, 0) / c_j(h_j .)
                   + D_j * N_j(h_j .) / c_j(h_j .) * P_{j-1}(w | h_{j-1})

where h_j is the last j characters, c_k are raw counts at the model's own
order, c_j (j < k) are continuation counts (how many different characters
precede h_j w), N_j(h_j .) is the number of different characters seen after
h_j, D_j = n1 / (n1 + 2 n2) is one discount per level from the counts of
counts, and P_{-1} is uniform over the vocabulary (so unseen characters,
including the out-of-vocabulary id, keep some probability). A context never
seen at level j passes P_{j-1} through unchanged.

Order 0 is the unigram model (raw counts, interpolated with uniform).
"""

import collections
import math

import numpy as np

from zoo.char_lm import data as data_lib
from zoo.config import require_int

# Ids are mapped to characters of a private-use block so n-grams are plain
# substrings (fast dictionary keys), whatever characters the corpus holds.
_ID_OFFSET = 0xF0000


def _encode(ids):
    return "".join(chr(_ID_OFFSET + int(index)) for index in ids)


def _discount(counts):
    counts_of_counts = collections.Counter(counts.values())
    once, twice = counts_of_counts.get(1, 0), counts_of_counts.get(2, 0)
    if once == 0:
        return 0.5  # no singletons: any fixed discount in (0, 1) keeps mass for the lower order
    return once / (once + 2.0 * twice)


class _Level:
    """Counts of (context, next) pairs at one context length."""

    def __init__(self, ngram_counts, context_length):
        self.context_length = context_length
        self.counts = ngram_counts
        self.discount = _discount(ngram_counts)
        self.context_totals = collections.Counter()
        self.context_types = collections.Counter()
        for ngram, count in ngram_counts.items():
            context = ngram[:-1]
            self.context_totals[context] += count
            self.context_types[context] += 1


class KneserNeyMarkov:
    """Interpolated Kneser-Ney character model of one order.

    Args:
        training_ids: 1-D sequence of character ids to count.
        order: Number of preceding characters the model conditions on.
        vocabulary_size: Number of ids the model predicts over.
    """

    def __init__(self, training_ids, order, vocabulary_size):
        require_int("order", order, minimum=0)
        if vocabulary_size < 1:
            raise ValueError(f"Received an invalid value for `vocabulary_size`: {vocabulary_size!r}; expected >= 1.")
        text = _encode(training_ids)
        if not text:
            raise ValueError("Received empty `training_ids`; expected characters to count.")
        self.order = order
        self.vocabulary_size = vocabulary_size
        raw = collections.Counter(text[start : start + order + 1] for start in range(len(text) - order))
        self.levels = [None] * (order + 1)
        self.levels[order] = _Level(raw, order)
        upper = raw
        for context_length in range(order - 1, -1, -1):
            # Continuation count of g: how many different characters precede it.
            continuation = collections.Counter(ngram[1:] for ngram in upper)
            self.levels[context_length] = _Level(continuation, context_length)
            upper = continuation

    def probability(self, history, character):
        """P(character | history), both in the encoded form (strings)."""
        probability = 1.0 / self.vocabulary_size
        for level in self.levels:
            if level.context_length > len(history):
                break
            context = history[len(history) - level.context_length :] if level.context_length else ""
            total = level.context_totals.get(context, 0)
            if total == 0:
                continue
            count = level.counts.get(context + character, 0)
            probability = (
                max(count - level.discount, 0.0) / total
                + level.discount * level.context_types[context] / total * probability
            )
        return probability

    def distribution(self, history_ids):
        """P(w | history) for every id w, as a float64 array (sums to 1)."""
        history = _encode(history_ids)
        return np.array([self.probability(history, chr(_ID_OFFSET + index)) for index in range(self.vocabulary_size)])

    def mean_nats(self, ids, positions):
        """Mean -log P(ids[p] | ids[p - order : p]) over `positions`.

        The history is whatever precedes p in `ids` (shorter at the start).
        """
        text = _encode(ids)
        total = 0.0
        for position in np.asarray(positions, dtype=np.int64):
            position = int(position)
            history = text[max(0, position - self.order) : position]
            total -= math.log(self.probability(history, text[position]))
        return total / max(len(positions), 1)


def markov_table(training_ids, evaluation_ids, positions, orders, vocabulary_size):
    """Validation nats/char of each order's model, as a list of dicts.

    Args:
        training_ids: Ids the models count.
        evaluation_ids: Ids whose `positions` are scored; the history of a
            position is whatever precedes it in `evaluation_ids`.
        positions: Indices into `evaluation_ids` to score.
        orders: Model orders.
        vocabulary_size: Number of ids, including the out-of-vocabulary id.
    """
    rows = []
    for order in orders:
        model = KneserNeyMarkov(training_ids, order, vocabulary_size)
        nats = model.mean_nats(evaluation_ids, positions)
        rows.append(
            {
                "model": f"markov order {order} (interpolated Kneser-Ney)",
                "order": order,
                "nats_per_char": nats,
                "bits_per_char": nats / math.log(2.0),
                "perplexity": math.exp(nats),
            }
        )
    return rows


def baseline_table(corpus, config):
    """Markov baselines on exactly the validation characters the model is scored on.

    A validation text too short for one batch of streams is a `UserError`
    saying how long the text must be (there would be nothing to score).
    """
    data_lib.require_one_batch(
        len(corpus.validation_ids),
        config.batch_size,
        config.seq_len,
        what="validation text",
        validation_fraction=config.validation_fraction,
    )
    positions = data_lib.stream_target_positions(len(corpus.validation_ids), config.batch_size, config.seq_len)
    # Histories reach back into the training text, as they would in the running text.
    joined = np.concatenate([corpus.training_ids, corpus.validation_ids])
    return markov_table(
        corpus.training_ids, joined, positions + len(corpus.training_ids), config.markov_orders, corpus.vocabulary.size
    )
