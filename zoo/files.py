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


def read_text(path, encoding="utf-8", *, kind="file", fix_hint="", expected="some text"):
    """The contents of the file at `path`, decoded strictly.

    Errors a user can act on, each naming the file: a missing file
    (`FileNotFoundError`), a directory (`IsADirectoryError`), an unknown
    `encoding`, bytes that do not decode (`ValueError` giving the bytes,
    their offset and line, then `fix_hint`), and a file with nothing but
    white space (`ValueError` saying `expected`). `kind` names the file in
    messages ("text file", "file"). A leading byte order mark is dropped.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"Received an invalid value for a {kind} path: {path!r}; expected a file path.")
    shown = repr(str(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"The {kind} {shown} does not exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"The {kind} {shown} is a directory; expected a file.")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise ValueError(
            f"Received an unknown `encoding` {encoding!r}; expected a Python codec name such as utf-8 or cp1252."
        ) from None
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad = raw[error.start : error.end].hex(" ")
        raise ValueError(
            f"The {kind} {shown} is not valid {encoding}: byte(s) 0x{bad} at byte offset {error.start} "
            f"(line {line}) cannot be decoded ({error.reason}).{' ' + fix_hint if fix_hint else ''}"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise ValueError(f"The {kind} {shown} is empty; expected {expected}.")
    return text
