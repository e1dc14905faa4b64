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

An objective is configured in one place, its constructor:
`SimCLRPretrainer(encoder, augmentation, objective=MoCo(temperature=0.2))`,
or `objective="moco"` for its defaults.

Write your own by subclassing `Objective` (see its docstring); it is then
passed as an instance and needs no registration.

Adding an objective to the library:

1. its loss, a plain function in `keras.ops`, in
   `keras_simclr/losses/<method>.py`, with a test against a reference in
   `tests/losses/`;
2. its class in `keras_simclr/objectives/<method>.py`: subclass
   `SimilarityTrackingObjective` (or `MomentumObjective` for a momentum
   target, adding `QueueMixin` for a queue of keys, `PredictionMixin` for a
   prediction head), set `key` and `loss_metric_name`, call the loss
   function in `compute_loss` and return `self.record(loss, outputs)`, and
   give every constructor argument back in `get_config`;
3. one line in the registry below (its class in `OBJECTIVES`' tuple, and
   its import), which makes `objective="<key>"` and the example's
   `--objective=<key>` know it;
4. a test in `tests/objectives/`; the pretrainer tests of
   `tests/objectives/fit_and_save_test.py` run every registered objective.
"""

from keras_simclr.objectives._arguments import arguments
from keras_simclr.objectives._arguments import check_arguments
from keras_simclr.objectives._arguments import users_of
from keras_simclr.objectives.barlow_twins import BarlowTwins
from keras_simclr.objectives.base import NonContrastiveObjective
from keras_simclr.objectives.base import Objective
from keras_simclr.objectives.base import SimilarityTrackingObjective
from keras_simclr.objectives.byol import BYOL
from keras_simclr.objectives.moco import MoCo
from keras_simclr.objectives.momentum import MomentumObjective
from keras_simclr.objectives.momentum import cosine_momentum
from keras_simclr.objectives.momentum import update_queue
from keras_simclr.objectives.simclr import SimCLR
from keras_simclr.objectives.simsiam import SimSiam
from keras_simclr.objectives.supcon import SupCon
from keras_simclr.objectives.unigrad import UniGrad
from keras_simclr.objectives.vicreg import VICReg

# The registry: the objectives known by their key.
OBJECTIVES = {
    cls.key: cls
    for cls in (SimCLR, SupCon, MoCo, BYOL, SimSiam, BarlowTwins, VICReg, UniGrad)
}


def get(identifier, **kwargs):
    """An objective from its key (`"byol"`) or class and keyword arguments
    of its constructor, or an `Objective` instance as it is (then no keyword
    argument may be given).

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
    check_arguments(cls, kwargs)
    return cls(**kwargs)


__all__ = [
    "Objective",
    "SimilarityTrackingObjective",
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
    "OBJECTIVES",
    "cosine_momentum",
    "get",
    "update_queue",
]
