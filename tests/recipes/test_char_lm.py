"""`python -m recipes.char_lm` end to end on tiny configs: train, evaluate, sample, export, resume, errors."""

import json
import math
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes import _cli
from recipes import char_lm as recipe
from tests.support import run_in_fresh_python
from zoo.char_lm import model as model_lib
from zoo.char_lm.config import CharLMConfig

TINY = [
    "units=16",
    "embedding_dim=8",
    "seq_len=8",
    "batch_size=4",
    "epochs=2",
    "markov_orders=0,1,2",
    "validation_fraction=0.25",
]


def _words_text(length=1200, seed=0):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "to", "dog"]
    rng = np.random.default_rng(seed)
    pieces = []
    while sum(map(len, pieces)) < length:
        pieces.append(" ".join(rng.choice(words, size=6)) + ".\n")
    return "".join(pieces)[:length]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(_words_text(), encoding="utf-8")
    return str(path)


def _run_cli(argv, capsys):
    """Run the recipe as the command line does; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        _cli.run(recipe.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _sets(overrides):
    return [argument for override in overrides for argument in ("--set", override)]


def test_train_sample_evaluate_export(tmp_path, text_file, capsys):
    workdir = str(tmp_path / "run")
    assert recipe.main(["train", "--workdir", workdir, "--text", text_file, "--quiet", *_sets(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "markov order 2 (KN)" in printed and "lstm 1x16" in printed
    assert "the best Markov baseline" in printed

    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["units"] == 16 and config["seq_len"] == 8
    assert [row["epoch"] for row in metrics["curve"]] == [1, 2]
    for row in metrics["curve"]:
        assert row["val_bits_per_char"] == pytest.approx(row["val_nats_per_char"] / math.log(2))
        assert row["val_perplexity"] == pytest.approx(math.exp(row["val_nats_per_char"]))
    assert [row["order"] for row in metrics["markov"]] == [0, 1, 2]
    # 300 validation characters in 4 streams of 75: (75 - 1) // 8 = 9 batches of 8 per stream.
    assert metrics["validation_characters_scored"] == 4 * 9 * 8
    assert metrics["vocabulary_size"] == len(set(_words_text()[:900])) + 1

    # evaluate re-reads the saved corpus and reproduces the best epoch's number.
    assert recipe.main(["evaluate", "--workdir", workdir]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["nats_per_char"] == pytest.approx(metrics["best"]["val_nats_per_char"], rel=1e-5)

    sample_args = ["sample", "--workdir", workdir, "--prompt", "the ", "--length", "40", "--seed", "5"]
    assert recipe.main(sample_args) == 0
    first = capsys.readouterr()
    assert recipe.main(sample_args) == 0
    second = capsys.readouterr()
    assert first.out == second.out and first.out.startswith("the ") and len(first.out) == 4 + 40 + 1
    assert "characters/s" in first.err
    code, _, err = _run_cli(["sample", "--workdir", workdir, "--prompt", ""], capsys)
    assert code != 0 and "prompt" in err and err.startswith("error: ")
    code, _, err = _run_cli(["sample", "--workdir", workdir, "--temperature", "-1"], capsys)
    assert code != 0 and "temperature" in err

    assert recipe.main(["export", "--workdir", workdir]) == 0
    export_dir = os.path.join(workdir, "export")
    assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))

    # The Keras model's log-probabilities for the same prompt, for comparison.
    model = keras.saving.load_model(os.path.join(workdir, "checkpoints", "best.keras"), safe_mode=True)
    train_config = CharLMConfig(**{**config, "markov_orders": tuple(config["markov_orders"])})
    stateless = model_lib.build_model(train_config, vocabulary_size=metrics["vocabulary_size"], stateful=False)
    stateless.set_weights(model.get_weights())
    characters = [""] + json.load(open(os.path.join(workdir, "vocabulary.json"), encoding="utf-8"))["characters"]
    prompt = "the dog\u2603"  # the snowman was never seen: out-of-vocabulary id 0
    ids = np.array([[characters.index(c) if c in characters else 0 for c in prompt]], dtype=np.int32)
    expected = tf.nn.log_softmax(stateless(ids)[0, -1]).numpy()

    result = run_in_fresh_python(
        f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        generate = loaded.signatures["generate"]
        def text(seed, temperature=1.0):
            out = generate(prompt=tf.constant("the "), length=tf.constant(25),
                           temperature=tf.constant(temperature), seed=tf.constant(seed))
            return out["text"].numpy().decode("utf-8")
        probs = loaded.signatures["next_char_log_probs"](prompt=tf.constant({prompt!r}))
        print(json.dumps({{
            "a": text(1), "b": text(1), "c": text(2), "greedy": text(9, 0.0), "greedy2": text(10, 0.0),
            "characters": [c.decode("utf-8") for c in probs["characters"].numpy()],
            "log_probs": probs["log_probs"].numpy().tolist(),
        }}))
        """,
        cwd=str(tmp_path),
    )
    assert len(result["a"]) == 25
    assert result["a"] == result["b"] and result["a"] != result["c"]
    assert result["greedy"] == result["greedy2"]
    assert result["characters"] == characters
    np.testing.assert_allclose(result["log_probs"], expected, atol=1e-5)
    assert np.exp(result["log_probs"]).sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("averaging", [[], ["ema_decay=0.5"]], ids=["trained-weights", "ema"])
def test_resume_after_stops_finishes_every_batch_once_and_continues_the_streams(tmp_path, text_file, capsys, averaging):
    # 900 training characters in 4 streams of 225: (225 - 1) // 50 = 4 batches
    # per epoch. Without dropout the sessions' random draws do not matter.
    # With `ema_decay` the checkpoints hold the moving average, which each
    # session must resume with the optimizer.
    overrides = [*TINY, "seq_len=50", "epochs=1", "dropout=0", "learning_rate=0.05", *averaging]

    def train(name, extra):
        workdir = str(tmp_path / name)
        arguments = ["train", "--workdir", workdir, "--text", text_file, "--quiet", *_sets([*overrides, *extra])]
        assert recipe.main(arguments) == 0
        metrics = json.load(open(os.path.join(workdir, "metrics.json")))
        if extra:
            assert metrics["time_budget_exhausted"]
            with pytest.raises(ValueError, match="--resume"):
                recipe.main(arguments)
        for _ in range(4):
            if not metrics["time_budget_exhausted"]:
                break
            assert recipe.main([*arguments, "--resume"]) == 0
            metrics = json.load(open(os.path.join(workdir, "metrics.json")))
        assert not metrics["time_budget_exhausted"]
        assert [row["epoch"] for row in metrics["curve"]] == [1]
        assert not os.path.exists(os.path.join(workdir, "backup"))
        model = keras.saving.load_model(os.path.join(workdir, "checkpoints", "last.keras"), safe_mode=True)
        assert int(model.optimizer.iterations.numpy()) == 4
        return model.get_weights(), metrics["final"]["val_nats_per_char"]

    whole, whole_loss = train("whole", [])
    # The budget stops each session after a batch or so; every session
    # validates (resetting the states) before it backs up mid-epoch, and the
    # next one continues each stream from its backed-up state.
    pieces, pieces_loss = train("pieces", ["max_minutes=0.00001"])
    for expected, weight in zip(whole, pieces):
        np.testing.assert_allclose(weight, expected, atol=1e-6)
    assert pieces_loss == pytest.approx(whole_loss, abs=1e-6)


def test_a_cosine_schedule_is_saved_with_the_run_and_ends_at_zero(tmp_path, text_file, capsys):
    # 4 batches per epoch (see above), 2 epochs: the rate decays to 0 over 8 steps.
    overrides = [*TINY, "seq_len=50", "dropout=0", "learning_rate=0.05"]

    def finish(name, extra):
        workdir = str(tmp_path / name)
        arguments = ["train", "--workdir", workdir, "--text", text_file, "--quiet", *_sets([*overrides, *extra])]
        assert recipe.main(arguments) == 0
        model = keras.saving.load_model(os.path.join(workdir, "checkpoints", "last.keras"), safe_mode=True)
        assert int(model.optimizer.iterations.numpy()) == 8
        return model

    cosine = finish("cosine", ["lr_schedule=cosine"])
    schedule = cosine.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(4)) == pytest.approx(0.025) and float(cosine.optimizer.learning_rate) == 0.0
    constant = finish("constant", ["lr_schedule=constant"])
    assert float(constant.optimizer.learning_rate) == pytest.approx(0.05)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(cosine.get_weights(), constant.get_weights())) > 1e-3


def test_resume_says_from_which_epoch_and_batch(tmp_path, text_file, capsys):
    workdir = str(tmp_path / "run")
    # 4 batches per epoch (as above); the budget stops each session after one batch.
    overrides = [*TINY, "seq_len=50", "epochs=1", "max_minutes=0.00001"]
    arguments = ["train", "--workdir", workdir, "--text", text_file, "--quiet", *_sets(overrides)]
    assert recipe.main(arguments) == 0
    first = capsys.readouterr().out.splitlines()
    assert not [line for line in first if line.startswith(("resuming", "nothing to resume"))]  # no --resume
    position = os.path.join(workdir, "backup", "latest", "position.json")
    assert json.load(open(position)) == {"epoch": 0, "batch": 1}
    saved_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(position)))
    assert recipe.main([*arguments, "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"resuming from epoch 1, batch 1 (backup of {saved_at})" in lines
    assert json.load(open(position)) == {"epoch": 0, "batch": 2}


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, text_file, capsys):
    workdir = str(tmp_path / "new")
    arguments = ["train", "--workdir", workdir, "--text", text_file, "--quiet", "--resume"]
    assert recipe.main([*arguments, *_sets([*TINY, "seq_len=50", "epochs=1"])]) == 0
    assert "nothing to resume: starting fresh" in capsys.readouterr().out.splitlines()
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert metrics["epochs_completed"] == 1 and not metrics["time_budget_exhausted"]
    assert json.load(open(os.path.join(workdir, "config.json")))["seq_len"] == 50


def test_a_variant_cell_resumes_loads_and_exports(tmp_path, text_file, capsys):
    import layers
    from zoo import litert
    from zoo.char_lm import export as export_lib

    workdir = str(tmp_path / "run")
    # 4 batches per epoch (as above); the budget stops each session after one batch.
    overrides = [*TINY, "cell=projection_lstm", "proj_units=6", "seq_len=50", "epochs=1", "max_minutes=0.00001"]
    arguments = ["train", "--workdir", workdir, "--text", text_file, "--quiet", *_sets(overrides)]
    assert recipe.main(arguments) == 0
    assert recipe.main([*arguments, "--resume"]) == 0
    assert "resuming from epoch 1, batch 1" in capsys.readouterr().out
    position = os.path.join(workdir, "backup", "latest", "position.json")
    assert json.load(open(position)) == {"epoch": 0, "batch": 2}
    model = keras.saving.load_model(os.path.join(workdir, "checkpoints", "last.keras"), safe_mode=True)
    (layer,) = model_lib.recurrent_layers(model)
    assert isinstance(layer, layers.ProjectionLSTM) and layer.cell.state_size == [6, 16]
    # The .tflite (a WHILE loop: the converter fuses only the plain LSTM) and its step signature, whose h0 has
    # the projection's size, must equal the Keras model to 1e-5 or the export raises.
    report = export_lib.export_litert(workdir, step=True)
    assert report["operators"]["WHILE"] == 1 and litert.FUSED_LSTM not in report["operators"]
    assert report["max_difference"] <= 1e-5 and report["max_step_difference"] <= 1e-5
    assert litert.metadata(open(report["path"], "rb").read())["states"] == {"h0": [1, 6], "c0": [1, 16]}


def test_benchmark_trains_ours_and_keras_side_by_side(tmp_path, text_file, capsys):
    workdir = str(tmp_path / "bench")
    assert recipe.main(["benchmark", "--workdir", workdir, "--text", text_file, *_sets(TINY)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["ours"], ["keras"])}
    assert set(rows) == {"ours", "keras"}
    for epochs, first, median, final, best in rows.values():
        assert epochs == "2" and float(first) > 0 and float(median) > 0
        assert math.isfinite(float(final)) and math.isfinite(float(best))
    assert "time per epoch, keras / ours: " in out and "same initial weights: yes" in out
    result = json.load(open(os.path.join(workdir, "benchmark.json")))
    assert result["same_initial_weights"] is True
    ours, theirs = result["implementations"]["ours"], result["implementations"]["keras"]
    assert len(ours["epoch_seconds"]) == len(theirs["epoch_seconds"]) == 2
    # The same weights, data and dropout draws: the two implementations of the same network learn the same.
    np.testing.assert_allclose(ours["val_nats_per_char"], theirs["val_nats_per_char"], atol=1e-3)
    comparison = result["summary"]["keras_over_ours"]
    assert comparison["median_epoch_time_ratio"] == pytest.approx(theirs["epoch_seconds"][1] / ours["epoch_seconds"][1])


def test_benchmark_with_ema_decay_validates_the_average_and_trains_the_weights(tmp_path, text_file, capsys):
    # One fit per epoch: each must leave the trained weights in the model
    # (not Keras's finalized average), so training takes the same steps as
    # without averaging, while validation scores the average.
    results = {}
    for name, extra in (("plain", []), ("ema", ["ema_decay=0.9"])):
        workdir = str(tmp_path / name)
        arguments = ["benchmark", "--workdir", workdir, "--text", text_file, "--implementations", "ours"]
        assert recipe.main([*arguments, *_sets([*TINY, "epochs=3", "dropout=0", *extra])]) == 0
        results[name] = json.load(open(os.path.join(workdir, "benchmark.json")))["implementations"]["ours"]
    np.testing.assert_allclose(
        results["ema"]["train_nats_per_char"], results["plain"]["train_nats_per_char"], rtol=1e-6
    )
    assert all(
        abs(a - b) > 1e-4 for a, b in zip(results["ema"]["val_nats_per_char"], results["plain"]["val_nats_per_char"])
    )


@pytest.mark.parametrize(
    "make_argv, words",
    [
        (lambda tmp, text: ["train", "--workdir", tmp, "--set", "unitz=3"], ["unitz", "Known fields"]),
        (
            lambda tmp, text: ["benchmark", "--workdir", tmp, "--text", text, "--set", "cell=peephole_lstm"],
            ["implementation='keras' with cell=peephole_lstm", "no built-in layer"],
        ),
        (
            lambda tmp, text: ["benchmark", "--workdir", tmp, "--text", text, "--implementations", "ours,tf"],
            ["`--implementations`", "'ours,tf'", "ours, keras"],
        ),
        (
            lambda tmp, text: [
                "train",
                "--workdir",
                tmp,
                "--set",
                "implementation=keras",
                "--set",
                "cell=layernorm_gru",
            ],
            ["implementation='keras' with cell=layernorm_gru"],
        ),
        (lambda tmp, text: ["train", "--workdir", tmp, "--set", "cell=transformer"], ["cell", "transformer"]),
        (lambda tmp, text: ["train", "--workdir", tmp, "--set", "units=0"], ["units", "positive"]),
        (
            lambda tmp, text: ["train", "--workdir", tmp, "--set", "proj_units=8"],
            ["proj_units=8 with cell=lstm", "projection_lstm only"],
        ),
        (lambda tmp, text: ["train", "--workdir", tmp, "--text", tmp + "/nope.txt"], ["nope.txt", "does not exist"]),
        (
            lambda tmp, text: ["train", "--workdir", tmp, "--text", text, "--set", "batch_size=64"],
            ["shorter than one batch", "batch_size"],
        ),
        (
            lambda tmp, text: ["train", "--workdir", tmp, "--text", text, "--tfds", "tiny_shakespeare"],
            ["at most one source"],
        ),
        (lambda tmp, text: ["sample", "--workdir", tmp, "--prompt", "x"], ["config.json"]),
        (lambda tmp, text: ["baselines", "--data-dir", tmp], ["--tfds"]),
    ],
)
def test_cli_prints_error_and_exits_non_zero(tmp_path, text_file, capsys, make_argv, words):
    code, out, err = _run_cli(make_argv(str(tmp_path), text_file), capsys)
    assert code != 0
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    "content, words",
    [(b"", ["is empty"]), ("caf\u00e9 au lait".encode("latin-1"), ["not valid utf-8", "offset 3"])],
)
def test_cli_rejects_unusable_files(tmp_path, capsys, content, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, _, err = _run_cli(["train", "--workdir", str(tmp_path / "run"), "--text", str(path)], capsys)
    assert code != 0 and err.startswith("error: ")
    for word in words:
        assert word in err


def test_baselines_from_tfds_mock(capsys):
    import tensorflow_datasets as tfds

    text = _words_text(2000, seed=1)

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"text": [text[:1000], text[1000:]]})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        assert recipe.main(["baselines", "--tfds", "tiny_shakespeare", *_sets(TINY)]) == 0
    out = capsys.readouterr().out
    assert "tfds tiny_shakespeare[train]" in out
    rows = {line.split(" (KN)")[0]: float(line.split()[4]) for line in out.splitlines() if "(KN)" in line}
    # A text of random words: knowing the previous characters helps a lot.
    assert rows["markov order 2"] < rows["markov order 1"] < rows["markov order 0"]


def test_bare_baselines_use_the_embedded_text(capsys):
    assert recipe.main(["baselines", "--set", "markov_orders=1"]) == 0
    out = capsys.readouterr().out
    assert "embedded pydoc_data.topics" in out
    nats = float([line for line in out.splitlines() if "(KN)" in line][0].split()[4])
    assert 1.5 < nats < 3.0


def test_help_explains_every_verb(capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("train", "evaluate", "sample", "export", "baselines", "benchmark"):
        assert verb in out


def test_train_help_explains_every_config_field(capsys):
    with pytest.raises(SystemExit):
        recipe.main(["train", "--help"])
    out = capsys.readouterr().out
    for field in CharLMConfig.__dataclass_fields__:
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{field}="))
        assert len(line.split(": ", 1)[1]) > 10  # the comment from the config's source
