"""Every objective trains inside `fit()` on the same pipeline and saves.

How each objective's state advances in a step (the momentum target's EMA
and schedule, the queues, UniGrad's correlation) is checked against its
formula in `tests/objectives/wiring_test.py`; here, that `evaluate()`
reads SimCLR v2's memory queue without advancing it.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from tests.testing import tiny_encoder
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.objectives import OBJECTIVES

OBJECTIVE_NAMES = sorted(OBJECTIVES)
# SimCLR v2: NT-Xent with a queue of momentum-encoder negatives.
MEMORY = "simclr_memory"


def make_pretrainer(objective, augmentation="default", num_classes=None, **arguments):
    """A pretrainer training `objective`, made with the objective's
    `arguments` (test defaults otherwise)."""
    if objective == MEMORY:
        objective = "simclr"
        arguments["memory_queue"] = True
        arguments.setdefault("queue_size", 16)
    if objective in ("byol", "simsiam"):
        arguments.setdefault(
            "prediction_head",
            keras_simclr.layers.PredictionHead(hidden_dim=8, name="prediction_head"),
        )
    if objective == "moco":
        # Both views of a batch of 8 refill it at every step.
        arguments.setdefault("queue_size", 16)
        arguments.setdefault("temperature", 0.2)
    if augmentation == "default":
        augmentation = keras_simclr.layers.SimCLRAugmentation(8, preset="cifar", seed=1)
    return SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=augmentation,
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        objective=OBJECTIVES[objective](**arguments),
        num_classes=num_classes,
    )


def data(n=16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3)).astype("uint8")
    labels = rng.integers(0, 3, n).astype("int32")
    return images, labels


def views(labels):
    """Two fixed noisy views per image; the class brightens one channel."""
    rng = np.random.default_rng(0)
    signal = 2.0 * (labels[:, None, None, None] == np.arange(3)).astype("float32")
    view_a = rng.normal(size=(len(labels), 8, 8, 3)) + signal
    view_b = view_a + rng.normal(size=view_a.shape)
    return {"view_a": view_a.astype("float32"), "view_b": view_b.astype("float32")}


def view_alignment(model, x):
    """Mean cosine of the online projections of each image's two views."""
    projection = ops.convert_to_numpy(model(x, training=False)["projection"])
    z_a, z_b = np.split(projection, 2)
    z_a = z_a / np.linalg.norm(z_a, axis=-1, keepdims=True)
    z_b = z_b / np.linalg.norm(z_b, axis=-1, keepdims=True)
    return float(np.mean(np.sum(z_a * z_b, axis=-1)))


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES + [MEMORY])
def test_each_objective_learns_evaluates_and_round_trips(objective, tmp_path):
    _, labels = data()
    x = views(labels)
    kwargs = {"temperature": 0.5} if objective in ("simclr", "supcon", MEMORY) else {}
    model = make_pretrainer(objective, num_classes=3, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    if objective == "unigrad":
        alignment_before = view_alignment(model, x)
    # The same two batches every epoch, so the objective is fixed.
    history = model.fit(
        x, labels, batch_size=8, epochs=6, shuffle=False, verbose=0
    ).history
    name = (
        "contrastive_loss"
        if objective in ("simclr", MEMORY)
        else f"{objective}_loss"
    )
    assert np.all(np.isfinite(history[name])) and np.all(np.isfinite(history["loss"]))
    if objective == "unigrad":
        # Its loss is a surrogate whose gradient is UniGrad's; what falls is
        # the distance between the views' projections. (Its logged
        # `positive_similarity` is against the target, which lags behind
        # in so few steps.)
        assert view_alignment(model, x) > alignment_before
        assert np.all(np.isfinite(history["positive_similarity"]))
    elif objective in ("moco", MEMORY):
        # The first step's queue holds random keys, easy negatives; from the
        # second epoch on it holds the keys of the previous step.
        assert history[name][-1] < history[name][1], history[name]
    else:
        assert history[name][-1] < history[name][0], history[name]
    assert np.isfinite(
        model.evaluate(x, labels, batch_size=8, verbose=0, return_dict=True)[name]
    )
    # The optimizer only moves the online network (and the probe).
    trainable = {id(v) for v in model.trainable_variables}
    target_encoder = getattr(model.objective, "target_encoder", None)
    if target_encoder is not None:
        assert not any(id(v) in trainable for v in target_encoder.weights)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.objective.key == objective.replace("_memory", "")
    assert len(restored.weights) == len(model.weights)
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_allclose(
            ops.convert_to_numpy(loaded), ops.convert_to_numpy(saved), err_msg=saved.path
        )


def test_memory_queue_keys_are_negatives_of_nt_xent():
    _, labels = data(8)
    x = views(labels)
    model = make_pretrainer(
        MEMORY, augmentation=None, temperature=0.5, queue_size=16
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    queue = ops.convert_to_numpy(model.objective.queue).copy()
    # After one step the queue holds the momentum network's projections of
    # both views: with learning rate 0 the momentum copy equals the online
    # network, so they are the online projections, normalised.
    projection = ops.convert_to_numpy(model(x, training=True)["projection"])
    np.testing.assert_allclose(
        queue, projection / np.linalg.norm(projection, axis=1, keepdims=True),
        rtol=1e-4, atol=1e-5,
    )
    logs = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    z_a, z_b = np.split(ops.convert_to_numpy(model(x)["projection"]), 2)
    expected = keras_simclr.losses.nt_xent(z_a, z_b, 0.5, negatives=queue)
    np.testing.assert_allclose(
        logs["contrastive_loss"], ops.convert_to_numpy(expected), rtol=1e-5
    )
    # evaluate() reads the queue without advancing it.
    np.testing.assert_array_equal(ops.convert_to_numpy(model.objective.queue), queue)


def test_supcon_needs_labels():
    images, labels = data(8)
    model = make_pretrainer("supcon")
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="objective='supcon' needs a label"):
        model.fit(images, batch_size=8, verbose=0)
    # Labels without a probe are fine: they feed the objective.
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"objective": "dino"}, "objective"),
        ({"objective": "vicreg", "objective_config": {"lambda_": 1.0}}, "lambda_"),
        ({"objective": "simclr", "objective_config": {"tau": 1.0}}, "does not take"),
        ({"objective": "barlow_twins", "objective_config": [1]}, "objective_config"),
        (
            {
                "objective": "simclr",
                "prediction_head": keras_simclr.layers.PredictionHead(hidden_dim=4),
            },
            "`prediction_head` is not used by objective='simclr'",
        ),
        ({"objective": "byol", "momentum": 1.0}, "momentum"),
        ({"objective": "byol", "momentum_schedule_steps": 0}, "momentum_schedule_steps"),
        ({"objective": "moco", "queue_size": 0}, "queue_size"),
        ({"objective": "moco", "memory_queue": True}, "memory_queue"),
        ({"objective": "simclr", "memory_queue": 1}, "memory_queue"),
        # Arguments the objective would ignore are refused, naming its users.
        ({"objective": "byol", "temperature": 0.2}, "`temperature` is not used by objective='byol'; it applies to simclr, supcon and moco"),
        ({"objective": "vicreg", "momentum": 0.99}, "`momentum` is not used by objective='vicreg'; it applies to moco, byol, unigrad"),
        ({"objective": "simclr", "momentum": 0.99}, "objective='simclr' without memory_queue"),
        ({"objective": "simclr", "queue_size": 512}, "`queue_size` is not used by objective='simclr' without memory_queue"),
        ({"objective": "barlow_twins", "momentum_schedule_steps": 10}, "momentum_schedule_steps"),
        ({"objective": "simsiam", "queue_size": 64}, "applies to moco and simclr with memory_queue=True"),
    ],
)
def test_bad_objective_arguments_of_the_deprecated_forms(kwargs, match):
    # Refused before the deprecation warning.
    objective = kwargs.pop("objective")
    with pytest.raises(ValueError, match=re.escape(match)):
        SimCLRPretrainer(
            encoder=tiny_encoder(), objective=objective, **kwargs
        )


@pytest.mark.parametrize(
    "objective, kwargs, match",
    [
        ("byol", {"momentum": 1.0}, "momentum"),
        ("byol", {"momentum_schedule_steps": 0}, "momentum_schedule_steps"),
        ("moco", {"queue_size": 0}, "queue_size"),
        ("simclr", {"memory_queue": 1}, "memory_queue"),
        ("simclr", {"temperature": 0.0}, "temperature"),
        ("simclr", {"momentum": 0.99}, "objective='simclr' without memory_queue"),
        ("simclr", {"queue_size": 512}, "`queue_size` is not used by objective='simclr' without memory_queue"),
    ],
)
def test_bad_objective_arguments(objective, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        OBJECTIVES[objective](**kwargs)
    # `objectives.get` refuses an argument the objective does not take,
    # naming the objectives taking it.
    with pytest.raises(ValueError, match=re.escape("it applies to simclr, supcon and moco")):
        keras_simclr.objectives.get("byol", temperature=0.2)


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
def test_each_objective_declares_its_loss_metric(objective):
    cls = OBJECTIVES[objective]
    assert cls.loss_metric_name == (
        "contrastive_loss" if objective == "simclr" else f"{objective}_loss"
    )
    model = make_pretrainer(objective)
    names = [metric.name for metric in model.objective.metrics]
    assert cls.loss_metric_name in names
