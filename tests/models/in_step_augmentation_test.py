"""The pretrainer's and distiller's views as one XLA cluster inside a
TensorFlow step that is not compiled with XLA as a whole."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.layers import RandomColorDistortion
from keras_simclr.layers import RandomGaussianBlur
from keras_simclr.layers import RandomResizedCrop
from keras_simclr.layers import SimCLRAugmentation
from keras_simclr.models import SimCLRDistiller
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.objectives import SimCLR
from tests.layers.random_color_distortion_test import reference_distortion
from tests.layers.random_gaussian_blur_test import reference_blur
from tests.layers.random_resized_crop_test import tf_crop_resize

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="XLA clusters inside a step are a TensorFlow path",
)

SIZE = 16


def xla(function):
    return tf.function(function, jit_compile=True, autograph=False)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def unit_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def encoder():
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )


def xla_calls(graph):
    """The function calls of `graph` that XLA must compile."""
    return [
        op
        for op in graph.get_operations()
        if "_XlaMustCompile" in op.node_def.attr
        and op.get_attr("_XlaMustCompile")
    ]


def traced_views(model, shape=(4, 20, 20, 3)):
    function = tf.function(model.make_views, autograph=False)
    return function.get_concrete_function(tf.TensorSpec(shape, "float32")).graph


# === The layers compiled with XLA match their references ===


@pytest.mark.parametrize("impl", ["v1", "v2"])
def test_colour_distortion_under_xla_matches_the_official_order(impl):
    layer = RandomColorDistortion(
        strength=1.0, impl=impl, value_range=(0, 1), seed=3
    )
    transform = xla(layer.transform_images)
    for batch in range(6):
        x = unit_images((4, 16, 16, 3), seed=batch)
        transformation = layer.get_random_transformation(4)
        y = to_numpy(transform(tf.constant(x), transformation))
        params = {k: to_numpy(v) for k, v in transformation.items()}
        for i in range(4):
            expected = reference_distortion(
                x[i], {k: v[i] for k, v in params.items()}, impl
            )
            np.testing.assert_allclose(y[i], expected, atol=1e-5)


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_blur_under_xla_matches_numpy(padding):
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, padding=padding)
    x = unit_images((4, 24, 20, 3)) * 255.0
    transformation = layer.get_random_transformation(4)
    y = to_numpy(xla(layer.transform_images)(tf.constant(x), transformation))
    sigmas = to_numpy(transformation["sigma"])
    for i in range(4):
        np.testing.assert_allclose(
            y[i], reference_blur(x[i], sigmas[i], 2, padding), rtol=1e-5, atol=1e-3
        )


def test_bicubic_crop_under_xla_equals_crop_then_tf_image_resize():
    layer = RandomResizedCrop(
        12,
        16,
        horizontal_flip_probability=0.5,
        sampler="simclr",
        interpolation="bicubic",
        value_range=(0, 1),
        seed=3,
    )
    transform = xla(layer.transform_images)
    for batch in range(2):
        x = unit_images((4, 20, 28, 3), seed=batch)
        boxes = layer.get_random_transformation((4, 20, 28, 3))
        y = to_numpy(transform(tf.constant(x), boxes))
        boxes = {k: to_numpy(v) for k, v in boxes.items()}
        expected = tf_crop_resize(x, boxes, 12, 16, "bicubic")
        np.testing.assert_allclose(y, np.clip(expected, 0, 1), atol=2e-6)


# === When the step takes the path ===


def test_views_are_one_xla_cluster_in_the_step():
    model = SimCLRPretrainer(
        encoder(), augmentation=SimCLRAugmentation(SIZE, seed=0)
    )
    assert len(xla_calls(traced_views(model))) == 1
    pair = SimCLRPretrainer(
        encoder(), augmentation=SimCLRAugmentation.pair(SIZE, preset="byol")
    )
    assert len(xla_calls(traced_views(pair))) == 1


def test_views_of_other_layers_or_an_xla_step_stay_as_they_are():
    # A user's layer may not compile with XLA: Keras's RandomRotation is
    # an `ImageProjectiveTransformV3`, which XLA refuses.
    rotation = keras.layers.RandomRotation(0.1, seed=0)
    resize = keras.Sequential([rotation, keras.layers.Resizing(SIZE, SIZE)])
    user = SimCLRPretrainer(encoder(), augmentation=resize)
    assert xla_calls(traced_views(user)) == []
    user.compile(optimizer=keras.optimizers.SGD(0.01))
    history = user.fit(unit_images((8, 20, 20, 3)) * 255, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # A step compiled with XLA as a whole needs no cluster of its own.
    whole = SimCLRPretrainer(
        encoder(), augmentation=SimCLRAugmentation(SIZE, seed=0)
    )
    whole.compile(jit_compile=True)
    assert xla_calls(traced_views(whole)) == []
    # Eagerly, nothing is compiled.
    view_a, view_b = whole.make_views(unit_images((4, 20, 20, 3)) * 255)
    assert view_a.shape == (4, SIZE, SIZE, 3) == view_b.shape


def test_distiller_views_are_one_xla_cluster():
    teacher = keras.Sequential([encoder(), keras.layers.Dense(3)])
    student = keras.Sequential([encoder(), keras.layers.Dense(3)])
    model = SimCLRDistiller(
        teacher=teacher,
        student=student,
        augmentation=SimCLRAugmentation(SIZE, seed=0),
    )
    function = tf.function(
        lambda images: model(images, training=True), autograph=False
    )
    graph = function.get_concrete_function(
        tf.TensorSpec((4, 20, 20, 3), "float32")
    ).graph
    assert len(xla_calls(graph)) == 1


# === In training ===


def test_fit_logs_the_loss_of_its_xla_views():
    """One SGD step at learning rate 0: the logged loss is NT-Xent of the
    encoder and head on views drawn by the same XLA cluster (a NumPy
    recomputation from the same draws, replayed by a second model with the
    same seeds)."""
    x = unit_images((8, 20, 20, 3)) * 255

    def build():
        keras.utils.set_random_seed(0)
        model = SimCLRPretrainer(
            encoder(), augmentation=SimCLRAugmentation(SIZE, seed=5),
            objective=SimCLR(temperature=0.5),
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        return model

    model = build()
    logged = model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    replay = build()
    view_a, view_b = tf.function(replay.make_views, autograph=False)(x)
    # Both views in one batch, as the step runs the head's batch norm.
    views = tf.concat([view_a, view_b], axis=0)
    features = replay.encoder(views, training=True)
    z = to_numpy(replay.projection_head(features, training=True))
    z = z.astype("float64")
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / 0.5
    np.fill_diagonal(logits, -np.inf)
    n = len(x)
    positives = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(2 * n), positives].mean()
    np.testing.assert_allclose(logged.history["loss"][0], expected, rtol=1e-5)
    # The views are augmented: not the resized images, and two per image.
    assert np.abs(to_numpy(view_a) - to_numpy(view_b)).mean() > 1.0


def test_views_made_outside_fit_still_check_the_range():
    """XLA drops assertions, so the augmentation's range check runs outside
    the cluster: views made in a user's own graph step still refuse images
    out of range. (In `fit`, the first batch is checked before training.)"""
    model = SimCLRPretrainer(
        encoder(), augmentation=SimCLRAugmentation(SIZE, seed=0)
    )
    views = tf.function(model.make_views, autograph=False)
    assert len(xla_calls(traced_views(model))) == 1
    views(unit_images((4, 20, 20, 3)) * 255)
    with pytest.raises(tf.errors.InvalidArgumentError, match="value_range"):
        views(unit_images((4, 20, 20, 3)) * 300 + 400)
