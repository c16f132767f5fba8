"""Ensembles: one Keras model that averages the outputs of several trained models of the same inputs."""

import keras


def average_models(members, make_inputs, output_name, name):
    """One model whose output is the mean of `members`' outputs, named `output_name`.

    `make_inputs(first_member)` returns the ensemble's Keras inputs (a list,
    one per input of the members). The members are renamed `member_1`,
    `member_2`, ... (their names must be unique inside the ensemble).
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"Received {len(members)} member(s) for an ensemble; expected at least 2.")
    inputs = make_inputs(members[0])
    given = inputs[0] if len(inputs) == 1 else inputs
    outputs = []
    for index, member in enumerate(members):
        member.name = f"member_{index + 1}"
        outputs.append(member(given))
    return keras.Model(given, keras.layers.Average(name=output_name)(outputs), name=name)
