"""Loading `.keras` model files, with an error that names a damaged one."""

import os
import zipfile
import zlib

import keras

from zoo.errors import UserError, UserFileNotFoundError


def archive_problem(path):
    """What is wrong with the zip archive at `path` (a `.keras` file), or None if it is intact.

    Reads every member and checks its CRC, so a file cut short or
    overwritten in part is found before Keras reads it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        return f"{type(error).__name__}: {error}"
    return f"its member {damaged!r} fails the CRC check" if damaged else None


def load_model(path):
    """`keras.saving.load_model(path, safe_mode=True)`, once the file is known to be intact.

    Keras reports a `.keras` file that is not a readable zip archive (one cut
    short by a full disk or an interrupted copy, say) as "File not found";
    here that is a `UserError` naming the file and saying it is unreadable.
    Anything that goes wrong after the archive check keeps Keras's own error,
    so a bug in deserialisation is not mistaken for a damaged file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"No model file at {path!r}.")
    problem = archive_problem(path)
    if problem:
        raise UserError(
            f"The model file {path!r} is unreadable or corrupt ({problem}); expected a complete .keras archive "
            "as training writes it. Train again, or restore the file from a copy."
        )
    return keras.saving.load_model(path, safe_mode=True)
