"""The objectives a `SimCLRPretrainer` minimises, one class per method.

| objective | labels | own networks | state |
| --- | --- | --- | --- |
| `SimCLR` ("simclr") | | momentum copy with `memory_queue` | queue of keys with `memory_queue` |
| `SupCon` ("supcon") | yes | | |
| `MoCo` ("moco") | | momentum copy | queue of keys |
| `BYOL` ("byol") | | prediction head, momentum copy | |
| `SimSiam` ("simsiam") | | prediction head | |
| `BarlowTwins` ("barlow_twins") | | | |
| `VICReg` ("vicreg") | | | |
| `UniGrad` ("unigrad") | | momentum copy | running target correlation |

Write your own by subclassing `Objective` (see its docstring).
"""

import inspect

from keras_simclr.objectives.barlow_twins import BarlowTwins
from keras_simclr.objectives.base import NonContrastiveObjective
from keras_simclr.objectives.base import Objective
from keras_simclr.objectives.byol import BYOL
from keras_simclr.objectives.moco import MoCo
from keras_simclr.objectives.momentum import MomentumObjective
from keras_simclr.objectives.simclr import SimCLR
from keras_simclr.objectives.simsiam import SimSiam
from keras_simclr.objectives.supcon import SupCon
from keras_simclr.objectives.unigrad import UniGrad
from keras_simclr.objectives.vicreg import VICReg

OBJECTIVES = {
    cls.key: cls
    for cls in (SimCLR, SupCon, MoCo, BYOL, SimSiam, BarlowTwins, VICReg, UniGrad)
}


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


def get(identifier, **kwargs):
    """An objective from its key (`"byol"`) and keyword arguments, or an
    `Objective` instance as it is (then no keyword argument may be given).

    An argument the objective does not take is refused with a `ValueError`
    that names the objectives taking it.
    """
    if isinstance(identifier, Objective):
        given = sorted(name for name, value in kwargs.items() if value is not None)
        if given:
            raise ValueError(
                f"Set {given} on the objective itself when passing an "
                f"objective instance. Received: objective={identifier.name!r} "
                f"and {', '.join(f'{n}={kwargs[n]!r}' for n in given)}"
            )
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Objective):
        cls = identifier
    elif isinstance(identifier, str) and identifier in OBJECTIVES:
        cls = OBJECTIVES[identifier]
    else:
        raise ValueError(
            f"`objective` must be one of {sorted(OBJECTIVES)} or a "
            "keras_simclr.objectives.Objective. Received: "
            f"objective={identifier!r}"
        )
    accepted = arguments(cls)
    for name, value in kwargs.items():
        if name not in accepted and not users_of(name):
            raise ValueError(
                f"`objective_config` has arguments that objective="
                f"'{cls.objective_key()}' does not take: {[name]}. It takes "
                f"{sorted(accepted) or 'none'}. Received: {name}={value!r}"
            )
        if name not in accepted:
            raise ValueError(
                f"`{name}` is not used by objective='{cls.objective_key()}'; "
                "it applies to "
                f"{users_of(name)}. Leave it unset. Received: {name}={value!r}"
            )
    return cls(**kwargs)


__all__ = [
    "Objective",
    "NonContrastiveObjective",
    "MomentumObjective",
    "SimCLR",
    "SupCon",
    "MoCo",
    "BYOL",
    "SimSiam",
    "BarlowTwins",
    "VICReg",
    "UniGrad",
    "get",
]
