"""Training one model on one memory task and measuring its test error."""

from zoo import cells, registry, training
from zoo.config import require_int
from zoo.errors import UserError
from zoo.memory.baselines import baseline_error, empirical_baseline_error
from zoo.memory.data import evaluation_batch, training_dataset
from zoo.memory.evaluate import copy_symbol_accuracy, model_state_gradient_norms
from zoo.memory.model import receptive_field


def train_and_evaluate(
    config,
    workdir,
    *,
    train_steps,
    batch_size,
    evaluations=4,
    test_size=512,
    max_minutes=None,
    probe_size=0,
    inspect=None,
    verbose=0,
    resume=False,
    log=training.silent,
):
    """Train one model on one task for a fixed number of batches and test it.

    Args:
        config: A `MemoryConfig`.
        workdir: Directory for this run's checkpoints and backups (a killed
            run started again continues from its last backup).
        train_steps: Batches of training, the same for every model compared.
        batch_size: Sequences per batch.
        evaluations: How many times the test error is measured along the way
            (`train_steps` must be a multiple of it).
        test_size: Sequences in the fixed test batch.
        max_minutes: Optional wall-clock budget; training stops early when it
            runs out and the result says so.
        probe_size: If positive and the model is recurrent, measure
            `model_state_gradient_norms` on this many test sequences before
            and after training.
        inspect: Optional function `(model, test_inputs, test_targets) -> dict`
            called after training; its entries are added to the result.
        verbose: Passed to `keras.Model.fit`.
        resume: Whether this continues an earlier session (only changes what
            is logged: a backup in `workdir` is always continued).
        log: Gets the line saying whether and where training resumed (see
            `zoo.training.fit`).

    Returns:
        A JSON-ready dict: the test error (`test_error`: MSE or cross-entropy
        per step), the baseline, their ratio, the learning curve, parameter
        count, width, seconds, and the gradient profiles if probed.
    """
    config.validate()
    train_steps = require_int("train_steps", train_steps)
    evaluations = require_int("evaluations", evaluations)
    if train_steps % evaluations:
        raise UserError(
            f"Received train_steps={train_steps} and evaluations={evaluations}; "
            "train_steps must be a multiple of evaluations."
        )
    training.set_seed(config.seed)
    model = registry.build(f"memory/{config.model}", config)
    test_inputs, test_targets = evaluation_batch(config, test_size)
    baseline = baseline_error(config.task, config.length, config.copy_length, config.alphabet_size)
    result = {
        "task": config.task,
        "model": config.model,
        "length": config.length,
        "sequence_length": config.sequence_length,
        "bptt_steps": config.bptt_steps,
        "mark_distance": config.mark_distance,
        "width": config.width,
        "parameters": int(model.count_params()),
        "baseline_error": baseline,
        "empirical_baseline_error": empirical_baseline_error(config.task, test_targets),
        "train_steps": train_steps,
        "batch_size": batch_size,
    }
    if config.model == "conv":
        result["receptive_field"] = receptive_field(config.conv_layers)

    probing = probe_size > 0 and cells.is_cell(config.model)
    if probing:
        result["state_gradient_at_init"] = model_state_gradient_norms(
            model, config, test_inputs[:probe_size], test_targets[:probe_size]
        ).tolist()
    fitted = training.fit(
        model,
        training_dataset(config, batch_size),
        workdir=workdir,
        epochs=evaluations,
        steps_per_epoch=train_steps // evaluations,
        validation_data=(test_inputs, test_targets),
        max_minutes=max_minutes,
        verbose=verbose,
        tensorboard=False,
        log=log,
        resume=resume,
        divergence_factor=config.divergence_factor,
    )
    evaluated = model.evaluate(test_inputs, test_targets, verbose=0, batch_size=256, return_dict=True)
    result.update(
        test_error=float(evaluated["loss"]),
        error_over_baseline=float(evaluated["loss"]) / baseline,
        learning_curve=fitted["history"].get("val_loss", []),
        seconds=fitted["seconds"],
        time_budget_exhausted=fitted["time_budget_exhausted"],
    )
    if cells.is_cell(config.model):
        # Which implementation trained (the fused TensorFlow loop or the cell path).
        result["recurrent_path"] = getattr(model.get_layer("recurrent"), "last_path", None)
    if config.task == "copy":
        result["copied_letter_accuracy"] = copy_symbol_accuracy(model, test_inputs, test_targets, config.copy_length)
    if probing:
        result["state_gradient_trained"] = model_state_gradient_norms(
            model, config, test_inputs[:probe_size], test_targets[:probe_size]
        ).tolist()
    if inspect is not None:
        result.update(inspect(model, test_inputs, test_targets))
    return result
