"""What a cell can learn about the call it runs in: the enclosing `keras.layers.RNN` call,
its `training` value, and whether a cached tensor or a random draw belongs here.

Used by the cells' dropout masks (one mask per sequence, drawn before the loop).
"""

import keras


def tensor_usable_here(tensor):
    """Whether a cached tensor may be used in the current tracing context.

    On TensorFlow a dropout mask drawn while tracing one graph must not leak
    into another graph (a later trace, or eager execution). A mask drawn in
    an enclosing graph (the function around a `while_loop` body) is fine: the
    loop captures it, so every step sees the same mask.
    """
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    try:
        graph = tensor.graph
    except AttributeError:  # an eager tensor has no graph
        graph = None
    if graph is None:
        return tf.executing_eagerly()
    if tf.executing_eagerly():
        return False
    current = tf.compat.v1.get_default_graph()
    while current is not None:
        if current is graph:
            return True
        current = getattr(current, "outer_graph", None)
    return False


def enclosing_rnn_call():
    """The Keras name scope of the innermost `keras.layers.RNN` call now running.

    `keras.layers.RNN.__call__` opens a fresh name scope object for every call
    (eager or traced), and the cell's steps run inside it, so the scope's
    identity tells one sequence from the next even when `RNN` gets an
    `initial_state` or is stateful (cases where it never calls
    `get_initial_state`). Returns `None` when the cell is called outside any
    `RNN`, or when this Keras version keeps its scopes elsewhere.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - depends on the Keras version
        return None
    for scope in reversed(global_state.get_global_attribute("name_scope_stack") or []):
        if isinstance(getattr(scope, "caller", None), keras.layers.RNN):
            return scope
    return None


def training_of_current_call():
    """The `training` value of the Keras layer call now running, or `None` if unknown.

    `keras.layers.RNN` asks its cell for the initial state inside its call,
    where Keras has already resolved `training` for the layers it calls.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - depends on the Keras version
        return None
    context = global_state.get_global_attribute("current_call_ctx")
    return getattr(context, "training", None)


def jax_draw_would_leak(seed_generator):
    """Whether drawing from `seed_generator` here would leak a JAX tracer.

    A draw advances the generator's state, an assignment that must stay in
    the trace (jit, grad or eager) holding the state's current value. Inside
    `lax.scan`, the loop of `keras.layers.RNN` on JAX, a value computed from
    the state belongs to the loop's own trace instead, and the assignment
    would carry it out of the loop.
    """
    if keras.backend.backend() != "jax":
        return False
    state = seed_generator.state.value
    return getattr(state + 0, "_trace", None) is not getattr(state, "_trace", None)
