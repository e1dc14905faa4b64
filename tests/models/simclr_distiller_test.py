import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ProjectionHead
from keras_simclr.models.simclr_classifier import SimCLRClassifier
from keras_simclr.models.simclr_distiller import SimCLRDistiller
from keras_simclr.losses import distillation_loss
from tests.testing import backend_gradients
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test

DIM = 8
NUM_CLASSES = 4
IMAGE_SIZE = 8


def mlp(hidden=16, name=None, activation="relu", batch_norm=False):
    """A small classifier of `DIM`-vectors: the distiller takes any model
    from inputs to logits."""
    inputs = keras.Input((DIM,))
    x = keras.layers.Dense(hidden, activation=activation)(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(NUM_CLASSES)(x)
    return keras.Model(inputs, outputs, name=name)


def linear(name=None):
    inputs = keras.Input((DIM,))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(inputs), name=name)


def vectors(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype("float32")


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_reference(teacher_logits, student_logits, temperature):
    """-sum_y P_T(y; T) log P_S(y; T), per example."""
    teacher = np.exp(log_softmax(teacher_logits / temperature))
    return -(teacher * log_softmax(student_logits / temperature)).sum(axis=-1)


def numpy_weights(layer):
    return [ops.convert_to_numpy(w).copy() for w in layer.weights]


def logits_of(model, x):
    return ops.convert_to_numpy(model(x, training=False)).astype("float64")


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_loss_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    teacher = rng.normal(scale=3.0, size=(16, 10)).astype("float32")
    student = rng.normal(scale=3.0, size=(16, 10)).astype("float32")
    loss = ops.convert_to_numpy(distillation_loss(teacher, student, temperature))
    expected = numpy_reference(teacher, student, temperature)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    # Closed forms: equal logits give the teacher's entropy; a uniform
    # student gives log(num_classes).
    same = ops.convert_to_numpy(distillation_loss(teacher, teacher, temperature))
    np.testing.assert_allclose(
        same, numpy_reference(teacher, teacher, temperature), rtol=1e-5
    )
    uniform = ops.convert_to_numpy(
        distillation_loss(teacher, np.zeros_like(student), temperature)
    )
    np.testing.assert_allclose(uniform, np.log(10.0), rtol=1e-6)


def test_no_gradient_flows_into_the_teacher_logits():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(4, 3))
    student = rng.normal(size=(4, 3))
    grad_teacher, grad_student = backend_gradients(
        lambda t, s: ops.sum(distillation_loss(t, s, 2.0)), teacher, student
    )
    np.testing.assert_array_equal(grad_teacher, 0.0)
    # d/ds of -sum p_T log softmax(s / T) is (softmax(s / T) - p_T) / T.
    def softmax(z):
        return np.exp(log_softmax(z))

    np.testing.assert_allclose(
        grad_student,
        (softmax(student / 2.0) - softmax(teacher / 2.0)) / 2.0,
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_step_loss_equals_the_reference_on_the_models_logits(temperature):
    x = vectors(16)
    teacher, student = mlp(name="teacher"), mlp(name="student")
    model = SimCLRDistiller(teacher=teacher, student=student, temperature=temperature)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    expected = numpy_reference(
        logits_of(teacher, x), logits_of(student, x), temperature
    ).mean()
    agreement = np.mean(
        logits_of(teacher, x).argmax(-1) == logits_of(student, x).argmax(-1)
    )
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["distillation_loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(history["teacher_agreement"][0], agreement)
    assert "labelled_loss" not in history and "accuracy" not in history
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["distillation_loss"], expected, rtol=1e-5)


def test_labelled_loss_is_weighted_in():
    x = vectors(16)
    labels = np.arange(16) % NUM_CLASSES
    teacher, student = mlp(name="teacher"), mlp(name="student")
    model = SimCLRDistiller(
        teacher=teacher, student=student, temperature=2.0, labelled_loss_weight=0.3
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    student_logits = logits_of(student, x)
    distill = numpy_reference(logits_of(teacher, x), student_logits, 2.0).mean()
    labelled = -log_softmax(student_logits)[np.arange(16), labels].mean()
    accuracy = np.mean(student_logits.argmax(-1) == labels)
    history = model.fit(x, labels, batch_size=16, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["distillation_loss"][0], distill, rtol=1e-5)
    np.testing.assert_allclose(history["labelled_loss"][0], labelled, rtol=1e-5)
    np.testing.assert_allclose(history["accuracy"][0], accuracy)
    np.testing.assert_allclose(
        history["loss"][0], 0.7 * distill + 0.3 * labelled, rtol=1e-5
    )


def test_student_learns_the_teacher_and_the_teacher_stays_fixed():
    x = vectors(256)
    # A random teacher with batch norm, linear in inference mode, and a
    # smaller linear student that can represent it.
    teacher = mlp(hidden=16, name="teacher", activation=None, batch_norm=True)
    # Moving statistics away from their initial values: the teacher must
    # use them, and keep them.
    teacher(x, training=True)
    teacher_before = numpy_weights(teacher)
    teacher_logits = logits_of(teacher, x)
    teacher_predictions = teacher_logits.argmax(-1)
    assert len(np.unique(teacher_predictions)) > 1
    student = linear(name="student")
    model = SimCLRDistiller(teacher=teacher, student=student)
    # The teacher is left out of what the distiller trains, and its own
    # flags are left as they were.
    assert teacher.trainable
    assert all(w.trainable for w in teacher.trainable_weights)
    teacher_ids = {id(w) for w in teacher.weights}
    assert not any(id(w) in teacher_ids for w in model.trainable_weights)
    assert {id(w) for w in model.trainable_weights} == {
        id(w) for w in student.trainable_weights
    }
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(x, batch_size=32, epochs=15, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0] - 0.1
    for before, after in zip(teacher_before, numpy_weights(teacher)):
        np.testing.assert_array_equal(before, after)
    results = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    assert results["teacher_agreement"] > 0.9, results
    # The loss cannot go below the teacher's entropy, reached when the
    # student's distribution equals the teacher's.
    entropy = numpy_reference(teacher_logits, teacher_logits, 1.0).mean()
    assert entropy - 1e-4 < results["distillation_loss"] < entropy + 0.02, results
    student_predictions = ops.convert_to_numpy(model.predict(x, verbose=0)).argmax(-1)
    assert np.mean(student_predictions == teacher_predictions) > 0.9


def test_teacher_and_student_see_the_same_augmented_view():
    x = vectors(32)
    teacher, student = mlp(name="teacher"), mlp(name="student")
    student.set_weights(teacher.get_weights())
    model = SimCLRDistiller(
        teacher=teacher,
        student=student,
        augmentation=keras.layers.GaussianNoise(1.0, seed=1),
    )
    outputs = model(x, training=True)
    # The view is not the input, yet both networks saw the same one.
    augmented_logits = ops.convert_to_numpy(outputs["logits"])
    assert not np.allclose(augmented_logits, logits_of(student, x))
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs["logits"]),
        ops.convert_to_numpy(outputs["teacher_logits"]),
        rtol=1e-5,
        atol=1e-6,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert history["teacher_agreement"][0] == 1.0
    # Inference: the student on the images as given.
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), logits_of(student, x), rtol=1e-6
    )


def tiny_encoder(name):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name=name)


def classifier_pair():
    teacher = SimCLRClassifier(
        tiny_encoder("teacher_encoder"),
        NUM_CLASSES,
        head_layers=1,
        projection_head=ProjectionHead(hidden_dim=6, output_dim=4, num_layers=2),
        name="teacher",
    )
    student = SimCLRClassifier(
        tiny_encoder("student_encoder"), NUM_CLASSES, name="student"
    )
    return teacher, student


def test_export_outputs():
    images = np.random.default_rng(0).uniform(size=(4, IMAGE_SIZE, IMAGE_SIZE, 3))
    teacher, student = classifier_pair()
    model = SimCLRDistiller(teacher=teacher, student=student)
    assert set(model.export_outputs(images)) == {"features", "logits"}
    model = SimCLRDistiller(teacher=mlp(), student=linear())
    outputs = model.export_outputs(vectors(4))
    assert set(outputs) == {"logits"}
    assert tuple(outputs["logits"].shape) == (4, NUM_CLASSES)


def test_config_and_keras_round_trip(tmp_path):
    images = np.random.default_rng(0).uniform(
        0, 255, size=(8, IMAGE_SIZE, IMAGE_SIZE, 3)
    ).astype("float32")
    teacher, student = classifier_pair()
    teacher.linear_classifier.build((None, 6))
    teacher.linear_classifier.kernel.assign(
        np.random.default_rng(1).normal(size=(6, NUM_CLASSES))
    )
    model = SimCLRDistiller(
        teacher=teacher,
        student=student,
        temperature=2.0,
        labelled_loss_weight=0.25,
        augmentation=keras.layers.GaussianNoise(1.0, seed=3),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images, np.arange(8) % NUM_CLASSES, batch_size=8, epochs=1, verbose=0)
    revived = run_serialization_test(model)
    assert revived.temperature == 2.0 and revived.labelled_loss_weight == 0.25
    assert isinstance(revived.teacher, SimCLRClassifier)
    assert isinstance(revived.augmentation, keras.layers.GaussianNoise)
    revived_teacher = {id(w) for w in revived.teacher.weights}
    assert not any(id(w) in revived_teacher for w in revived.trainable_weights)
    restored = run_model_saving_test(model, images, tmp_path)
    # Both networks come back.
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.teacher(images)),
        ops.convert_to_numpy(model.teacher(images)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert len(restored.trainable_weights) == len(model.trainable_weights)
    restored.fit(images, batch_size=8, epochs=1, verbose=0)


def test_the_teacher_can_train_again_after_distillation(tmp_path):
    images = np.random.default_rng(0).uniform(
        0, 255, (16, IMAGE_SIZE, IMAGE_SIZE, 3)
    ).astype("float32")
    labels = np.arange(16) % NUM_CLASSES
    teacher, student = classifier_pair()
    teacher.compile()
    teacher.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    teacher_trainable = len(teacher.trainable_weights)
    model = SimCLRDistiller(teacher=teacher, student=student)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = numpy_weights(teacher)
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    for old, new in zip(before, numpy_weights(teacher)):
        np.testing.assert_array_equal(old, new)
    assert teacher.trainable
    assert len(teacher.trainable_weights) == teacher_trainable
    teacher.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    moved = [
        not np.array_equal(old, ops.convert_to_numpy(new))
        for old, new in zip(before, teacher.weights)
    ]
    assert any(moved)
    # Saved and reloaded, with the teacher's own optimizer inside: no
    # warning about optimizer variables.
    path = str(tmp_path / "distiller.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = keras.saving.load_model(path)
    assert [str(w.message) for w in caught] == []
    assert len(restored.trainable_weights) == len(student.trainable_weights)


def test_a_linear_student_trains_only_its_classifier():
    images = np.random.default_rng(0).uniform(
        0, 255, (16, IMAGE_SIZE, IMAGE_SIZE, 3)
    ).astype("float32")
    teacher, _ = classifier_pair()
    student = SimCLRClassifier(tiny_encoder("student_encoder"), NUM_CLASSES, mode="linear")
    model = SimCLRDistiller(teacher=teacher, student=student)
    model.build(images.shape)
    assert [id(w) for w in model.trainable_weights] == [
        id(w) for w in student.linear_classifier.weights
    ]
    encoder_before = numpy_weights(student.encoder)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    for old, new in zip(encoder_before, numpy_weights(student.encoder)):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"teacher": "resnet"}, "teacher"),
        ({"student": None}, "student"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"labelled_loss_weight": 1.0}, "labelled_loss_weight"),
        ({"labelled_loss_weight": -0.5}, "labelled_loss_weight"),
        ({"augmentation": "crop"}, "augmentation"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"teacher": mlp(), "student": linear()}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SimCLRDistiller(**arguments)


def test_teacher_cannot_be_the_student():
    model = mlp()
    with pytest.raises(ValueError, match="different objects"):
        SimCLRDistiller(teacher=model, student=model)


def test_different_class_counts_are_rejected():
    teacher = SimCLRClassifier(tiny_encoder("a"), 3)
    student = SimCLRClassifier(tiny_encoder("b"), 4)
    with pytest.raises(ValueError, match="num_classes"):
        SimCLRDistiller(teacher=teacher, student=student)
    inputs = keras.Input((DIM,))
    student = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES + 1)(inputs))
    model = SimCLRDistiller(teacher=mlp(), student=student)
    with pytest.raises(ValueError, match="same classes"):
        model.build((None, DIM))


def test_compile_rejects_a_loss_and_fit_rejects_sample_weights():
    model = SimCLRDistiller(teacher=mlp(), student=linear())
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer="sgd", loss="mse")
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(
            vectors(8), np.zeros(8), sample_weight=np.ones(8), batch_size=8, verbose=0
        )


# === Evaluation transform ===


def random_final_layer(classifier, seed):
    """Random weights in the zero-initialised final layer."""
    rng = np.random.default_rng(seed)
    layer = classifier.linear_classifier
    layer.kernel.assign(rng.normal(size=tuple(layer.kernel.shape)))
    layer.bias.assign(rng.normal(size=tuple(layer.bias.shape)))


def crop_teacher_and_student():
    """A teacher from a pretrainer with the imagenet preset, and a student
    built from a bare encoder (no transform of its own)."""
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
    from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer

    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder("teacher_encoder"),
        augmentation=SimCLRAugmentation(IMAGE_SIZE, preset="imagenet", seed=0),
        projection_head=ProjectionHead(hidden_dim=6, output_dim=4),
    )
    teacher = SimCLRClassifier(pretrainer, NUM_CLASSES, mode="linear", name="teacher")
    student = SimCLRClassifier(
        tiny_encoder("student_encoder"), NUM_CLASSES, name="student"
    )
    for seed, model in enumerate((teacher, student)):
        model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
        random_final_layer(model, seed)
    return teacher, student


def large_images(n=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 12, 10, 3)).astype(
        "float32"
    )


def reference_views(images):
    from tests.center_crop_reference import official_center_crop

    return official_center_crop(images, IMAGE_SIZE, IMAGE_SIZE)


def test_inference_and_evaluate_use_the_teachers_evaluation_transform():
    teacher, student = crop_teacher_and_student()
    model = SimCLRDistiller(teacher=teacher, student=student, temperature=2.0)
    assert model.evaluation_transform is teacher.evaluation_transform
    images = large_images()
    views = reference_views(images)
    student_logits = logits_of(student, views)
    np.testing.assert_allclose(
        model.predict(images, verbose=0), student_logits, atol=1e-5, rtol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.export_outputs(images)["logits"]),
        student_logits,
        atol=1e-5,
        rtol=1e-5,
    )
    model.compile()
    logs = model.evaluate(images, batch_size=6, verbose=0, return_dict=True)
    expected = numpy_reference(logits_of(teacher, views), student_logits, 2.0)
    assert logs["distillation_loss"] == pytest.approx(expected.mean(), rel=1e-5)
    # Images at the view size pass unchanged.
    small = np.random.default_rng(1).uniform(
        0, 255, (3, IMAGE_SIZE, IMAGE_SIZE, 3)
    ).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(small)), logits_of(student, small), rtol=1e-5,
        atol=1e-5,
    )


def test_the_augmentation_gives_the_evaluation_transform():
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
    from tests.center_crop_reference import whole_image_resize

    teacher, student = crop_teacher_and_student()
    augmentation = SimCLRAugmentation(IMAGE_SIZE, preset="cifar", seed=0)
    model = SimCLRDistiller(teacher=teacher, student=student, augmentation=augmentation)
    assert model.evaluation_transform is augmentation
    images = np.random.default_rng(2).uniform(0, 255, (4, 12, 12, 3))
    images = images.astype("float32")
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        logits_of(student, whole_image_resize(images, IMAGE_SIZE, IMAGE_SIZE)),
        atol=1e-4,
        rtol=1e-5,
    )


def test_evaluation_transform_round_trips(tmp_path):
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation

    teacher, student = crop_teacher_and_student()
    model = SimCLRDistiller(teacher=teacher, student=student)
    images = large_images(n=4)
    model.build((None, 12, 10, 3))
    revived = run_serialization_test(model)
    assert isinstance(revived.evaluation_transform, SimCLRAugmentation)
    assert revived.evaluation_transform.preset == "imagenet"
    restored = run_model_saving_test(model, images, tmp_path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(images)),
        logits_of(student, reference_views(images)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_an_augmentation_without_a_view_size_leaves_the_teachers_transform():
    teacher, student = crop_teacher_and_student()
    noise = keras.layers.GaussianNoise(1.0, seed=3)
    model = SimCLRDistiller(teacher=teacher, student=student, augmentation=noise)
    assert model.evaluation_transform is teacher.evaluation_transform
    model = SimCLRDistiller(teacher=mlp(), student=linear(), augmentation=noise)
    assert model.evaluation_transform is noise
    x = vectors(4)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), logits_of(model.student, x), rtol=1e-6
    )


# === Roles: teacher and student cannot be swapped silently ===


def labelled_images(n=16):
    images = np.random.default_rng(0).uniform(0, 255, (n, IMAGE_SIZE, IMAGE_SIZE, 3))
    return images.astype("float32"), np.arange(n) % NUM_CLASSES


def fine_tuned_teacher():
    teacher, student = classifier_pair()
    teacher.compile()
    teacher.fit(*labelled_images(), batch_size=8, epochs=1, verbose=0)
    return teacher, student


def test_positional_arguments_still_work_with_a_deprecation_warning():
    teacher, student = mlp(name="teacher"), linear(name="student")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SimCLRDistiller(teacher, student, 2.0, 0.25)
    assert [w.category for w in caught] == [DeprecationWarning]
    # Reported at the caller's line, naming the replacement.
    assert caught[0].filename == __file__
    assert "SimCLRDistiller(teacher=..., student=...)" in str(caught[0].message)
    assert model.teacher is teacher and model.student is student
    assert model.temperature == 2.0 and model.labelled_loss_weight == 0.25
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SimCLRDistiller(teacher=teacher, student=student, temperature=2.0)
    assert caught == []
    with pytest.raises(TypeError, match="`teacher` both by position and by keyword"):
        SimCLRDistiller(teacher, student, teacher=teacher)
    with pytest.raises(TypeError, match="at most 5 positional arguments"):
        SimCLRDistiller(teacher, student, 1.0, 0.0, None, "extra")


def test_swapped_roles_are_refused():
    teacher, student = fine_tuned_teacher()
    # Keras's distillation example takes the student first.
    message = (
        "`teacher` and `student` look swapped: the teacher is an untrained "
        "SimCLRClassifier"
    )
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match=message) as caught:
            SimCLRDistiller(student, teacher)
    assert "Received: teacher=student, student=teacher" in str(caught.value)
    with pytest.raises(ValueError, match=message):
        SimCLRDistiller(teacher=student, student=teacher)
    # A student trained by its own fit, of any kind, counts as trained.
    trained = mlp(name="trained")
    trained.compile(optimizer="sgd", loss="mse")
    trained.fit(vectors(8), np.zeros((8, NUM_CLASSES)), verbose=0)
    untrained = SimCLRClassifier(tiny_encoder("e"), NUM_CLASSES)
    with pytest.raises(ValueError, match=message):
        SimCLRDistiller(teacher=untrained, student=trained)
    # The right order trains the student only.
    model = SimCLRDistiller(teacher=teacher, student=student)
    before = numpy_weights(teacher)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images, _ = labelled_images()
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    for old, new in zip(before, numpy_weights(teacher)):
        np.testing.assert_array_equal(old, new)
    assert np.any(ops.convert_to_numpy(student.linear_classifier.kernel))


def test_swapped_check_leaves_saved_distillers_and_fresh_pairs_alone(tmp_path):
    teacher, student = fine_tuned_teacher()
    model = SimCLRDistiller(teacher=teacher, student=student)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images, _ = labelled_images()
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    # Both networks trained: the student's final layer moved from zero.
    assert np.any(ops.convert_to_numpy(student.linear_classifier.kernel))
    revived = run_serialization_test(model)
    assert revived.teacher.name == "teacher" and revived.student.name == "student"
    path = str(tmp_path / "distiller.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.teacher(images)),
        logits_of(teacher, images),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(images)),
        logits_of(student, images),
        rtol=1e-5,
        atol=1e-5,
    )
    # Two untrained classifiers are not a swap.
    fresh_teacher, fresh_student = classifier_pair()
    SimCLRDistiller(teacher=fresh_teacher, student=fresh_student)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_pretrainer_is_refused_as_teacher_or_student(role):
    from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer

    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder("encoder"),
        projection_head=ProjectionHead(hidden_dim=6, output_dim=4),
        name="pretrainer",
    )
    arguments = {"teacher": classifier_pair()[0], "student": classifier_pair()[1]}
    arguments[role] = pretrainer
    with pytest.raises(ValueError) as caught:
        SimCLRDistiller(**arguments)
    message = str(caught.value)
    assert message.startswith(f"`{role}` must map images to logits")
    assert "SimCLRClassifier(pretrainer, num_classes=...)" in message
    assert message.endswith(f"Received: {role}=SimCLRPretrainer (name='pretrainer')")


def test_a_subclassed_teacher_without_compute_output_shape():
    class Logits(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(NUM_CLASSES)

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, x):
            return self.dense(x)

    teacher = Logits(name="subclassed")
    model = SimCLRDistiller(teacher=teacher, student=linear())
    model.build((None, DIM))
    x = vectors(16)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    expected = numpy_reference(logits_of(teacher, x), logits_of(model.student, x), 1.0)
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    np.testing.assert_allclose(
        history["distillation_loss"][0], expected.mean(), rtol=1e-5
    )

    class Pair(keras.Model):
        def call(self, x):
            return {"a": x, "b": x}

    model = SimCLRDistiller(teacher=Pair(name="pair"), student=linear())
    with pytest.raises(ValueError, match="`teacher` must map images to one tensor"):
        model.build((None, DIM))


def test_class_weight_is_refused_under_its_own_name():
    model = SimCLRDistiller(teacher=mlp(), student=linear())
    model.compile(optimizer="sgd")
    labels = np.arange(8) % NUM_CLASSES
    with pytest.raises(ValueError) as caught:
        model.fit(vectors(8), labels, class_weight={0: 2.0}, batch_size=8, verbose=0)
    assert str(caught.value) == (
        "SimCLRDistiller does not take class weights: the distillation loss "
        "weighs every image alike. Received: class_weight={0: 2.0}"
    )
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
