"""The line printed for an ONNX export (`export --format onnx`)."""


def summary(report):
    """One line: where the model went, its size, its recurrent operators, its operators and how closely it matched."""
    recurrent = {}
    for operator, direction in report["recurrent_operators"]:
        key = f"{operator} ({direction})"
        recurrent[key] = recurrent.get(key, 0) + 1
    recurrent_text = ", ".join(f"{name} x{count}" for name, count in recurrent.items()) or "none"
    operators = ", ".join(f"{name} x{count}" for name, count in report["operators"].items())
    loops = report["operators"].get("Loop", 0)
    vocabulary = report.get("vocabulary")
    beside = "" if vocabulary is None else f" and its vocabulary to {vocabulary}"
    return (
        f"exported ONNX model to {report['path']}{beside} ({report['bytes']} bytes; largest difference from the "
        f"Keras model {report['max_difference']:.2g} relative beyond magnitude 1, {report['max_absolute_difference']:.2g} "
        f"absolute); recurrent operators: {recurrent_text}; Loop x{loops}; operators: {operators}"
    )
