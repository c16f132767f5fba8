"""The shared pieces every recipe uses: config overrides, atomic files, training path."""

import dataclasses
import json
import os
import time
from typing import Literal

import keras
import numpy as np
import pytest

from zoo import callbacks, cells, registry, training
from zoo import config as config_lib
from zoo import workdir as workdir_lib
from zoo.errors import UserError, UserFileNotFoundError, UserIsADirectoryError, UserTypeError
from zoo.files import atomic_path, atomic_write_json, read_text


@dataclasses.dataclass
class ToyConfig:
    units: int = 8  # width
    rate: float = 0.1  # learning rate
    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # which cell
    flag: bool = False  # a switch
    sizes: tuple[int, ...] = (1, 2)  # a list
    budget: float | None = None  # minutes
    seed: int = 0  # random seed

    def validate(self):
        if self.units <= 0:
            raise ValueError(f"Received an invalid value for `units`: {self.units}; expected a positive integer.")


def test_overrides_parse_each_type():
    config = config_lib.apply_overrides(
        ToyConfig(), ["units=16", "rate=0.5", "cell=gru", "flag=true", "sizes=3,4,5", "budget=2.5", "seed=7"]
    )
    assert config == ToyConfig(units=16, rate=0.5, cell="gru", flag=True, sizes=(3, 4, 5), budget=2.5, seed=7)
    assert config_lib.apply_overrides(config, ["budget=none"]).budget is None


@pytest.mark.parametrize(
    "override, words",
    [
        ("unitz=3", ["unitz", "Known fields", "units"]),
        ("units", ["key=value"]),
        ("units=many", ["units", "many", "int"]),
        ("cell=transformer", ["cell", "transformer", "lstm"]),
        ("flag=maybe", ["flag", "maybe"]),
        ("units=0", ["units", "positive"]),
    ],
)
def test_bad_overrides_name_the_field(override, words):
    with pytest.raises(ValueError) as error:
        config_lib.apply_overrides(ToyConfig(), [override])
    for word in words:
        assert word in str(error.value)


def test_config_round_trip(tmp_path):
    config = ToyConfig(units=3, sizes=(9,))
    config_lib.save(config, tmp_path / "config.json")
    assert config_lib.load(ToyConfig, tmp_path / "config.json") == config
    (tmp_path / "bad.json").write_text(json.dumps({"units": 3, "colour": "red"}))
    with pytest.raises(ValueError, match="colour"):
        config_lib.load(ToyConfig, tmp_path / "bad.json")


def test_atomic_path_keeps_previous_on_failure(tmp_path):
    target = tmp_path / "export"
    with atomic_path(target) as temporary:
        os.makedirs(temporary)
        (open(os.path.join(temporary, "v"), "w")).write("1")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            os.makedirs(temporary)
            (open(os.path.join(temporary, "v"), "w")).write("2")
            raise RuntimeError("interrupted")
    assert (target / "v").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["export"]
    with atomic_path(target) as temporary:
        os.makedirs(temporary)
        (open(os.path.join(temporary, "v"), "w")).write("3")
    assert (target / "v").read_text() == "3"
    atomic_write_json(tmp_path / "m.json", {"a": np.float32(1.5)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.5}


def test_registry_unknown_name_lists_known():
    registry.register("toy/test-model")(lambda config: None)
    with pytest.raises(ValueError) as error:
        registry.get("toy/nope")
    assert "toy/nope" in str(error.value) and "toy/test-model" in str(error.value)


def test_prepare_workdir_refuses_to_mix_runs(tmp_path):
    config = ToyConfig()
    assert workdir_lib.prepare_workdir(str(tmp_path), config) == config
    os.makedirs(tmp_path / training.CHECKPOINT_DIR)
    with pytest.raises(ValueError, match="--resume"):
        workdir_lib.prepare_workdir(str(tmp_path), config)
    assert workdir_lib.prepare_workdir(str(tmp_path), config, resume=True) == config
    with pytest.raises(ValueError, match="units"):
        workdir_lib.prepare_workdir(str(tmp_path), ToyConfig(units=4), resume=True)


def _toy_model(learning_rate):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def _dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def test_fit_writes_checkpoints_resumes_and_stops_on_nan(tmp_path):
    training.set_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    workdir = str(tmp_path / "ok")
    result = training.fit(
        _toy_model(0.05),
        _dataset(x, y),
        workdir=workdir,
        epochs=3,
        validation_data=_dataset(x, y),
        verbose=0,
        tensorboard=False,
    )
    losses = result["history"]["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert len(result["epoch_seconds"]) == 3 and all(seconds > 0 for seconds in result["epoch_seconds"])
    restored = keras.saving.load_model(result["last_checkpoint"], safe_mode=True)
    assert restored.evaluate(_dataset(x, y), verbose=0) == pytest.approx(result["history"]["val_loss"][-1], rel=1e-5)
    assert os.path.exists(result["best_checkpoint"])

    # A learning rate this large makes the loss overflow: training stops with a
    # clear message, and the checkpoint from the good first run is kept.
    before = os.path.getmtime(result["last_checkpoint"])
    y_huge = y * 1e30
    with pytest.raises(training.TrainingDiverged, match="epoch 1, batch"):
        training.fit(
            _toy_model(1e10),
            _dataset(x, y_huge),
            workdir=workdir,
            epochs=2,
            verbose=0,
            tensorboard=False,
        )
    assert os.path.getmtime(result["last_checkpoint"]) == before


def test_a_later_session_never_replaces_a_better_best_checkpoint(tmp_path):
    training.set_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    workdir = str(tmp_path)
    first = training.fit(
        _toy_model(0.05),
        _dataset(x, y),
        workdir=workdir,
        epochs=3,
        validation_data=_dataset(x, y),
        verbose=0,
        tensorboard=False,
    )
    best_loss = min(first["history"]["val_loss"])
    record = json.loads(open(os.path.join(workdir, "checkpoints", "best.json")).read())
    assert record["monitor"] == "val_loss" and record["value"] == pytest.approx(best_loss)
    assert record["epoch"] == 1 + first["history"]["val_loss"].index(best_loss)
    best_time = os.path.getmtime(first["best_checkpoint"])

    # Another session in the same directory (as after a restart) whose model
    # never learns (learning rate 0): its epochs are worse than the recorded
    # best, so best.keras stays; last.keras follows the new session.
    second = training.fit(
        _toy_model(0.0),
        _dataset(x, y),
        workdir=workdir,
        epochs=1,
        validation_data=_dataset(x, y),
        verbose=0,
        tensorboard=False,
    )
    assert second["history"]["val_loss"][0] > 2 * best_loss
    assert os.path.getmtime(first["best_checkpoint"]) == best_time
    kept = keras.saving.load_model(first["best_checkpoint"], safe_mode=True)
    assert kept.evaluate(_dataset(x, y), verbose=0) == pytest.approx(best_loss, rel=1e-5)
    last = keras.saving.load_model(second["last_checkpoint"], safe_mode=True)
    assert last.evaluate(_dataset(x, y), verbose=0) == pytest.approx(second["history"]["val_loss"][0], rel=1e-5)


@pytest.mark.parametrize(
    "monitor, mode, values, best_epoch",
    [
        ("val_accuracy", "auto", [0.5, 0.7, 0.6, 0.7], 2),
        ("val_loss", "auto", [0.9, 0.4, 0.6, 0.3], 4),
        ("val_margin", "max", [0.1, 0.3, 0.2, 0.0], 2),
        ("val_auc", "min", [0.9, 0.8, 0.85, 0.95], 2),
    ],
)
def test_best_checkpoint_follows_the_monitor_and_its_direction(tmp_path, monitor, mode, values, best_epoch):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    checkpoint = training.AtomicCheckpoint(str(tmp_path), monitor, mode)
    checkpoint.set_model(model)
    for epoch, value in enumerate(values):
        model.layers[0].kernel.assign([[float(epoch + 1)]])  # the weights name the epoch
        checkpoint.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
    kept = keras.saving.load_model(str(tmp_path / "best.keras"), safe_mode=True)
    assert float(kept.layers[0].kernel.numpy()[0, 0]) == best_epoch
    record = json.loads((tmp_path / "best.json").read_text())
    assert record == {"monitor": monitor, "value": pytest.approx(values[best_epoch - 1]), "epoch": best_epoch}


def test_fit_keeps_the_best_epoch_by_a_chosen_monitor(tmp_path):
    training.set_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = _toy_model(0.05)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    result = training.fit(
        model,
        _dataset(x, y),
        workdir=str(tmp_path),
        epochs=3,
        validation_data=_dataset(x, y),
        verbose=0,
        tensorboard=False,
        monitor="val_mae",
    )
    maes = result["history"]["val_mae"]
    record = json.loads(open(os.path.join(str(tmp_path), "checkpoints", "best.json")).read())
    assert record["monitor"] == "val_mae" and record["value"] == pytest.approx(min(maes))
    kept = keras.saving.load_model(result["best_checkpoint"], safe_mode=True)
    assert kept.evaluate(_dataset(x, y), verbose=0)[1] == pytest.approx(min(maes), rel=1e-5)


def test_lower_is_better_reads_the_monitor_name_or_the_mode():
    assert callbacks.lower_is_better("val_loss") and callbacks.lower_is_better("val_mae")
    assert not callbacks.lower_is_better("val_accuracy") and not callbacks.lower_is_better("val_auc")
    assert callbacks.lower_is_better("val_accuracy", "min") and not callbacks.lower_is_better("val_loss", "max")
    with pytest.raises(ValueError, match="`mode`.*'auto', 'min', 'max'.*'up'"):
        callbacks.lower_is_better("val_loss", "up")


def test_time_budget_stops_after_current_batch(tmp_path):
    x = np.zeros((64, 3), "float32")
    result = training.fit(
        _toy_model(0.01),
        _dataset(x, x[:, :1]),
        workdir=str(tmp_path),
        epochs=50,
        max_minutes=1e-9,
        verbose=0,
        tensorboard=False,
    )
    assert result["time_budget_exhausted"]
    assert len(result["history"]["loss"]) == 1


def test_fit_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        training.fit(_toy_model(0.1), None, workdir=str(tmp_path), epochs=0)
    with pytest.raises(ValueError, match="max_minutes"):
        training.fit(_toy_model(0.1), None, workdir=str(tmp_path), epochs=1, max_minutes=-1)
    with pytest.raises(TypeError, match="seed"):
        training.set_seed("1")


# ----------------------------------------------------------------- what a resumed fit says


def _position_path(workdir):
    return os.path.join(workdir, training.BACKUP_DIR, "latest", "position.json")


def _saved_at(workdir):
    saved = os.path.getmtime(_position_path(workdir))
    assert abs(time.time() - saved) < 600  # written by this test, not some other time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved))


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _regression_data():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    return _dataset(x, x.sum(axis=1, keepdims=True))  # 4 batches of 16


def test_fit_says_nothing_to_resume_only_when_asked_to_resume(tmp_path):
    for resume, expected in ((False, []), (True, ["nothing to resume: starting fresh"])):
        messages = []
        result = training.fit(
            _toy_model(0.01),
            _regression_data(),
            workdir=str(tmp_path / f"resume-{resume}"),
            epochs=2,
            verbose=0,
            tensorboard=False,
            log=messages.append,
            resume=resume,
        )
        assert messages == expected
        assert len(result["history"]["loss"]) == 2


def test_fit_says_from_which_epoch_and_batch_it_resumes(tmp_path):
    workdir = str(tmp_path)
    training.set_seed(0)
    # The budget ends the first session after its first batch of 4: the backup is mid-epoch 1.
    first = training.fit(
        _toy_model(0.01), _regression_data(), workdir=workdir, epochs=2, max_minutes=1e-9, verbose=0, tensorboard=False
    )
    assert first["time_budget_exhausted"]
    assert json.loads(open(_position_path(workdir)).read()) == {"epoch": 0, "batch": 1}
    guard = json.loads(open(os.path.join(os.path.dirname(_position_path(workdir)), "guard.json")).read())
    assert guard["first_loss"] > 0  # the divergence guard's reference, kept for the resumed session
    saved_at = _saved_at(workdir)
    messages, counter = [], _CountBatches()
    second = training.fit(
        _toy_model(0.01),
        _regression_data(),
        workdir=workdir,
        epochs=2,
        callbacks=[counter],
        verbose=0,
        tensorboard=False,
        log=messages.append,
    )
    assert messages == [f"resuming from epoch 1, batch 1 (backup of {saved_at})"]
    assert counter.batches == 3 + 4 and len(second["history"]["loss"]) == 2
    assert not os.path.exists(os.path.join(workdir, training.BACKUP_DIR))


@pytest.mark.parametrize(
    "position, steps_per_epoch, message, batches",
    [
        # A backup after the epoch's last batch continues at the next epoch.
        ({"epoch": 0, "batch": 4}, None, "resuming from epoch 2, batch 0", 4),
        ({"epoch": 0, "batch": 4}, 4, "resuming from epoch 2, batch 0", 4),
        ({"epoch": 1, "batch": 0}, None, "resuming from epoch 2, batch 0", 4),
        ({"epoch": 0, "batch": 2}, 4, "resuming from epoch 1, batch 2", 2 + 4),
        ({"epoch": 1, "batch": 4}, None, "resuming at the end of the last epoch, 2", 0),
    ],
)
def test_fit_says_where_it_resumes_at_an_epoch_boundary(tmp_path, position, steps_per_epoch, message, batches):
    workdir = str(tmp_path)
    data = _regression_data() if steps_per_epoch is None else _regression_data().repeat()
    training.fit(
        _toy_model(0.01),
        data,
        workdir=workdir,
        epochs=2,
        max_minutes=1e-9,
        steps_per_epoch=steps_per_epoch,
        verbose=0,
        tensorboard=False,
    )
    atomic_write_json(_position_path(workdir), position)  # as if the backup had been taken there
    saved_at = _saved_at(workdir)
    messages, counter = [], _CountBatches()
    training.fit(
        _toy_model(0.01),
        data,
        workdir=workdir,
        epochs=2,
        steps_per_epoch=steps_per_epoch,
        callbacks=[counter],
        verbose=0,
        tensorboard=False,
        log=messages.append,
        resume=True,
    )
    ending = ": nothing left to train" if batches == 0 else ""
    assert messages == [f"{message} (backup of {saved_at}){ending}"]
    assert counter.batches == batches


def test_prepare_workdir_with_resume_and_no_earlier_run_starts_fresh(tmp_path):
    workdir = str(tmp_path / "new")
    config = ToyConfig(units=5)
    assert workdir_lib.prepare_workdir(workdir, config, resume=True) == config
    assert config_lib.load(ToyConfig, os.path.join(workdir, "config.json")) == config
    # The config written then is the one a later resume must match.
    with pytest.raises(UserError, match="units"):
        workdir_lib.prepare_workdir(workdir, ToyConfig(units=6), resume=True)


# ----------------------------------------------------------------- shared helpers


def test_require_int_accepts_integers_and_names_the_field_otherwise():
    assert config_lib.require_int("units", 3) == 3
    assert config_lib.require_int("units", np.int64(3)) == 3
    assert config_lib.require_int("top_k", 0, minimum=0) == 0
    for value in (True, 2.0, "3", None):
        with pytest.raises(UserTypeError, match="`units`") as error:
            config_lib.require_int("units", value)
        assert isinstance(error.value, TypeError) and isinstance(error.value, ValueError)
    with pytest.raises(UserError, match=r"`units`: 0; expected a positive integer"):
        config_lib.require_int("units", 0)
    with pytest.raises(UserError, match=r"`length`: -1; expected a non-negative integer"):
        config_lib.require_int("length", -1, minimum=0)
    with pytest.raises(UserError, match=r"`num_classes`: 1; expected an integer >= 2"):
        config_lib.require_int("num_classes", 1, minimum=2)
    with pytest.raises(UserError, match=r"expected 0 \(off\) or a positive integer"):
        config_lib.require_int("patience", -1, minimum=0, expected="0 (off) or a positive integer")
    with pytest.raises(UserError, match=r"`pooling`: 'sum'; expected one of \['max', 'mean'\]"):
        config_lib.require_choice("pooling", "sum", ("max", "mean"))


def test_refuse_existing_run_keeps_each_message(tmp_path):
    workdir = str(tmp_path)
    workdir_lib.refuse_existing_run(workdir, ("runs",), resume=False)
    os.makedirs(tmp_path / "runs")
    with pytest.raises(UserError, match="already holds a memory study. Pass --resume"):
        workdir_lib.refuse_existing_run(workdir, ("folds", "runs"), resume=False, holds="a memory study")
    with pytest.raises(UserError, match="already holds a run"):
        workdir_lib.refuse_existing_run(workdir, ("runs",), resume=False)
    workdir_lib.refuse_existing_run(workdir, ("runs",), resume=True)


def test_cell_names_accept_the_old_spellings():
    import layers

    assert [cells.canonical(name) for name in ("rnn", "simple_rnn", "SimpleRNN", "LSTM", "gru")] == [
        "rnn",
        "rnn",
        "rnn",
        "lstm",
        "gru",
    ]
    assert cells.layer_class("simple_rnn") is layers.SimpleRNN and cells.layer_class("GRU") is layers.GRU
    assert cells.canonical_name("simple_rnn-autoregressive") == "rnn-autoregressive"
    assert cells.canonical_name("conv") == "conv"
    assert cells.is_cell("SimpleRNN") and not cells.is_cell("conv")
    with pytest.raises(
        UserError, match=r"`cell`: 'transformer'; expected one of \['rnn', 'lstm', 'gru', 'layernorm_rnn', "
    ):
        cells.canonical("transformer")


def test_variant_cell_names_and_their_arguments():
    import layers

    expected = {
        "layernorm_rnn": layers.LayerNormSimpleRNN,
        "layernorm_lstm": layers.LayerNormLSTM,
        "layernorm_gru": layers.LayerNormGRU,
        "peephole_lstm": layers.PeepholeLSTM,
        "projection_lstm": layers.ProjectionLSTM,
    }
    assert {name: cells.layer_class(name) for name in cells.VARIANTS} == expected
    assert all(cells.is_cell(name) and cells.canonical(name) == name for name in cells.VARIANTS)
    assert cells.canonical_name("layernorm_gru-autoregressive") == "layernorm_gru-autoregressive"
    message = str(pytest.raises(UserError, cells.canonical, "layernorm", "models").value)
    assert message.count("\n") == 0 and "`models`: 'layernorm'" in message
    assert all(repr(name) in message for name in cells.CELLS)
    # projection_lstm projects to units // 2 (at least 1) unless proj_units says otherwise; no other cell takes it.
    assert cells.layer_arguments("projection_lstm", 64) == {"proj_units": 32}
    assert cells.layer_arguments("projection_lstm", 1) == {"proj_units": 1}
    assert cells.layer_arguments("projection_lstm", 64, 48) == {"proj_units": 48}
    assert cells.layer_arguments("layernorm_lstm", 64, 48) == {} and cells.layer_arguments("LSTM", 64) == {}
    assert cells.require_proj_units(0, ["lstm"]) == 0
    assert cells.require_proj_units(8, ["conv", "projection_lstm-autoregressive"], "models") == 8
    with pytest.raises(UserError, match=r"proj_units=8 with models=lstm,gru; proj_units applies to projection_lstm"):
        cells.require_proj_units(8, ["lstm", "gru"], "models")
    with pytest.raises(UserError, match=r"`proj_units`.*expected 0 \(units // 2 for projection_lstm\)"):
        cells.require_proj_units(-1, ["projection_lstm"])


def test_implementation_picks_our_layer_or_keras_built_in():
    import layers

    assert cells.IMPLEMENTATIONS == ("ours", "keras")
    assert [cells.layer_class(name, "keras") for name in ("rnn", "simple_rnn", "LSTM", "gru")] == [
        keras.layers.SimpleRNN,
        keras.layers.SimpleRNN,
        keras.layers.LSTM,
        keras.layers.GRU,
    ]
    assert cells.layer_class("lstm", "ours") is cells.layer_class("lstm") is layers.LSTM
    assert cells.require_implementation("keras", ["conv", "gru-autoregressive", "simple_rnn"], "models") == "keras"
    assert cells.has_keras_layer("simple_rnn-autoregressive") and not cells.has_keras_layer("peephole_lstm")
    assert not cells.has_keras_layer("conv")
    for name in cells.VARIANTS:
        with pytest.raises(UserError, match=f"implementation='keras' with cell={name}; Keras has no built-in layer"):
            cells.layer_class(name, "keras")
        assert cells.layer_class(name, "ours") is cells.layer_class(name)
    with pytest.raises(UserError, match=r"models=layernorm_gru-autoregressive; .*set implementation=ours"):
        cells.require_implementation("keras", ["lstm", "layernorm_gru-autoregressive"], "models")
    with pytest.raises(UserError, match=r"`implementation`: 'tf'; expected one of \['ours', 'keras'\]"):
        cells.layer_class("lstm", "tf")


def _recipe_configs():
    from zoo.char_lm.config import CharLMConfig
    from zoo.forecast.config import ForecastConfig
    from zoo.memory.config import MemoryConfig, StudyConfig
    from zoo.sentiment.config import SentimentConfig

    return {
        "cell": (CharLMConfig, SentimentConfig),
        "models": (ForecastConfig, StudyConfig),
        "model": (MemoryConfig,),
    }


def test_every_recipe_config_checks_implementation():
    for field, classes in _recipe_configs().items():
        for config_class in classes:
            base = config_class()
            if config_class.__name__ == "StudyConfig":
                base = dataclasses.replace(base, truncation_models=())
            assert base.implementation == "ours"
            assert config_lib.apply_overrides(base, ["implementation=keras"]).implementation == "keras"
            message = str(pytest.raises(UserError, config_lib.apply_overrides, base, ["implementation=Keras"]).value)
            assert (
                message == "Received an invalid value for `implementation`: 'Keras'; expected one of ['ours', 'keras']."
            )
            variant = "layernorm_lstm" if field != "models" else "conv,layernorm_lstm"
            with pytest.raises(UserError, match=f"implementation='keras' with {field}=layernorm_lstm; Keras has no"):
                config_lib.apply_overrides(base, [f"{field}={variant}", "implementation=keras"])


def test_arguments_only_our_layers_take_are_refused_with_keras():
    from zoo.memory.config import MemoryConfig, StudyConfig
    from zoo.memory.model import build_model

    with pytest.raises(UserError, match=r"bptt_steps=5 with implementation='keras'; Keras's layers have no truncated"):
        MemoryConfig(bptt_steps=5, implementation="keras").validate()
    with pytest.raises(UserError, match=r"truncation_models=lstm,gru; the truncated-BPTT runs need `bptt_steps`"):
        StudyConfig(implementation="keras").validate()
    model = build_model(MemoryConfig(length=4, parameter_budget=50, implementation="keras"))
    assert type(model.get_layer("recurrent")) is keras.layers.LSTM
    run = StudyConfig(implementation="keras", truncation_models=()).run_config("adding", "gru", 8)
    assert run.implementation == "keras"


def test_registry_resolves_cell_aliases_and_lists_known_names():
    from zoo.forecast.config import ForecastConfig

    config = ForecastConfig(window=5, horizon=2, units=3)
    assert registry.get("forecast/simple_rnn") is registry.get("forecast/rnn")
    model = registry.build("forecast/simple_rnn-autoregressive", config)
    assert model.output_shape == (None, 1)
    with pytest.raises(UserError) as error:
        registry.build("forecast/transformer", config)
    assert "forecast/transformer" in str(error.value) and "forecast/gru-autoregressive" in str(error.value)
    assert "sentiment/baseline" in registry.names("sentiment/")


def test_user_file_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "absent.txt")
    with pytest.raises(UserFileNotFoundError, match="absent.txt"):
        read_text(missing)
    with pytest.raises(UserIsADirectoryError, match="is a directory"):
        read_text(str(tmp_path))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.txt.*not valid utf-8.*byte offset 3"):
        read_text(str(latin))
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match=r"config file .*config.json.* cannot be read .*JSONDecodeError"):
        config_lib.load(ToyConfig, str(broken))
    with pytest.raises(UserFileNotFoundError, match="No config file"):
        config_lib.load(ToyConfig, missing)


def test_csv_errors_name_the_file(tmp_path):
    from zoo.forecast.data import load_csv

    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UserIsADirectoryError, match=r"CSV file .*folder.csv.* is a directory"):
        load_csv(str(tmp_path / "folder.csv"), "y")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("y,caf\xe9\n1,2\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"CSV file .*latin.csv.* is not valid utf-8"):
        load_csv(str(latin), "y")
