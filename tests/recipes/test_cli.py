"""The shared command-line frame: which errors become one line and which exit status."""

import pytest

from recipes import _cli
from zoo import training


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
    [ValueError("Received `units=0`"), TypeError("Received `units='a'`"), FileNotFoundError("No file at 'x'")],
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


def test_programming_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        _cli.run(_raising(ZeroDivisionError("a bug")), [])


@pytest.mark.parametrize("returned, status", [(None, 0), (0, 0), (1, 1)])
def test_main_return_value_is_the_exit_status(returned, status, capsys):
    code, _ = _exit(lambda argv: returned, capsys)
    assert code == status
