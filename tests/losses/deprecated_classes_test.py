"""The `keras.losses.Loss` classes of `keras_simclr.losses` are deprecated:
constructing one warns, at the caller's line, naming the objective and the
loss function to use instead."""

import warnings

import pytest

from keras_simclr import losses
from keras_simclr import objectives

CLASSES = [
    ("BarlowTwins", "BarlowTwins", "barlow_twins"),
    ("BYOL", "BYOL", "byol"),
    ("MoCoInfoNCE", "MoCo", "moco_infonce"),
    ("NTXent", "SimCLR", "nt_xent"),
    ("SimSiam", "SimSiam", "simsiam"),
    ("SupervisedContrastive", "SupCon", "supervised_contrastive"),
    ("UniGrad", "UniGrad", "unigrad"),
    ("VICReg", "VICReg", "vicreg"),
]


@pytest.mark.parametrize("name, objective, function", CLASSES)
def test_constructing_a_loss_class_warns_naming_the_replacements(
    name, objective, function
):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(losses, name)()
    assert [w.category for w in caught] == [DeprecationWarning]
    assert caught[0].filename == __file__
    message = str(caught[0].message)
    assert f"keras_simclr.losses.{name} is deprecated" in message
    assert f"keras_simclr.objectives.{objective}(" in message
    assert f"keras_simclr.losses.{function}." in message
    # Both replacements exist.
    assert hasattr(objectives, objective) and callable(getattr(losses, function))


def test_the_loss_functions_do_not_warn():
    import numpy as np

    z = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses.nt_xent(z, z[::-1], temperature=0.5)
        losses.byol(np.concatenate([z, z]), np.concatenate([z, z]))
    assert [w for w in caught if "deprecated" in str(w.message)] == []
