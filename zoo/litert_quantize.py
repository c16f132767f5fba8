"""Quantized LiteRT exports: dynamic-range and full-integer (int8) converter settings.

- `dynamic`: weights stored as int8 (per channel), activations float; the
  kernels quantize activations on the fly ("hybrid" kernels, the fused LSTM
  included). No data needed. The converter leaves weight tensors of fewer
  than 1024 elements in float32, so a very small model stays float.
- `int8`: weights and activations int8, calibrated on a representative
  dataset; the fused LSTM op runs its integer kernel with int8 inputs,
  weights and hidden state, int32 biases and an int16 cell state (the
  converter's only integer LSTM scheme: its 16-bit activation mode refuses
  `UNIDIRECTIONAL_SEQUENCE_LSTM`). Inputs and outputs stay float32 (int32 ids
  stay int32): the model quantizes and dequantizes at its edges, so its
  signatures are those of the float model. A model with a builtin `WHILE`
  loop (a GRU, a SimpleRNN, a variant cell, an LSTM with other activations)
  is refused: the converter (TensorFlow 2.21) crashes calibrating it.
"""

from zoo.errors import UserError

NONE, DYNAMIC, INT8 = "none", "dynamic", "int8"
MODES = (NONE, DYNAMIC, INT8)


def require_mode(quantize):
    if quantize not in MODES:
        raise UserError(f"Received an invalid value for `quantize`: {quantize!r}; expected one of {list(MODES)}.")


def check_quantizable(counts, quantize, representative):
    """Raise a `UserError` where `quantize` cannot apply to the float model whose operators are `counts`."""
    require_mode(quantize)
    if quantize != INT8:
        return
    if counts.get("WHILE"):
        raise UserError(
            "Received quantize='int8' for a model with a recurrent loop (WHILE: a GRU, a SimpleRNN, a variant cell "
            "such as layernorm_lstm, or an LSTM with other activations); expected a plain LSTM model (fused kernel), "
            "or quantize='dynamic'."
        )
    if not representative:
        raise UserError("Received quantize='int8' without representative data; expected some inputs to calibrate on.")


def configure(converter, quantize, representative=None):
    """Set `converter` (a `tf.lite.TFLiteConverter`) up for `quantize`; int8 calibrates on `representative`.

    `representative` is a list of `(signature name, inputs dict)` pairs.
    """
    import tensorflow as tf

    require_mode(quantize)
    if quantize == NONE:
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == INT8:
        samples = list(representative)
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter
