"""The work-directory lock and the input fingerprints that guard `--resume`."""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support import REPO
from zoo import workdir as workdir_lib
from zoo.errors import UserError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from zoo import workdir
    with workdir.locked(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of `tmp_path/run` until killed."""
    directory = str(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-c", HOLDER, directory], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield directory, process
    finally:
        process.kill()
        process.wait()


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(holder):
    directory, process = holder
    with pytest.raises(workdir_lib.WorkdirBusy, match=rf"in use by PID {process.pid} on .*since") as error:
        with workdir_lib.locked(directory):
            pass
    assert isinstance(error.value, UserError) and "choose another --workdir" in str(error.value)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with workdir_lib.locked(directory):  # the kernel dropped the dead process's lock
        record = json.loads(open(os.path.join(directory, workdir_lib.LOCK_FILE)).read())
        assert record["pid"] == os.getpid()


def test_the_lock_is_shared_by_nested_calls_and_released_after(tmp_path):
    directory = str(tmp_path / "run")
    with workdir_lib.locked(directory):
        with workdir_lib.locked(directory):
            assert workdir_lib.is_locked_here(directory)
        assert workdir_lib.is_locked_here(directory)
    assert not workdir_lib.is_locked_here(directory)
    assert not os.path.exists(os.path.join(directory, workdir_lib.LOCK_FILE))  # an ended run leaves no lock file
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from zoo import workdir\nwith workdir.locked(sys.argv[1]): print('ok')",
            directory,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "ok", probe.stderr


def test_without_flock_the_pid_decides_and_a_dead_holder_is_stale(tmp_path, monkeypatch):
    def no_flock(*_args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(workdir_lib.fcntl, "flock", no_flock)
    directory = tmp_path / "run"
    directory.mkdir()
    lock = directory / workdir_lib.LOCK_FILE
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = __import__("socket").gethostname()
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": host, "command": "old", "started": "then"}))
    with workdir_lib.locked(str(directory)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": host, "command": "live", "started": "now"}))
        with pytest.raises(workdir_lib.WorkdirBusy, match=rf"PID {sleeper.pid} .*`live`"):
            with workdir_lib.locked(str(directory)):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_workdir_under_a_file_is_refused_by_name(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for workdir in (str(afile), str(afile / "sub")):
        with pytest.raises(UserError, match="afile.*is a file"):
            with workdir_lib.locked(workdir):
                pass


@dataclasses.dataclass
class Toy:
    units: int = 4


def _config():
    return Toy()


def test_resume_refuses_changed_inputs_naming_them_before_writing(tmp_path):
    workdir = str(tmp_path / "run")
    data = tmp_path / "data.txt"
    data.write_text("abcdef")
    inputs = {"the text file": workdir_lib.fingerprint_file(str(data))}
    assert workdir_lib.fingerprint_file(str(data)) == workdir_lib.fingerprint_bytes("abcdef")
    workdir_lib.prepare_workdir(workdir, _config(), inputs=inputs)
    os.makedirs(os.path.join(workdir, "checkpoints"))
    recorded = open(os.path.join(workdir, workdir_lib.INPUTS_FILE)).read()
    config_before = os.stat(os.path.join(workdir, "config.json")).st_mtime_ns

    data.write_text("abcdeX")  # same size, other content
    with pytest.raises(UserError, match=r"the text file changed \(same size, 6 bytes, different content"):
        workdir_lib.prepare_workdir(
            workdir, _config(), resume=True, inputs={"the text file": workdir_lib.fingerprint_file(str(data))}
        )
    data.write_text("abc")
    with pytest.raises(UserError, match=r"the text file changed \(size 6 -> 3 bytes\)"):
        workdir_lib.prepare_workdir(
            workdir, _config(), resume=True, inputs={"the text file": workdir_lib.fingerprint_file(str(data))}
        )
    with pytest.raises(
        UserError, match="the other file is a new input; the text file is no longer an input since the run began"
    ):
        workdir_lib.prepare_workdir(
            workdir, _config(), resume=True, inputs={"the other file": workdir_lib.fingerprint_bytes("x")}
        )
    assert open(os.path.join(workdir, workdir_lib.INPUTS_FILE)).read() == recorded
    assert os.stat(os.path.join(workdir, "config.json")).st_mtime_ns == config_before

    data.write_text("abcdef")  # the original again: resuming is allowed
    assert (
        workdir_lib.prepare_workdir(
            workdir, _config(), resume=True, inputs={"the text file": workdir_lib.fingerprint_file(str(data))}
        )
        == _config()
    )
