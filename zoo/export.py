"""Exporting SavedModels without ever replacing a good export with a broken one."""

import tensorflow as tf

from zoo.errors import UserError
from zoo.files import atomic_path, check_output_path


def export_saved_model(module, path, signatures, verify=None):
    """Save `module` as a SavedModel at `path`, atomically.

    The SavedModel is written beside `path`, loaded back with
    `tf.saved_model.load` and passed to `verify(loaded)` (which should raise
    if the export is wrong); only then does it replace whatever was at `path`.
    If writing or verifying fails, the earlier export is untouched.

    Args:
        module: A `tf.Module` (for example a `keras.Model` or a module holding
            one) to save.
        path: Destination directory.
        signatures: Dict of signature name to concrete or `tf.function`.
        verify: Optional callable taking the loaded SavedModel.
    """
    if not path:
        raise UserError("Received an empty value for argument `path`; expected a directory path.")
    check_output_path(path, "path", "a directory for the SavedModel")
    with atomic_path(path) as temporary:
        tf.saved_model.save(module, temporary, signatures=signatures)
        loaded = tf.saved_model.load(temporary)
        missing = sorted(set(signatures) - set(loaded.signatures))
        if missing:
            raise RuntimeError(f"The exported SavedModel lacks the signatures {missing}.")
        if verify is not None:
            verify(loaded)
    return path
