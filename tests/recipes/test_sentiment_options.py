"""`python -m recipes.sentiment` with the quality options: an adversarially trained hybrid ensemble, reported and exported."""

import json
import os

import numpy as np

from recipes import sentiment as recipe
from tests.recipes.test_sentiment import TINY_SETTINGS, class_files  # noqa: F401  (pytest fixture)
from tests.support import run_in_fresh_python

OPTIONS = [
    "--set",
    "ensemble=2",
    "--set",
    "ngram_head=true",
    "--set",
    "word_dropout=0.2",
    "--set",
    "spatial_dropout=0.2",
    "--set",
    "monitor=val_accuracy",
    "--set",
    "bucket_by_length=true",
    "--set",
    "epochs=1",
    "--set",
    "bidirectional=false",
    "--set",
    "adversarial=0.2",
]


def test_hybrid_ensemble_reports_member_and_ensemble_and_exports_strings_in(tmp_path, capsys, class_files):  # noqa: F811
    workdir = str(tmp_path / "run")
    argv = ["train", "--workdir", workdir, *class_files, *TINY_SETTINGS, *OPTIONS, "--no-baseline", "--quiet"]
    assert recipe.main(argv) == 0
    metrics = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    # The ensemble and its first member alone (the single-model figure), on the same test split.
    assert set(metrics["models"]) == {"lstm+ngrams+adv", "lstm+ngrams+adv-ensemble2"}
    ensemble = metrics["models"]["lstm+ngrams+adv-ensemble2"]
    assert len(ensemble["member_accuracies"]) == 2
    assert ensemble["member_accuracies"][0] == metrics["models"]["lstm+ngrams+adv"]["accuracy"]
    assert ensemble["monitor"] == "val_accuracy"
    for name in ("model.keras", "member-1/model.keras", "member-2/checkpoints/best.keras"):
        assert os.path.exists(os.path.join(workdir, name)), name
    record = json.loads(open(os.path.join(workdir, "member-2", "checkpoints", "best.json")).read())
    assert record["monitor"] == "val_accuracy"
    out = capsys.readouterr().out
    assert "lstm+ngrams+adv-ensemble2" in out

    assert recipe.main(["export", "--workdir", workdir]) == 0
    import keras
    import tensorflow as tf

    sentences = ["the cast is splendid", "a dull , dreadful story", ""]
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    expected = np.asarray(model(tf.constant(sentences)))
    result = run_in_fresh_python(
        f"""
        import json
        import tensorflow as tf
        serve = tf.saved_model.load({os.path.join(workdir, "export")!r}).signatures["serving_default"]
        print(json.dumps(serve(texts=tf.constant({sentences!r}))["probabilities"].numpy().tolist()))
        """,
        cwd=str(tmp_path),
    )
    np.testing.assert_allclose(result, expected, atol=1e-5)
    # The exported model is the mean of the two members (word dropout is off at inference).
    members = [keras.saving.load_model(os.path.join(workdir, f"member-{k}", "model.keras")) for k in (1, 2)]
    np.testing.assert_allclose(
        result, np.mean([np.asarray(m(tf.constant(sentences))) for m in members], axis=0), atol=1e-5
    )


def test_disjoint_ensemble_and_its_baseline_control_train_evaluate_and_export(tmp_path, capsys, class_files):  # noqa: F811
    workdir = str(tmp_path / "run")
    options = [
        "--set",
        "ensemble=2",
        "--set",
        "member_validation=disjoint",
        "--set",
        "baseline_ensemble=2",
        "--set",
        "bidirectional=false",
        "--set",
        "epochs=1",
    ]
    assert recipe.main(["train", "--workdir", workdir, *class_files, *TINY_SETTINGS, *options, "--quiet"]) == 0
    metrics = json.loads(open(os.path.join(workdir, "metrics.json")).read())
    # Each ensemble beside its member 1 alone (the single model, the single baseline).
    assert set(metrics["models"]) == {"lstm", "lstm-ensemble2-disjoint", "baseline", "baseline-ensemble2-disjoint"}
    assert len(metrics["models"]["baseline-ensemble2-disjoint"]["member_accuracies"]) == 2
    for name in ("member-2/model.keras", "baseline/member-2/model.keras", "baseline/model.keras"):
        assert os.path.exists(os.path.join(workdir, name)), name
    capsys.readouterr()
    assert recipe.main(["evaluate", "--workdir", workdir, *class_files]) == 0
    out = capsys.readouterr().out
    assert "lstm-ensemble2-disjoint" in out and "baseline-ensemble2-disjoint" in out
    evaluation = json.loads(open(os.path.join(workdir, "evaluation-test.json")).read())
    for name in ("lstm-ensemble2-disjoint", "baseline-ensemble2-disjoint"):
        assert evaluation["models"][name]["accuracy"] == metrics["models"][name]["accuracy"]
    assert (
        recipe.main(["export", "--workdir", workdir, "--baseline", "--output", str(tmp_path / "baseline-export")]) == 0
    )
    assert os.path.exists(tmp_path / "baseline-export" / "saved_model.pb")
