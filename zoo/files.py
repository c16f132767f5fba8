"""Writing files and directories so that a crash never leaves a broken one.

Everything the recipes write that a later step depends on (configs, metrics,
checkpoints, exports) is written beside its destination under a temporary
name and moved into place only when complete.
"""

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import tempfile

from zoo.errors import UserError, UserFileNotFoundError, UserIsADirectoryError


def atomic_write_text(path, text):
    """Write `text` to `path` via a temporary file and `os.replace`.

    The file gets the permissions a plain `open(path, "w")` would give it
    (0666 less the umask; `tempfile.mkstemp` would make it 0600).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = os.path.join(directory, f".tmp-{os.path.basename(path)}-{os.getpid()}-{secrets.token_hex(4)}")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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


def read_json(path, *, kind="JSON file", expected="the JSON this project wrote there"):
    """The parsed contents of the JSON file `path`.

    A file that cannot be opened, decoded or parsed is a `UserError` naming
    it (see `unreadable`); `kind` and `expected` describe it in the message.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise unreadable(path, error, kind=kind, expected=expected) from error


def check_output_path(path, argument, purpose="a directory", *, is_file=False):
    """Raise `UserError` if writing `path` must fail because of what already exists.

    `path` is a directory to create or replace, or with `is_file` a file to
    write. A folder on the way to it that is a regular file (`afile/sub`
    with `afile` a file) would end in a bare `FileExistsError` or
    `NotADirectoryError`; so would a file where a directory is to go, or a
    directory where a file is to go. `argument` names where `path` came
    from (`--path`, `path`) and `purpose` what was expected.
    """
    target = os.path.abspath(path)
    received = f"Received `{argument}={str(path)!r}`"
    if is_file and os.path.isdir(target):
        raise UserIsADirectoryError(f"{received}, which is a directory; expected {purpose}.")
    current = os.path.dirname(target) if is_file else target
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent
    if os.path.isdir(current):
        return
    if current == target:
        raise UserError(f"{received}, which is a file; expected {purpose}.")
    raise UserError(f"{received}, but {current!r} is a file, not a directory; expected {purpose}.")


_RENAME_EXCHANGE = 2  # renameat2's flag (Linux 3.15+): swap two paths in one step
_AT_FDCWD = -100


def _exchange(first, second):
    """Swap the directories `first` and `second` atomically; False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), first)


def _aside_name(base):
    return f".{base}.previous-{os.getpid()}"


def recover(path):
    """Put back a directory that a writer killed mid-replacement left aside; True if it did.

    Only where `_exchange` is unavailable is a directory replaced in two
    steps (old one renamed aside, new one moved in); a process killed
    between them leaves `path` missing and the old directory beside it.
    """
    path = os.path.abspath(path)
    parent, base = os.path.split(path)
    if os.path.exists(path) or not os.path.isdir(parent):
        return False
    prefix = f".{base}.previous-"
    for name in sorted(os.listdir(parent)):
        if name.startswith(prefix) and os.path.isdir(os.path.join(parent, name)):
            os.replace(os.path.join(parent, name), path)
            return True
    return False


def process_alive(pid):
    """Whether a process `pid` may be running here (another user's, or a number past any PID, counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a number past any PID: keep it anyway
        return True
    return True


def remove_stale_temporaries(path):
    """Delete what killed writers of `path` left beside it: `.tmp-<name>-<pid>-*` of processes now gone.

    A temporary of a live process (a concurrent writer) is left alone.
    """
    parent, base = os.path.split(os.path.abspath(path))
    prefix = f".tmp-{base}-"
    if not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        # The rest is `<pid>-<random>` (the random part has no "-"); anything else, such as
        # `.tmp-<name>-5-<pid>-<random>` of a destination named `<name>-5`, is not ours.
        pid, separator, random = name[len(prefix) :].partition("-")
        ours = name.startswith(prefix) and separator and random and "-" not in random and pid.isdigit()
        if ours and not process_alive(int(pid)):
            leftover = os.path.join(parent, name)
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(leftover)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; on success move it to `path`.

    Works for files and directories. If the body raises (or the process dies),
    whatever was at `path` before is untouched; the temporary is removed on
    an exception. An existing directory is replaced in one step where the
    system can swap two directories (Linux's `renameat2`); elsewhere it is
    renamed aside first, and `recover` puts it back if the process died in
    between.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    recover(path)
    remove_stale_temporaries(path)
    temporary_dir = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{base}-{os.getpid()}-")
    temporary = os.path.join(temporary_dir, base)
    try:
        yield temporary
        if not os.path.exists(temporary):
            raise RuntimeError(f"Nothing was written to the temporary path for {path!r}.")
        if os.path.isdir(path) and not os.path.islink(path) and os.path.isdir(temporary):
            if not _exchange(temporary, path):  # then `temporary` holds the old directory, deleted below
                aside = os.path.join(parent, _aside_name(base))
                os.replace(path, aside)
                os.replace(temporary, path)
                shutil.rmtree(aside, ignore_errors=True)
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
