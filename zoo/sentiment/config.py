"""The sentiment recipe's run configuration."""

import dataclasses
from typing import Literal

from zoo import cells
from zoo.config import (
    DIVERGENCE_FACTOR,
    require_choice,
    require_divergence_factor,
    require_float,
    require_int,
    require_seed,
)
from zoo.errors import UserError

MONITORS = ("val_loss", "val_accuracy")
MEMBER_VALIDATION = ("shared", "disjoint")
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", "none")


@dataclasses.dataclass
class SentimentConfig:
    # --- recurrent model -------------------------------------------------
    cell: str = "lstm"  # recurrent cell, from `layers`: rnn, lstm, gru, layernorm_lstm, ... (see zoo.cells)
    units: int = 64  # hidden units per direction and layer
    proj_units: int = 0  # projection_lstm only: size of its projected output and state; 0 = units // 2
    implementation: str = "ours"  # recurrent layers: ours (layers/) or keras (Keras's; rnn, lstm, gru only)
    num_layers: int = 1  # stacked recurrent layers
    bidirectional: bool = True  # wrap each recurrent layer in keras.layers.Bidirectional
    pooling: Literal["last", "max", "mean"] = (
        "max"  # how the sequence of hidden states becomes one vector (padding excluded)
    )
    embedding_dim: int = 64  # word embedding size (trained from scratch, no pretrained vectors; 64 matched 128 in 10-fold CV on rt-polarity)
    dropout: float = 0.5  # dropout on the embeddings and before the classifier
    recurrent_dropout: float = 0.0  # dropout on the recurrent state inside each cell
    word_dropout: float = (
        0.0  # training only: each word the recurrent layers see becomes out-of-vocabulary with this probability
    )
    spatial_dropout: float = 0.0  # training only: drops whole embedding dimensions for a whole text (SpatialDropout1D)
    adversarial: float = 0.0  # training only: also fit the word embeddings moved this fraction of their norm against the model (0 disables)
    ngram_head: bool = (
        False  # hybrid: add a linear bag-of-n-grams logit (baseline features) to the recurrent logit, trained jointly
    )
    ngram_learning_rate: float | None = None  # Adam step size of the hybrid's n-gram term (None: learning_rate)
    ensemble: int = 1  # members trained with different seeds; the model averages their probabilities
    member_validation: Literal["shared", "disjoint"] = (
        "shared"  # ensemble members stop early on the same held-out split, or each on its own disjoint slice (so each trains on data the others held out)
    )
    # --- text vectorisation (shared with the baseline) ---------------------
    vocabulary_size: int = 20000  # most frequent training tokens kept (plus padding and out-of-vocabulary)
    max_length: int = 64  # tokens kept per text; batches are padded only to their longest text
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"] = (
        "lower"  # TextVectorization standardisation
    )
    # --- training ---------------------------------------------------------
    epochs: int = 10  # upper bound; early stopping on the inner validation split usually ends sooner
    patience: int = 2  # epochs without improvement of `monitor` before stopping
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"  # validation metric for early stopping and the kept epoch
    bucket_by_length: bool = True  # training batches group texts of similar length (less padding, faster)
    batch_size: int = 50  # examples per step
    learning_rate: float = 0.001  # Adam step size
    clip_norm: float = 5.0  # gradient norm clipping (0 disables)
    validation_fraction: float = 0.1  # share of the training data held out (stratified) for early stopping
    test_fraction: float = 0.1  # share held out for the test set when not cross-validating
    max_minutes: float | None = None  # wall-clock budget per training run (None: unlimited)
    divergence_factor: float = DIVERGENCE_FACTOR  # stop once the loss passes this multiple of its first value (0: off)
    # --- bag-of-n-grams baseline ----------------------------------------------
    baseline_ngrams: int = 2  # n-gram order of the baseline features (2: unigrams and bigrams)
    baseline_output_mode: Literal["multi_hot", "count", "tf_idf"] = (
        "multi_hot"  # baseline features: binary, counts, or TF-IDF (dense, slow)
    )
    baseline_vocabulary_size: int = 100000  # most frequent n-grams kept by the baseline
    baseline_l2: float = 0.0001  # L2 penalty on the logistic regression weights
    baseline_learning_rate: float = 0.003  # Adam step size for the baseline
    baseline_epochs: int = 30  # upper bound; early stopping as for the recurrent model
    baseline_ensemble: int = (
        1  # baseline members averaged, on the splits `member_validation` gives (a control for recurrent ensembles)
    )
    seed: int = 0  # seeds splits, initialisation, dropout and shuffling

    def validate(self):
        """Raise `UserError` naming the first field with an invalid value."""
        require_divergence_factor(self.divergence_factor)
        positive = (
            "units",
            "num_layers",
            "ensemble",
            "embedding_dim",
            "vocabulary_size",
            "max_length",
            "epochs",
            "patience",
            "batch_size",
            "baseline_ngrams",
            "baseline_vocabulary_size",
            "baseline_epochs",
            "baseline_ensemble",
        )
        for name in positive:
            require_int(name, getattr(self, name))
        if self.vocabulary_size < 3:
            raise UserError(
                f"Received an invalid value for `vocabulary_size`: {self.vocabulary_size}; expected at least 3 "
                "(padding, out-of-vocabulary and one word)."
            )
        require_seed("seed", self.seed)
        for name in ("dropout", "recurrent_dropout", "word_dropout", "spatial_dropout", "adversarial"):
            meaning = " (a fraction of each text's embedding norm)" if name == "adversarial" else ""
            require_float(name, getattr(self, name), minimum=0.0, below=1.0, expected=f"a number in [0, 1){meaning}")
        for name in ("validation_fraction", "test_fraction"):
            require_float(name, getattr(self, name), above=0.0, below=1.0)
        for name in ("learning_rate", "baseline_learning_rate"):
            require_float(name, getattr(self, name), above=0.0)
        require_float("clip_norm", self.clip_norm, minimum=0.0, expected="a finite number >= 0 (0 disables)")
        require_float("baseline_l2", self.baseline_l2, minimum=0.0)
        require_float("ngram_learning_rate", self.ngram_learning_rate, above=0.0, optional=True)
        require_float("max_minutes", self.max_minutes, above=0.0, optional=True)
        cells.canonical(self.cell)
        cells.require_implementation(self.implementation, [self.cell])
        # Not checked against `cell`: the benchmark trains the cells of its --cells instead, and checks those.
        cells.require_proj_units(self.proj_units)
        require_choice("monitor", self.monitor, MONITORS)
        require_choice("member_validation", self.member_validation, MEMBER_VALIDATION)
        for name in ("ensemble", "baseline_ensemble"):
            count = getattr(self, name)
            if self.member_validation == "disjoint" and count * self.validation_fraction >= 1:
                raise UserError(
                    f"Received `member_validation='disjoint'` with `{name}={count}` and `validation_fraction="
                    f"{self.validation_fraction}`: {count} disjoint validation slices would hold out everything; "
                    f"expected `{name} * validation_fraction` below 1."
                )
        require_choice("standardize", self.standardize, STANDARDIZE)

    @property
    def single_model_name(self):
        """A short name for one recurrent model: `bilstm`, `gru`, `2xbigru`, `bilstm+ngrams`, `bilstm-keras`, ...

        `-keras` ends the name of a model built with Keras's layers (`implementation="keras"`).
        """
        name = ("bi" if self.bidirectional else "") + self.cell
        name = name if self.num_layers == 1 else f"{self.num_layers}x{name}"
        name += ("+ngrams" if self.ngram_head else "") + ("+adv" if self.adversarial else "")
        return name + ("-keras" if self.implementation == "keras" else "")

    def _ensemble_suffix(self, count):
        """`-ensembleN` for N > 1 members (`-ensembleN-disjoint` when each holds out its own validation slice)."""
        if count == 1:
            return ""
        return f"-ensemble{count}" + ("-disjoint" if self.member_validation == "disjoint" else "")

    @property
    def model_name(self):
        """`single_model_name`, with `-ensembleN` for an ensemble of N members (`-ensembleN-disjoint` when each
        member holds out its own validation slice)."""
        return self.single_model_name + self._ensemble_suffix(self.ensemble)

    @property
    def baseline_name(self):
        """`baseline`, or `baseline-ensembleN[-disjoint]` for a `baseline_ensemble` of N members."""
        return "baseline" + self._ensemble_suffix(self.baseline_ensemble)
