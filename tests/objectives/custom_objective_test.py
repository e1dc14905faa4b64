"""A user's own objective, exactly as docs/objectives.md writes it, trains
with `fit()`, logs the loss it computes and saves, without a change to
the library."""

import os
import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from tests.testing import tiny_encoder

OBJECTIVES_PAGE = os.path.join(
    os.path.dirname(__file__), "..", "..", "docs", "objectives.md"
)


def readme_objective():
    """Runs the first code block under "Your own objective" in the docs."""
    with open(OBJECTIVES_PAGE) as f:
        text = f.read()
    section = text[text.index("## Your own objective"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "docs/objectives.md", "exec"), namespace)
    return namespace["AlignUniform"]


def numpy_align_uniform(z, alpha=2.0, t=2.0):
    """Wang & Isola (2020), written from the paper: align on pairs, uniform
    over every pair of distinct views."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z) // 2
    align = np.mean(np.linalg.norm(z[:n] - z[n:], axis=1) ** alpha)
    pairs = [
        np.sum((z[i] - z[j]) ** 2)
        for i in range(len(z))
        for j in range(len(z))
        if i != j
    ]
    uniform = np.log(np.mean(np.exp(-t * np.array(pairs))))
    return align + uniform


def test_the_readme_objective_trains_logs_its_loss_and_saves(tmp_path):
    AlignUniform = readme_objective()
    rng = np.random.default_rng(0)
    x = {
        "view_a": rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32"),
        "view_b": rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32"),
    }
    model = keras_simclr.models.SimCLRPretrainer(
        tiny_encoder(),
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        objective=AlignUniform(t=2.0),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.train_on_batch(x, return_dict=True)
    # Recomputed from the model's own encoder and head on the same views.
    views = np.concatenate([x["view_a"], x["view_b"]])
    z = ops.convert_to_numpy(
        model.projection_head(model.encoder(views, training=True), training=True)
    )
    expected = numpy_align_uniform(z.astype("float64"))
    np.testing.assert_allclose(logs["align_uniform_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    # Without the uniformity term the value is another: the check tells.
    assert abs(logs["loss"] - numpy_align_uniform(z, t=1.0)) > 1e-3

    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x, batch_size=8, epochs=6, verbose=0).history
    assert history["align_uniform_loss"][-1] < history["align_uniform_loss"][0]

    path = tmp_path / "pretrainer.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.objective, AlignUniform)
    assert restored.objective.t == 2.0
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x["view_a"])["projection"]),
        ops.convert_to_numpy(model(x["view_a"])["projection"]),
        rtol=1e-5, atol=1e-6,
    )


def test_an_objective_instance_belongs_to_one_pretrainer():
    objective = keras_simclr.objectives.BYOL()
    keras_simclr.models.SimCLRPretrainer(tiny_encoder(), objective=objective)
    try:
        keras_simclr.models.SimCLRPretrainer(tiny_encoder(), objective=objective)
    except ValueError as error:
        assert "already belongs to a pretrainer" in str(error)
    else:
        raise AssertionError("a shared objective was accepted")


def test_arguments_go_to_the_objective_or_are_refused():
    # The deprecated form: the objective's arguments given to the pretrainer.
    with pytest.warns(DeprecationWarning, match="MoCo\\(temperature=0.2, queue_size=64\\)"):
        model = keras_simclr.models.SimCLRPretrainer(
            tiny_encoder(), objective="moco", temperature=0.2, queue_size=64
        )
    assert isinstance(model.objective, keras_simclr.objectives.MoCo)
    assert (model.objective.temperature, model.objective.queue_size) == (0.2, 64)
    for kwargs, match in [
        (
            {"objective": keras_simclr.objectives.MoCo(), "temperature": 0.2},
            "Set ['temperature'] on the objective itself",
        ),
        (
            {"objective": "moco", "temperature": 0.2,
             "objective_config": {"temperature": 0.3}},
            "given both as arguments and in `objective_config`",
        ),
    ]:
        try:
            keras_simclr.models.SimCLRPretrainer(tiny_encoder(), **kwargs)
        except ValueError as error:
            assert match in str(error), str(error)
        else:
            raise AssertionError(f"accepted {kwargs}")
