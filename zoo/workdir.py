"""A run's work directory: one run at a time, and resumed only with what it began with.

- `locked(workdir)` holds an advisory lock on `workdir/.lock` for the whole
  run, so a second run on the same directory fails at once with a message
  naming the holder (PID, host, command, start time). The lock is the
  kernel's (`fcntl.flock`): it goes away with the process however it ends,
  so a killed run never leaves a lock behind (a run that ends removes the
  file; a killed one leaves it unlocked, and the next run takes it). Where the file system refuses
  `flock`, the PID written in the lock file decides instead: a lock whose
  process is gone (on this host) is stale and taken over.
- `prepare_workdir` writes `config.json` and `inputs.json`, the fingerprints
  (size and SHA-256) of the config and of every input the run reads. A
  resumed run must have the same ones: a changed file is refused, naming
  what changed, before anything in the directory is written.
"""

import contextlib
import datetime
import errno
import hashlib
import json
import os
import socket
import sys

from zoo import config as config_lib
from zoo.errors import UserError
from zoo.files import atomic_write_json, check_output_path, process_alive, read_json

try:
    import fcntl
except ImportError:  # not POSIX: only the PID in the lock file guards the directory
    fcntl = None

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
INPUTS_FILE = "inputs.json"
CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"

_held = {}  # real path of a locked work directory -> [open lock file, depth]


class WorkdirBusy(UserError):
    """Another live run holds the work directory."""


def _holder_text(record):
    if not record:
        return "another process"
    command = record.get("command") or "?"
    return f"PID {record.get('pid')} on {record.get('host')} (`{command}`, since {record.get('started')})"


def _read_record(stream):
    stream.seek(0)
    try:
        return json.loads(stream.read() or "{}")
    except ValueError:
        return {}


def _busy(workdir, record):
    return WorkdirBusy(
        f"The work directory {workdir!r} is in use by {_holder_text(record)}. "
        "Wait for that run to end, or choose another --workdir."
    )


def _same_file(stream, path):
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _acquire(workdir, path):
    while True:
        stream = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until the run ends
        try:
            flocked = _try_flock(workdir, stream)
        except BaseException:
            stream.close()
            raise
        if not flocked or _same_file(stream, path):
            break
        stream.close()  # the holder released and removed this file after we opened it: open the new one
    try:
        if not flocked:
            record = _read_record(stream)
            pid = record.get("pid")
            same_host = record.get("host") == socket.gethostname()
            if isinstance(pid, int) and pid != os.getpid() and (not same_host or process_alive(pid)):
                raise _busy(workdir, record)
        stream.seek(0)
        stream.truncate()
        stream.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": " ".join(sys.argv),
                    "started": datetime.datetime.now().isoformat(timespec="seconds"),
                }
            )
        )
        stream.flush()
        return stream
    except BaseException:
        stream.close()
        raise


def _try_flock(workdir, stream):
    """Take the kernel lock on `stream`; False where the system has none (the PID decides then)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(workdir, _read_record(stream)) from None
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        return False
    return True


def _release(stream, path):
    # Removed while still held, so nobody can take a lock on a file that is about to go;
    # one who opened it just before sees it is gone (`_same_file`) and opens a new one.
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    finally:
        stream.close()  # closing drops the flock


@contextlib.contextmanager
def locked(workdir, hold=True):
    """Hold the work-directory lock of `workdir` (created if needed) for the body.

    Raises `WorkdirBusy` (a `UserError`) naming the holder when another run
    has it. Nested calls for the same directory in one process share the
    lock. `hold=False` (a worker that is not the chief, whose writes go
    elsewhere) takes no lock.
    """
    check_directory(workdir)
    if not hold:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    key = os.path.realpath(workdir)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(workdir, os.path.join(workdir, LOCK_FILE)), 1]
    try:
        yield
    finally:
        _held[key][1] -= 1
        if not _held[key][1]:
            _release(_held.pop(key)[0], os.path.join(workdir, LOCK_FILE))


def is_locked_here(workdir):
    """Whether this process holds the lock of `workdir`."""
    return os.path.realpath(workdir) in _held


def check_directory(workdir):
    """Refuse an empty `workdir`, one that names a file, or one under a file."""
    if not workdir:
        raise UserError("Received an empty value for argument `workdir`; expected a directory path.")
    check_output_path(workdir, "--workdir", "a directory")


# ----------------------------------------------------------------------------- fingerprints
def fingerprint_bytes(data):
    """`{"size", "sha256"}` of `data` (bytes, or str taken as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def fingerprint_file(path):
    """`{"size", "sha256"}` of the file at `path`, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def fingerprint_json(value):
    """The fingerprint of `value` written as canonical JSON (sorted keys)."""
    return fingerprint_bytes(json.dumps(value, sort_keys=True, default=str))


def _changed(name, saved, current):
    if saved.get("size") != current.get("size"):
        return f"{name} changed (size {saved.get('size')} -> {current.get('size')} bytes)"
    return f"{name} changed (same size, {saved.get('size')} bytes, different content: SHA-256 {current.get('sha256', '')[:12]}..., was {saved.get('sha256', '')[:12]}...)"


def check_inputs(workdir, inputs):
    """Raise `UserError` if `inputs` differ from those recorded in `workdir/inputs.json`.

    `inputs` maps a description of each input (e.g. "the text file 'a.txt'")
    to its fingerprint. A run recorded before fingerprints existed, or with
    none, passes.
    """
    path = os.path.join(workdir, INPUTS_FILE)
    if not os.path.exists(path):
        return
    saved = read_json(path).get("inputs", {})
    problems = []
    for name in sorted(set(saved) | set(inputs)):
        if name not in inputs:
            problems.append(f"{name} is no longer an input")
        elif name not in saved:
            problems.append(f"{name} is a new input")
        elif saved[name] != inputs[name]:
            problems.append(_changed(name, saved[name], inputs[name]))
    if problems:
        raise UserError(
            f"Cannot resume in {workdir!r}: {'; '.join(problems)} since the run began. "
            "Resume with the inputs it began with, or start a new --workdir."
        )


def refuse_existing_run(workdir, entries, *, resume, holds="a run"):
    """Raise `UserError` if `workdir` already holds a run and `resume` is false.

    A run is there when any of `entries` exists: names inside `workdir` of
    what only a run writes (the checkpoints, the per-run directories of a
    task). The message says the work directory "already holds" `holds` and
    how to continue it or start elsewhere.
    """
    if resume:
        return
    if any(os.path.exists(os.path.join(workdir, entry)) for entry in entries):
        raise UserError(
            f"The work directory {workdir!r} already holds {holds}. Pass --resume to continue it, "
            "or choose another --workdir."
        )


def prepare_workdir(workdir, config, resume=False, inputs=None):
    """Create `workdir`, refuse to silently mix runs, write config.json and inputs.json.

    A work directory that already holds a run (a checkpoint or a backup) is
    only reused with `resume=True`, and then only with the same config and
    the same `inputs` (a dict of description -> fingerprint, see
    `fingerprint_file`); a difference raises `UserError` naming it before
    anything is written. Returns the config to use (the saved one when
    resuming). With `resume=True` and no config.json there is nothing to
    resume: the run starts fresh with `config` (and `fit` says so).
    """
    check_directory(workdir)
    refuse_existing_run(workdir, (CHECKPOINT_DIR, BACKUP_DIR), resume=resume)
    inputs = dict(inputs or {})
    config_path = os.path.join(workdir, CONFIG_FILE)
    if resume and os.path.exists(config_path):
        saved = config_lib.load(type(config), config_path)
        if saved != config:
            differences = sorted(
                name
                for name, value in config_lib.to_dict(config).items()
                if config_lib.to_dict(saved).get(name) != value
            )
            raise UserError(
                f"Cannot resume in {workdir!r} with a different config (fields {differences} differ). "
                "Resume with the same --set overrides, or start a new --workdir."
            )
        check_inputs(workdir, inputs)
        config = saved
    os.makedirs(workdir, exist_ok=True)
    config_lib.save(config, config_path)
    atomic_write_json(
        os.path.join(workdir, INPUTS_FILE),
        {"config": fingerprint_json(config_lib.to_dict(config)), "inputs": inputs},
    )
    return config
