"""The shared command-line frame: which errors become one line and which exit status."""

import os
import subprocess
import sys

import pytest

from recipes import _cli
from zoo import training
from zoo.errors import UserError, UserFileNotFoundError, UserTypeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _exit(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(main, [])
    return exit_info.value.code, capsys.readouterr().err


def _raising(error):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [UserError("Received `units=0`"), UserTypeError("Received `units='a'`"), UserFileNotFoundError("No file at 'x'")],
)
def test_user_errors_are_one_line_with_usage_status(error, capsys):
    code, err = _exit(_raising(error), capsys)
    assert code == _cli.EXIT_USAGE == 2
    assert err == f"error: {error}\n"


def test_a_diverged_run_exits_with_status_one(capsys):
    code, err = _exit(_raising(training.TrainingDiverged("The training loss became nan at epoch 1, batch 3")), capsys)
    assert code == 1
    assert err == "error: The training loss became nan at epoch 1, batch 3\n"


def test_interrupt_says_checkpoints_are_kept(capsys):
    code, err = _exit(_raising(KeyboardInterrupt()), capsys)
    assert code == _cli.EXIT_INTERRUPTED == 130
    assert "last checkpoint" in err


@pytest.mark.parametrize(
    "error",
    [
        ZeroDivisionError("a bug"),
        # A plain ValueError, TypeError or OSError from deep inside (a shape
        # error in TensorFlow, a bug of ours) is not bad input: it keeps its
        # traceback instead of being disguised as a one-line usage error.
        ValueError("Dimensions must be equal, but are 16 and 32"),
        TypeError("unsupported operand type(s)"),
        FileNotFoundError("No such file: '/tmp/scratch/internal.bin'"),
    ],
)
def test_programming_errors_keep_their_traceback(error):
    with pytest.raises(type(error)) as raised:
        _cli.run(_raising(error), [])
    assert raised.value is error


def test_a_bug_in_a_real_process_prints_its_traceback_and_exits_one(tmp_path):
    program = (
        "from recipes import _cli\n"
        "def main(argv):\n"
        "    raise ValueError('Dimensions must be equal, but are 16 and 32')\n"
        "_cli.run(main, [])\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: Dimensions must be equal, but are 16 and 32")


def test_bad_input_in_a_real_process_is_one_line_with_status_two():
    program = (
        "from recipes import _cli\n"
        "from zoo.errors import UserError\n"
        "def main(argv):\n"
        "    raise UserError('Received `--length 0`; expected a positive integer.')\n"
        "_cli.run(main, [])\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr == "error: Received `--length 0`; expected a positive integer.\n"


@pytest.mark.parametrize("returned, status", [(None, 0), (0, 0), (1, 1)])
def test_main_return_value_is_the_exit_status(returned, status, capsys):
    code, _ = _exit(lambda argv: returned, capsys)
    assert code == status
