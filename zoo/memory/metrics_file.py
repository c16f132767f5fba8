"""Reading back the metrics.json a memory study wrote, before rendering a report from it."""

import dataclasses

from zoo.errors import UserError
from zoo.files import read_json
from zoo.memory.config import StudyConfig

# What `run_study` writes at the top level, with the JSON type of each entry.
STUDY_ENTRIES = {"config": dict, "ladder": list, "truncation": list, "solved": dict, "environment": dict}
ENVIRONMENT_ENTRIES = ("cpu_count", "load_average_at_start", "load_average_at_end", "seconds")
# Study settings added after studies had been run, with the value every earlier study had.
ADDED_SETTINGS = {"implementation": "ours"}


def _problem(metrics):
    """What makes `metrics` unlike a study's metrics, or None."""
    if not isinstance(metrics, dict):
        return f"it holds a JSON {type(metrics).__name__}, not an object"
    wrong = [name for name, kind in STUDY_ENTRIES.items() if not isinstance(metrics.get(name), kind)]
    if wrong:
        return f"it lacks {wrong} (or they have the wrong type)"
    missing = sorted(
        {field.name for field in dataclasses.fields(StudyConfig)} - set(metrics["config"]) - set(ADDED_SETTINGS)
    )
    if missing:
        return f"its `config` lacks the study settings {missing}"
    missing = [name for name in ENVIRONMENT_ENTRIES if name not in metrics["environment"]]
    if missing:
        return f"its `environment` lacks {missing}"
    return None


def read_study_metrics(path):
    """The metrics dict a study wrote to `path`; a `UserError` naming the file if it is not one.

    Checks the top-level entries, the study settings and the environment
    record that the report reads, so that a metrics.json from another recipe,
    an empty object or a damaged file is reported as such.
    """
    expected = "the metrics.json that `python -m recipes.memory run` writes"
    metrics = read_json(path, kind="metrics file", expected=expected)
    problem = _problem(metrics)
    if problem:
        raise UserError(f"The metrics file {str(path)!r} is not a memory study's: {problem}; expected {expected}.")
    for name, value in ADDED_SETTINGS.items():
        metrics["config"].setdefault(name, value)
    return metrics
