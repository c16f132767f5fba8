"""`python -m recipes.crosscheck`: the table it prints and the flags it rejects."""

import subprocess
import sys

import pytest

from layers import testing
from recipes import _cli, crosscheck


def test_table_reports_each_setting_and_the_worst():
    settings = [testing.Setting("lstm", return_state=True), testing.Setting("gru", unroll=True)]
    comparisons = [testing.compare(setting, seed=3) for setting in settings]
    worse = testing.Comparison(settings[1], 2e-5, 1e-6, 4)
    table = crosscheck.format_table([comparisons[0], worse])
    assert "lstm b2t3 state" in table and "gru b2t3 unroll" in table
    assert "failures: 1" in table
    assert "worst output/state difference: 2.000e-05" in table and "at: gru b2t3 unroll" in table
    assert all(c.passed for c in comparisons) and not worse.passed


def test_crosscheck_rejects_unknown_cells_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(crosscheck.main, ["--cells", "lstm,transformer"])
    assert exit_info.value.code == _cli.EXIT_USAGE
    assert "`--cells`" in capsys.readouterr().err


def test_flag_choices_are_the_grid_s():
    assert crosscheck.CELL_KINDS == testing.CELL_KINDS
    assert crosscheck.DTYPE_POLICIES == tuple(sorted(testing.TOLERANCES))


def test_a_bad_flag_is_reported_without_loading_tensorflow():
    code = (
        "import sys\n"
        "from recipes import crosscheck\n"
        "try:\n"
        "    crosscheck.parse_arguments(['--cells', 'transformer'])\n"
        "except ValueError as error:\n"
        "    print('tensorflow' in sys.modules, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("False Received an invalid value for argument `--cells`")
