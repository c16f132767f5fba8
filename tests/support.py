"""Helpers shared by the tests."""

import json
import os
import subprocess
import sys
import textwrap

import keras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def to_numpy(structure):
    """Backend tensors (and nests of them) as NumPy arrays, on every backend.

    (`np.asarray` refuses a PyTorch tensor that requires a gradient.)
    """
    return keras.tree.map_structure(keras.ops.convert_to_numpy, structure)


def run_in_fresh_python(code, cwd, timeout=300):
    """Run `code` in a new Python process that cannot import this project.

    The working directory is `cwd` (a temporary directory, not the repo), and
    the repo is taken off `sys.path` and the editable-install finders, so a
    SavedModel that secretly depended on our classes would fail to load.
    Returns the JSON object the code printed on its last stdout line.
    """
    guard = textwrap.dedent(
        f"""
        import sys
        sys.path = [p for p in sys.path if p and __import__('os').path.abspath(p) != {REPO!r}]
        sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()
                         and 'editable' not in repr(f).lower()]
        for name in ('layers', 'zoo', 'recipes'):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit('the project is importable in the fresh process: ' + name)
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", guard + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"fresh process failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
