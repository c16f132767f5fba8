"""Outputs and gradients of a Keras network through the current backend's own autodiff.

`outputs_and_gradients` differentiates a fixed random projection of a call's
outputs with `tf.GradientTape`, `jax.grad` or torch autograd, whichever
backend Keras runs on, so the same test compares our layers with Keras's on
each backend.
"""

import keras
import numpy as np


def _projection(shape, index, seed):
    return np.random.default_rng([seed, index]).normal(size=shape).astype("float32")


def _loss(outputs, seed, projections=None):
    if projections is None:
        projections = [_projection(tuple(output.shape), index, seed) for index, output in enumerate(outputs)]
    return sum(
        keras.ops.sum(keras.ops.multiply(keras.ops.cast(output, "float32"), keras.ops.convert_to_tensor(projection)))
        for output, projection in zip(outputs, projections)
    )


def _flat_outputs(result):
    return list(result) if isinstance(result, (list, tuple)) else [result]


def outputs_and_gradients(network, call, arrays, seed=0, projections=None):
    """`(outputs, gradients)` of `call(*tensors)`, all as NumPy arrays.

    `arrays` are the differentiated inputs (sequences, initial states) as
    NumPy arrays; `call` turns their backend tensors into the network's
    output(s). The loss is `sum(output * P)` over the outputs, with fixed
    random `P` (or the arrays `projections`, one per output); `gradients`
    lists its gradients with respect to `arrays`, then to
    `network.trainable_weights` in order (zeros where a tensor does not
    reach the loss).
    """
    backend = keras.backend.backend()
    weights = list(network.trainable_weights)
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            outputs = _flat_outputs(call(*tensors))
            loss = _loss(outputs, seed, projections)
        sources = tensors + weights
        gradients = tape.gradient(loss, sources)
    elif backend == "jax":
        import jax

        def loss_of(weight_values, tensors):
            with keras.StatelessScope(state_mapping=list(zip(weights, weight_values))):
                outputs = _flat_outputs(call(*tensors))
            return _loss(outputs, seed, projections), outputs

        grad = jax.grad(loss_of, argnums=(0, 1), has_aux=True)
        (weight_gradients, tensor_gradients), outputs = grad(
            [w.value for w in weights], [jax.numpy.asarray(a) for a in arrays]
        )
        sources = arrays + weights
        gradients = list(tensor_gradients) + list(weight_gradients)
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        outputs = _flat_outputs(call(*tensors))
        sources = tensors + [w.value for w in weights]
        gradients = torch.autograd.grad(_loss(outputs, seed, projections), sources, allow_unused=True)
    else:  # pragma: no cover - a backend this project does not test
        raise ValueError(f"Received KERAS_BACKEND={backend!r}, expected tensorflow, jax or torch.")
    gradients = [
        np.zeros(tuple(s.shape), "float32") if g is None else keras.ops.convert_to_numpy(g)
        for g, s in zip(gradients, sources)
    ]
    return [keras.ops.convert_to_numpy(o) for o in outputs], gradients


def relative_difference(ours, reference, floor=1e-6):
    """`max|ours - reference| / max(max|reference|, floor)`."""
    ours, reference = np.asarray(ours, "float64"), np.asarray(reference, "float64")
    return float(np.max(np.abs(ours - reference), initial=0.0) / max(np.max(np.abs(reference), initial=0.0), floor))
