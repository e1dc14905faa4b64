"""The objectives a pretrainer can train with, and what each one needs.

Every objective works on the same two views, encoder, projection head and
distribution machinery; they differ in what else they need:

| objective | labels | prediction head | momentum target | state |
| --- | --- | --- | --- | --- |
| simclr | | | | |
| supcon | yes | | | |
| moco | | | yes | queue of keys |
| byol | | yes | yes | |
| simsiam | | yes | | |
| barlow_twins | | | | |
| vicreg | | | | |
| unigrad | | | yes | target correlation |
"""

import dataclasses
import inspect

from keras_simclr.losses.barlow_twins import barlow_twins
from keras_simclr.losses.byol import byol
from keras_simclr.losses.moco import moco_infonce
from keras_simclr.losses.simsiam import simsiam
from keras_simclr.losses.supervised_contrastive import supervised_contrastive
from keras_simclr.losses.unigrad import unigrad
from keras_simclr.losses.vicreg import vicreg


@dataclasses.dataclass(frozen=True)
class Objective:
    name: str
    function: object
    needs_labels: bool = False
    predictor_hidden_dim: int = 0  # > 0: a prediction head of this width
    momentum_target: bool = False
    uses_temperature: bool = False
    has_queue: bool = False
    # Arguments the pretrainer passes itself, not settable by the user.
    internal: tuple = ()
    reference: str = ""

    def uses(self, argument, memory_queue=False):
        """Whether this objective uses the pretrainer's `argument`.

        `memory_queue=True` (SimCLR v2's memory, simclr only) brings a
        momentum copy and a queue to simclr.
        """
        momentum = self.momentum_target or memory_queue
        return {
            "temperature": self.uses_temperature,
            "prediction_head": bool(self.predictor_hidden_dim),
            "momentum": momentum,
            "momentum_schedule_steps": momentum,
            "queue_size": self.has_queue or memory_queue,
        }[argument]

    def options(self):
        """The keyword arguments a user may set through `objective_config`."""
        if self.function is None:
            return {}
        parameters = inspect.signature(self.function).parameters
        return {
            name: parameter.default
            for name, parameter in parameters.items()
            if parameter.default is not inspect.Parameter.empty
            and name not in self.internal
        }


OBJECTIVES = {
    objective.name: objective
    for objective in (
        Objective(
            "simclr", None, uses_temperature=True,
            reference="Chen et al., 2020, SimCLR",
        ),
        Objective(
            "supcon", supervised_contrastive, needs_labels=True,
            uses_temperature=True, internal=("labels", "temperature", "cross_replica"),
            reference="Khosla et al., 2020, Supervised Contrastive Learning",
        ),
        Objective(
            "moco", moco_infonce, momentum_target=True, uses_temperature=True,
            has_queue=True, internal=("temperature",),
            reference="He et al., 2020 / Chen et al., 2020, MoCo v1 / v2",
        ),
        Objective(
            "byol", byol, predictor_hidden_dim=4096, momentum_target=True,
            reference="Grill et al., 2020, BYOL",
        ),
        Objective(
            "simsiam", simsiam, predictor_hidden_dim=512,
            reference="Chen & He, 2021, SimSiam",
        ),
        Objective(
            "barlow_twins", barlow_twins, internal=("cross_replica",),
            reference="Zbontar et al., 2021, Barlow Twins",
        ),
        Objective(
            "vicreg", vicreg, internal=("cross_replica",),
            reference="Bardes et al., 2022, VICReg",
        ),
        Objective(
            "unigrad", unigrad, momentum_target=True,
            internal=("correlation",),
            reference="Tao et al., 2022, UniGrad",
        ),
    )
}


def get_objective(name):
    if name not in OBJECTIVES:
        raise ValueError(
            f"`objective` must be one of {sorted(OBJECTIVES)}. "
            f"Received: objective={name!r}"
        )
    return OBJECTIVES[name]


def validate_objective_config(objective, config):
    """Checks `objective_config` against the objective's own arguments."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(
            "`objective_config` must be a dict of keyword arguments of the "
            f"objective, or None. Received: objective_config={config!r}"
        )
    allowed = dict(objective.options())
    if objective.name == "unigrad":
        allowed["rho"] = 0.99  # the running average of the target correlation
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(
            f"`objective_config` has arguments that objective="
            f"'{objective.name}' does not take: {unknown}. It takes "
            f"{sorted(allowed) or 'none'}. Received: objective_config={config!r}"
        )
    return dict(config)


# The pretrainer's arguments that only some objectives use, their default
# where used, and who uses them (for error messages).
OBJECTIVE_ARGUMENTS = {
    "temperature": (0.1, "simclr, supcon and moco"),
    "prediction_head": (None, "byol and simsiam"),
    "momentum": (0.996, "moco, byol, unigrad and simclr with memory_queue=True"),
    "momentum_schedule_steps": (
        None, "moco, byol, unigrad and simclr with memory_queue=True"
    ),
    "queue_size": (65536, "moco and simclr with memory_queue=True"),
}


def check_unused_arguments(objective, memory_queue, arguments):
    """Refuses an argument given (not None) to an objective that ignores it."""
    for name, value in arguments.items():
        if value is not None and not objective.uses(name, memory_queue):
            users = OBJECTIVE_ARGUMENTS[name][1]
            # Only simclr takes memory_queue, which brings these arguments.
            condition = (
                " without memory_queue"
                if objective.name == "simclr" and objective.uses(name, True)
                else ""
            )
            raise ValueError(
                f"`{name}` is not used by objective='{objective.name}'"
                f"{condition}; "
                f"it applies to {users}. Leave it unset. "
                f"Received: {name}={value!r}"
            )
