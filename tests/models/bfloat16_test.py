"""The models under the `mixed_bfloat16` policy that
`keras_simclr.config.use_fast_precision()` chooses on bfloat16 hardware:
they compute in bfloat16, keep their losses in float32, train, evaluate
and save, on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr.layers import ProjectionHead
from keras_simclr.models import SimCLRClassifier
from keras_simclr.models import SimCLRDistiller
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.objectives import SimCLR
from tests.objectives.fit_and_save_test import MEMORY
from tests.objectives.fit_and_save_test import OBJECTIVE_NAMES
from tests.objectives.fit_and_save_test import data
from tests.objectives.fit_and_save_test import make_pretrainer
from tests.objectives.fit_and_save_test import views
from tests.testing import tiny_encoder


@pytest.fixture(autouse=True)
def bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def _numpy(x):
    """A tensor or array as float32 NumPy (bfloat16 values are exact in it)."""
    return np.asarray(ops.convert_to_numpy(x)).astype("float32")


def nt_xent_numpy(z_a, z_b, temperature):
    """NT-Xent of SimCLR, the mean over the 2N views, in float64."""
    z = np.concatenate([z_a, z_b]).astype("float64")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)
    n = len(z_a)
    positives = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    peak = logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
    return float(np.mean(log_sum - logits[np.arange(2 * n), positives]))


def test_the_loss_is_float32_nt_xent_of_the_bfloat16_projections():
    """The pretrainer's loss on its bfloat16 projections is NT-Xent computed
    in float32: recomputed here in float64 from the same projections (a
    loss computed in bfloat16 would be off by about its 8-bit precision)."""
    _, labels = data(8)
    x = views(labels)
    model = SimCLRPretrainer(
        tiny_encoder(),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=6),
        objective=SimCLR(temperature=0.1),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    outputs = model(x, training=False)
    projection = outputs["projection"]
    assert keras.backend.standardize_dtype(projection.dtype) == "bfloat16"
    loss = model.compute_loss(x=x, y_pred=outputs, training=False)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    z_a, z_b = np.split(_numpy(projection), 2)
    expected = nt_xent_numpy(z_a, z_b, 0.1)
    np.testing.assert_allclose(_numpy(loss), expected, rtol=2e-5)
    # evaluate() logs the same loss; its compiled forward pass may round the
    # bfloat16 activations at other places than the eager call above.
    logs = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["contrastive_loss"], expected, rtol=2e-3)


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES + [MEMORY])
def test_each_objective_and_the_probe_train_and_save(objective, tmp_path):
    images, labels = data(16)
    model = make_pretrainer(objective, num_classes=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
    assert model.encoder.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    for name, values in history.items():
        assert np.all(np.isfinite(values)), name
    assert history["probe_accuracy"][-1] >= 0.0
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.encoder.compute_dtype == "bfloat16"
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(_numpy(loaded), _numpy(saved), err_msg=saved.path)
    np.testing.assert_array_equal(
        _numpy(restored.predict(images, verbose=0)["features"]),
        _numpy(model.predict(images, verbose=0)["features"]),
    )


def _pretrained():
    images, labels = data(16)
    pretrainer = make_pretrainer("simclr", num_classes=3)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    pretrainer.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    return pretrainer, images, labels


def test_classifier_and_distiller_train_evaluate_and_save(tmp_path):
    pretrainer, images, labels = _pretrained()
    teacher = SimCLRClassifier(pretrainer, num_classes=3, head_layers=1)
    teacher.compile(optimizer=keras.optimizers.SGD(0.1))
    history = teacher.fit(images, labels, batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    logits = teacher.predict(images, verbose=0)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    # The logged cross-entropy is that of the bfloat16 logits, in float32.
    loss = teacher.evaluate(images, labels, batch_size=16, verbose=0, return_dict=True)
    shifted = _numpy(logits) - _numpy(logits).max(axis=1, keepdims=True)
    expected = np.mean(
        np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(16), labels]
    )
    np.testing.assert_allclose(loss["loss"], expected, rtol=1e-4)

    student = SimCLRClassifier(tiny_encoder("student"), num_classes=3)
    distiller = SimCLRDistiller(
        teacher=teacher,
        student=student,
        augmentation=keras_simclr.layers.SimCLRAugmentation(8, preset="cifar", seed=2),
    )
    distiller.compile()
    history = distiller.fit(images, labels, batch_size=8, epochs=2, verbose=0).history
    for name in ("loss", "distillation_loss", "teacher_agreement", "accuracy"):
        assert np.all(np.isfinite(history[name])), name
    for model, name in ((teacher, "teacher"), (distiller, "distiller")):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        np.testing.assert_array_equal(
            _numpy(restored.predict(images, verbose=0)),
            _numpy(model.predict(images, verbose=0)),
        )


def test_knn_and_linear_evaluation_of_a_bfloat16_encoder():
    """The evaluation functions take a bfloat16 encoder; kNN's accuracy is
    that of its features, recomputed here with a NumPy weighted kNN."""
    pretrainer, images, labels = _pretrained()
    test_images, test_labels = images[:8], labels[:8]
    accuracy = keras_simclr.evaluation.knn_accuracy(
        pretrainer, (images, labels), (test_images, test_labels), k=5,
        temperature=0.1,
    )
    features = _numpy(pretrainer.predict(images, verbose=0)["features"])
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    queries = features[:8]
    similarity = queries @ features.T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :5]
    votes = np.zeros((8, 3))
    for row in range(8):
        for column in nearest[row]:
            votes[row, labels[column]] += np.exp(similarity[row, column] / 0.1)
    expected = np.mean(votes.argmax(axis=1) == test_labels)
    assert accuracy["top1"] == pytest.approx(expected, abs=1e-9)
    linear = keras_simclr.evaluation.linear_evaluation(
        pretrainer, (images, labels), (test_images, test_labels), epochs=2
    )
    assert 0.0 <= linear["top1"] <= 1.0
