"""Exports of a character language model: a SavedModel (`generate`, `next_char_log_probs`), a `.tflite` or an ONNX model."""

import os

import numpy as np
import tensorflow as tf

from zoo import litert, litert_quantize, litert_step, onnx_export, registry
from zoo.char_lm import data as data_lib
from zoo.char_lm import model as model_lib
from zoo.char_lm.evaluate import load_run, run_source
from zoo.char_lm.train import load_corpus
from zoo.config import require_int
from zoo.errors import UserError
from zoo.export import export_saved_model

EXPORT_DIR = "export"
LITERT_FILE = "export.tflite"
ONNX_FILE = "export.onnx"
CHECK_ROWS = 256  # validation sequences (of seq_len characters) the .tflite is checked on
STEP_CHECK_BATCHES = 2  # of those, the batches the `step` signature is stepped through
CALIBRATION_ROWS = 64  # training sequences an int8 export calibrates on (the first STEP_CHECK_BATCHES also stepped)


def step_function(model):
    """The `step` signature's function: (character_id `(batch,)` int32, *states) -> log_probs `(batch, V)` and states.

    See `zoo.litert_step` for the state names; the same function serves the
    SavedModel and the `.tflite` model.
    """
    embedding, recurrent_layers, logits = (
        model.get_layer("embedding"),
        model_lib.recurrent_layers(model),
        model.get_layer("logits"),
    )

    def step(character_id, *states):
        hidden, new_states = litert_step.run_layers(recurrent_layers, embedding(character_id), states)
        return {"log_probs": tf.nn.log_softmax(logits(hidden)), **new_states}

    return step


class CharLMExport(tf.Module):
    """What the SavedModel holds: weights, the vocabulary table, two signatures."""

    def __init__(self, model, vocabulary):
        super().__init__()
        self.stepper = model_lib.CharacterStepper(model)
        self.step = tf.function(
            step_function(model),
            input_signature=[
                tf.TensorSpec([None], tf.int32, name="character_id"),
                *litert_step.state_specs(model_lib.recurrent_layers(model), None),
            ],
        )
        self.tokens = tf.constant(vocabulary.tokens)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary.characters, tf.string),
                tf.range(1, vocabulary.size, dtype=tf.int64),
            ),
            default_value=data_lib.OOV_ID,
        )

    def _ids(self, prompt):
        characters = tf.strings.unicode_split(prompt, "UTF-8")
        return tf.cast(self.table.lookup(characters), tf.int32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="length"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ]
    )
    def generate(self, prompt, length, temperature, seed):
        ids = self.stepper.generate(self._ids(prompt), length, temperature, seed)
        return {"text": tf.strings.reduce_join(tf.gather(self.tokens, ids))}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="prompt")])
    def next_char_log_probs(self, prompt):
        return {"characters": self.tokens, "log_probs": self.stepper.next_log_probs(self._ids(prompt))}


def export(workdir, *, path=None, which="best"):
    """Write a SavedModel with `generate`, `next_char_log_probs` and `step` signatures.

    `step(character_id: int32[batch], h0, c0, ...) -> {log_probs, h0, c0,
    ...}` reads one character per row from the given states (see
    `zoo.litert_step`).
    """
    _, vocabulary, model = load_run(workdir, which)
    module = CharLMExport(model, vocabulary)
    path = path or os.path.join(workdir, EXPORT_DIR)
    probe = vocabulary.characters[0]

    def verify(loaded):
        expected = module.next_char_log_probs(tf.constant(probe))["log_probs"].numpy()
        got = loaded.signatures["next_char_log_probs"](prompt=tf.constant(probe))["log_probs"].numpy()
        if not np.allclose(expected, got, atol=1e-5):
            raise RuntimeError("The exported next_char_log_probs disagrees with the trained model.")
        text = (
            loaded.signatures["generate"](
                prompt=tf.constant(probe), length=tf.constant(5), temperature=tf.constant(1.0), seed=tf.constant(0)
            )["text"]
            .numpy()
            .decode("utf-8")
        )
        if len(text) != 5:
            raise RuntimeError(f"The exported generate returned {len(text)} characters; expected 5.")

    return export_saved_model(
        module,
        path,
        signatures={
            "generate": module.generate.get_concrete_function(),
            "next_char_log_probs": module.next_char_log_probs.get_concrete_function(),
            "step": module.step.get_concrete_function(),
        },
        verify=verify,
    )


def export_litert(
    workdir, *, path=None, which="best", batch_size=1, source=None, quantize=litert_quantize.NONE, step=False
):
    """Write a `.tflite` model: character ids `(batch_size, time)` -> next-character log-probabilities.

    Signature `serving_default(character_ids: int32[batch_size, time])
    -> {log_probs: float32[batch_size, time, V]}`: at every position, the
    log-probabilities of the character after it, from a zero state (the
    whole sequence is read at once; `time` may vary from call to call).
    Id `i` is `characters[i]` of the model's metadata (`litert.metadata`),
    id 0 any character unseen in training. With `step`, also the signature
    `step(character_id: int32[batch_size], h0, c0, ...) -> {log_probs:
    float32[batch_size, V], h0, c0, ...}` (see `zoo.litert_step`), which
    stores the weights a second time. `quantize` is one of
    `litert_quantize.MODES`; int8 calibrates on the first `CALIBRATION_ROWS`
    training sequences of `seq_len` characters. Before it replaces an earlier
    file, a float model must equal the Keras model to 1e-5 (relative beyond
    magnitude 1, see `litert.compare`) on the first `CHECK_ROWS` validation
    sequences of `seq_len` characters (the `step` signature stepped through
    the first `STEP_CHECK_BATCHES` batches of them). The fused LSTM op keeps
    its states between calls: reset them (`reset_all_variables()`) before
    each call. Returns the report of `litert.export`.
    """
    require_int("batch_size", batch_size, minimum=1)
    litert_quantize.require_mode(quantize)
    config, vocabulary, model = load_run(workdir, which)
    reference = registry.build(f"char_lm/{config.cell}", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    corpus = load_corpus(source or run_source(workdir), config, vocabulary)
    batches = _sequence_batches(corpus.validation_ids, config.seq_len, CHECK_ROWS, batch_size, "validation")
    expected = [{"log_probs": tf.nn.log_softmax(reference(batch, training=False)).numpy()} for batch in batches]
    embedding, recurrent_layers, logits = (
        model.get_layer("embedding"),
        model_lib.recurrent_layers(model),
        model.get_layer("logits"),
    )

    def serve(character_ids):
        hidden = embedding(character_ids)
        for layer in recurrent_layers:
            hidden = litert.recurrent(layer, hidden)
        return {"log_probs": tf.nn.log_softmax(logits(hidden))}

    stepper = None
    metadata = {
        "task": "char_lm",
        "quantize": quantize,
        "inputs": {"character_ids": f"int32[{batch_size}, time]: ids of characters; 0 for any unseen one"},
        "outputs": {"log_probs": "float32[batch, time, V]: log-probabilities of the next character"},
        "characters": vocabulary.tokens,
    }
    if step:
        states = litert_step.zero_states(recurrent_layers, batch_size)
        check = [
            [({"character_id": batch[:, t]}, {"log_probs": wanted["log_probs"][:, t]}) for t in range(batch.shape[1])]
            for batch, wanted in zip(batches[:STEP_CHECK_BATCHES], expected)
        ]
        stepper = litert_step.StepSignature(
            step_function(model),
            [
                tf.TensorSpec([batch_size], tf.int32, name="character_id"),
                *litert_step.state_specs(recurrent_layers, batch_size),
            ],
            states,
            check,
        )
        metadata["states"] = {name: list(value.shape) for name, value in states.items()}
    representative = None
    if quantize == litert_quantize.INT8:
        training = _sequence_batches(corpus.training_ids, config.seq_len, CALIBRATION_ROWS, batch_size, "training")
        representative = [(litert.SIGNATURE, {"character_ids": batch}) for batch in training]
        if stepper is not None:
            sequences = [[{"character_id": batch[:, t]} for t in range(batch.shape[1])] for batch in training]
            with_states = litert_step.record(stepper.function, sequences[:STEP_CHECK_BATCHES], stepper.states)
            representative += [(litert_step.STEP, inputs) for inputs in with_states]
    return litert.export(
        path or os.path.join(workdir, LITERT_FILE),
        serve,
        [tf.TensorSpec([batch_size, None], tf.int32, name="character_ids")],
        model.weights,
        metadata=metadata,
        batches=[{"character_ids": batch} for batch in batches],
        expected=expected,
        step=stepper,
        quantize=quantize,
        representative=representative,
    )


def export_onnx(workdir, *, path=None, which="best", source=None):
    """Write an ONNX model: character ids `(batch, time)` -> next-character log-probabilities.

    Input `character_ids: int32[batch, time]` (any batch size and length),
    output `log_probs: float32[batch, time, V]`: at every position, the
    log-probabilities of the character after it, from a zero state. Id `i`
    is `characters[i]` of the model's metadata (`onnx_export.metadata`),
    id 0 any character unseen in training. The LSTMs (GRUs) are ONNX's own
    operators (see `zoo.onnx_export`). Before it replaces an earlier file,
    the model, run by ONNX Runtime, must equal the Keras model to 1e-5
    (relative beyond magnitude 1) on the first `CHECK_ROWS` validation
    sequences of `seq_len` characters. Returns the report of
    `onnx_export.export` (path `WORKDIR/export.onnx` by default).
    """
    path = path or os.path.join(workdir, ONNX_FILE)
    onnx_export.check_file_path(path)
    config, vocabulary, model = load_run(workdir, which)
    reference = registry.build(f"char_lm/{config.cell}", config, vocabulary_size=vocabulary.size, stateful=False)
    reference.set_weights(model.get_weights())
    corpus = load_corpus(source or run_source(workdir), config, vocabulary)
    batches = _sequence_batches(corpus.validation_ids, config.seq_len, CHECK_ROWS, 64, "validation")
    expected = [{"log_probs": tf.nn.log_softmax(reference(batch, training=False)).numpy()} for batch in batches]
    embedding, recurrent_layers, logits = (
        model.get_layer("embedding"),
        model_lib.recurrent_layers(model),
        model.get_layer("logits"),
    )

    def serve(character_ids):
        hidden = embedding(character_ids)
        for layer in recurrent_layers:
            hidden = onnx_export.recurrent(layer, hidden)
        return {"log_probs": tf.nn.log_softmax(logits(hidden))}

    return onnx_export.export(
        path,
        serve,
        [tf.TensorSpec([None, None], tf.int32, name="character_ids")],
        model.weights,
        metadata={
            "task": "char_lm",
            "inputs": {"character_ids": "int32[batch, time]: ids of characters; 0 for any unseen one"},
            "outputs": {"log_probs": "float32[batch, time, V]: log-probabilities of the next character"},
            "characters": vocabulary.tokens,
        },
        batches=[{"character_ids": batch} for batch in batches],
        expected=expected,
        expected_recurrent=onnx_export.expected_operators(recurrent_layers),
    )


def _sequence_batches(ids, seq_len, most, batch_size, part):
    """The first `most` sequences of `seq_len` ids in `ids`, as `litert.in_batches` of `batch_size` rows."""
    rows = min(len(ids) // seq_len, most)
    if rows < 1:
        raise UserError(
            f"The {part} text has {len(ids)} characters; expected at least seq_len={seq_len} to check the export on."
        )
    sequences = np.asarray(ids[: rows * seq_len], np.int32).reshape(rows, seq_len)
    return litert.in_batches(sequences, batch_size)[0]


def generate_litert(model, prompt, length):
    """Greedy text (temperature 0) after `prompt` from a `.tflite` model's `step` signature (batch size 1).

    Reads the prompt one character at a time, then appends the most likely
    character (never the unseen-character id 0) `length` times, as the
    SavedModel's `generate` does with temperature 0. `model` is a path or
    the model's bytes.
    """
    model_bytes = model if isinstance(model, (bytes, bytearray)) else open(model, "rb").read()
    information = litert.metadata(model_bytes)
    if "states" not in information:
        raise UserError("The .tflite model has no step signature; expected one exported with --step.")
    index = {character: position for position, character in enumerate(information["characters"]) if position}
    runner = litert.interpreter(model_bytes).get_signature_runner(litert_step.STEP)
    states = {name: np.zeros(shape, np.float32) for name, shape in information["states"].items()}
    pending, generated = [index.get(character, data_lib.OOV_ID) for character in prompt], []
    if not pending:
        raise UserError("Received an empty prompt; expected at least one character.")
    while len(generated) < length:
        outputs = runner(character_id=np.asarray(pending[:1], np.int32), **states)
        states = {name: outputs[name] for name in states}
        pending = pending[1:]
        if not pending:
            chosen = int(np.argmax(outputs["log_probs"][0, 1:])) + 1
            generated.append(chosen)
            pending = [chosen]
    return "".join(information["characters"][position] for position in generated)
