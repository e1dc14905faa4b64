"""The arguments of the objective classes, and the deprecated forms of
`SimCLRPretrainer` that take them one by one.

Before objectives were classes, `SimCLRPretrainer` took an objective's
arguments itself (`temperature=`, `prediction_head=`, `momentum=`,
`momentum_schedule_steps=`, `queue_size=`, `memory_queue=`) or as a dict
(`objective_config=`). Both still build the objective, for one release,
with a `DeprecationWarning` that names the objective to pass instead.
"""

import inspect
import warnings

import keras

# The pretrainer's arguments that belonged to objectives.
DEPRECATED_ARGUMENTS = (
    "temperature",
    "prediction_head",
    "momentum",
    "momentum_schedule_steps",
    "queue_size",
    "memory_queue",
)


def arguments(cls):
    """The constructor arguments of an objective class, with defaults."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self"
        and parameter.kind
        not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def users_of(argument):
    """Who takes `argument`, in words: "moco, byol, unigrad and simclr with
    memory_queue=True"; "" for no one."""
    from keras_simclr.objectives import OBJECTIVES

    plain, conditional = [], []
    for key, cls in OBJECTIVES.items():
        if argument not in arguments(cls):
            continue
        condition = getattr(cls, "conditional_arguments", {}).get(argument)
        if condition:
            conditional.append(f"{key} with {condition}=True")
        else:
            plain.append(key)
    names = plain + conditional
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def check_arguments(cls, kwargs):
    """Refuses an argument that `cls` does not take, naming the objectives
    that take it."""
    accepted = arguments(cls)
    for name, value in kwargs.items():
        if name in accepted:
            continue
        users = users_of(name)
        if not users:
            raise ValueError(
                f"`objective_config` has arguments that objective="
                f"'{cls.objective_key()}' does not take: {[name]}. It takes "
                f"{sorted(accepted) or 'none'}. Received: {name}={value!r}"
            )
        raise ValueError(
            f"`{name}` is not used by objective='{cls.objective_key()}'; it "
            f"applies to {users}. Leave it unset. Received: {name}={value!r}"
        )


def objective_from_pretrainer_arguments(objective, objective_config, given):
    """The objective of `SimCLRPretrainer(objective=..., objective_config=...,
    **given)`, with a `DeprecationWarning` at the pretrainer's caller when
    `objective_config` or one of `DEPRECATED_ARGUMENTS` is given."""
    from keras_simclr import objectives

    given = {name: value for name, value in given.items() if value is not None}
    if objective_config is None and not given:
        return objectives.get(objective)
    if objective_config is not None and not isinstance(objective_config, dict):
        raise ValueError(
            "`objective_config` must be a dict of keyword arguments of the "
            f"objective, or None. Received: objective_config={objective_config!r}"
        )
    if isinstance(objective, objectives.Objective):
        if objective_config:
            raise ValueError(
                "`objective_config` applies to an objective given by its key; "
                "set the arguments on the objective instance. Received: "
                f"objective_config={objective_config!r}"
            )
        result = objectives.get(objective, **given)
    else:
        both = sorted(set(given) & set(objective_config or {}))
        if both:
            raise ValueError(
                f"{both} given both as arguments and in `objective_config`; "
                f"give each once. Received: objective_config={objective_config!r}"
            )
        given = {**(objective_config or {}), **given}
        result = objectives.get(objective, **given)
    # In the order of the objective's constructor.
    order = list(arguments(type(result)))
    given = dict(sorted(given.items(), key=lambda item: order.index(item[0])))
    names = [name for name in given if name not in (objective_config or {})]
    if objective_config is not None:
        names.insert(0, "objective_config")
    replacement = ", ".join(f"{name}={_source(value)}" for name, value in given.items())
    warnings.warn(
        f"{', '.join(name + '=' for name in names)} "
        f"{'is' if len(names) == 1 else 'are'} deprecated; pass "
        f"objective=keras_simclr.objectives.{type(result).__name__}"
        f"({replacement}) to SimCLRPretrainer instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return result


def _source(value):
    if isinstance(value, keras.layers.Layer):
        return f"{type(value).__name__}(...)"
    return repr(value)
