"""Writing files and directories so that a crash never leaves a broken one.

Everything the recipes write that a later step depends on (configs, metrics,
checkpoints, exports) is written beside its destination under a temporary
name and moved into place only when complete.
"""

import contextlib
import json
import os
import shutil
import tempfile

from zoo.errors import UserError, UserFileNotFoundError, UserIsADirectoryError


def atomic_write_text(path, text):
    """Write `text` to `path` via a temporary file and `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def atomic_write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; on success move it to `path`.

    Works for files and directories. If the body raises (or the process dies),
    whatever was at `path` before is untouched; the temporary is removed on
    an exception. An existing destination is replaced only after the new one
    is complete: it is first renamed aside, then deleted.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    temporary_dir = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{base}-")
    temporary = os.path.join(temporary_dir, base)
    try:
        yield temporary
        if not os.path.exists(temporary):
            raise RuntimeError(f"Nothing was written to the temporary path for {path!r}.")
        if os.path.isdir(path) and not os.path.islink(path):
            aside = os.path.join(temporary_dir, base + ".previous")
            os.replace(path, aside)
            os.replace(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary_dir, ignore_errors=True)


def unreadable(path, error, *, kind="file", expected="a readable file"):
    """The `UserError` for `error`, met while reading the user's file `path`.

    `error` is what opening, decoding or parsing raised (an `OSError`, a
    `UnicodeDecodeError`, a JSON or CSV error). The result names the file
    (`kind` says what it is: "CSV file", "config file"), what was wrong and
    `expected`; raise it `from error`. A missing file gives a
    `UserFileNotFoundError`, a directory a `UserIsADirectoryError`.
    """
    shown = repr(str(path))
    if isinstance(error, FileNotFoundError):
        return UserFileNotFoundError(f"The {kind} {shown} does not exist; expected {expected}.")
    if isinstance(error, IsADirectoryError):
        return UserIsADirectoryError(f"The {kind} {shown} is a directory; expected {expected}.")
    if isinstance(error, PermissionError):
        problem = "cannot be read (permission denied)"
    elif isinstance(error, UnicodeDecodeError):
        problem = f"is not valid {error.encoding}: byte offset {error.start} cannot be decoded ({error.reason})"
    else:
        problem = f"cannot be read ({type(error).__name__}: {error})"
    return UserError(f"The {kind} {shown} {problem}; expected {expected}.")


def read_text(path, encoding="utf-8", *, kind="file", fix_hint="", expected="some text"):
    """The contents of the file at `path`, decoded strictly.

    Errors a user can act on, each a `zoo.errors.UserError` naming the file:
    a missing file (also a `FileNotFoundError`), a directory (also an
    `IsADirectoryError`), a file that cannot be read, an unknown `encoding`,
    bytes that do not decode (giving the bytes, their offset and line, then
    `fix_hint`), and a file with nothing but white space (saying
    `expected`). `kind` names the file in messages ("text file", "file").
    A leading byte order mark is dropped.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise UserError(f"Received an invalid value for a {kind} path: {path!r}; expected a file path.")
    shown = repr(str(path))
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"The {kind} {shown} does not exist.")
    if os.path.isdir(path):
        raise UserIsADirectoryError(f"The {kind} {shown} is a directory; expected a file.")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise unreadable(path, error, kind=kind, expected=expected) from error
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise UserError(
            f"Received an unknown `encoding` {encoding!r}; expected a Python codec name such as utf-8 or cp1252."
        ) from None
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad = raw[error.start : error.end].hex(" ")
        raise UserError(
            f"The {kind} {shown} is not valid {encoding}: byte(s) 0x{bad} at byte offset {error.start} "
            f"(line {line}) cannot be decoded ({error.reason}).{' ' + fix_hint if fix_hint else ''}"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise UserError(f"The {kind} {shown} is empty; expected {expected}.")
    return text
