"""`python -m recipes.bench_jax` runs on the JAX backend and reports every contender (skipped elsewhere)."""

import keras
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("recipes.bench_jax runs on the JAX backend (KERAS_BACKEND=jax)", allow_module_level=True)
pytest.importorskip("jax")

from recipes import bench_jax

pytestmark = pytest.mark.backends  # (so that the JAX run of the backend tests includes it)


def test_quick_run_times_every_contender(capsys):
    results = bench_jax.main(["--quick", "--cells", "LSTM"])
    assert [result["cell"] for result in results] == ["LSTM"]
    for mode in ("train", "forward"):
        entries = results[0][mode]
        assert list(entries) == list(bench_jax.CONTENDERS)
        assert entries["keras"]["speedup"] == 1.0
        for entry in entries.values():
            assert 0 < entry["min_ms"] <= entry["median_ms"] <= entry["max_ms"]
    printed = capsys.readouterr().out
    assert printed.count("LSTM ") == 2 * len(bench_jax.CONTENDERS)


def test_bad_arguments_name_what_was_expected(capsys):
    with pytest.raises(SystemExit):
        bench_jax.parse_arguments(["--size", "64,100"])
    assert "expected four positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_jax.parse_arguments(["--cells", "LSTM,Transformer"])
    assert "expected a comma-separated subset" in capsys.readouterr().err
