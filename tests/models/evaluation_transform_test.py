"""The evaluation transform of SimCLRPretrainer: what the encoder sees at
inference, against the official crop written with `tf.image`."""

import keras
import numpy as np
import pytest

from keras_simclr.callbacks.knn_monitor import KNNMonitor
from keras_simclr.evaluation.knn import knn_accuracy
from keras_simclr.evaluation.knn import knn_scores
from keras_simclr.evaluation.knn import top_k_accuracies
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
from tests.center_crop_reference import official_center_crop
from tests.center_crop_reference import official_crop_box
from tests.center_crop_reference import whole_image_resize

VIEW = 32
# In pixel units of [0, 255]: float32 rounding of a resize is ~1e-5 of 255;
# a crop one pixel off, or bilinear for bicubic, is off by whole units.
PIXEL_ATOL = 2e-3


def flatten_encoder():
    """An encoder whose features are the pixels it is given, so that the
    features show exactly what reached it."""
    return keras.Sequential(
        [keras.Input((VIEW, VIEW, 3)), keras.layers.Flatten()], name="flatten"
    )


def conv_encoder():
    return keras.Sequential(
        [
            keras.Input((VIEW, VIEW, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(6, 3, strides=2),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="conv",
    )


def make_pretrainer(encoder, augmentation):
    return SimCLRPretrainer(
        encoder=encoder,
        augmentation=augmentation,
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )


def random_images(seed, height, width, batch=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, height, width, 3)).astype("uint8")


def test_reference_crop_box_is_the_official_one():
    # 48 x 40 to 32 x 32: 87.5% of the shorter side, 35, centred with the
    # official rounding ((48 - 35) + 1) // 2 = 7, ((40 - 35) + 1) // 2 = 3.
    assert official_crop_box(48, 40, 32, 32, 0.875) == (7, 3, 35, 35)
    assert official_crop_box(224, 300, 224, 224, 0.875) == (14, 52, 196, 196)


def test_inference_feeds_the_encoder_the_official_center_crop():
    images = random_images(0, 48, 40)
    pretrainer = make_pretrainer(
        flatten_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    expected = official_center_crop(images, VIEW, VIEW)
    features = keras.ops.convert_to_numpy(
        pretrainer(images, training=False)["features"]
    )
    np.testing.assert_allclose(
        features, expected.reshape(3, -1), atol=PIXEL_ATOL, rtol=0
    )
    # The tolerance tells bicubic from bilinear.
    bilinear = official_center_crop(images, VIEW, VIEW, method="bilinear")
    assert np.max(np.abs(bilinear - expected)) > 1.0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pretrainer.evaluation_views(images)),
        expected,
        atol=PIXEL_ATOL,
        rtol=0,
    )


def test_predict_gives_the_features_of_the_reference_through_the_same_encoder():
    images = random_images(1, 48, 40, batch=4)
    encoder = conv_encoder()
    pretrainer = make_pretrainer(
        encoder, SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    expected = keras.ops.convert_to_numpy(
        encoder(official_center_crop(images, VIEW, VIEW), training=False)
    )
    outputs = pretrainer.predict(images, batch_size=2, verbose=0)
    assert np.std(expected) > 1e-3
    np.testing.assert_allclose(outputs["features"], expected, atol=1e-5, rtol=1e-5)


def test_images_at_the_view_size_pass_unchanged():
    images = random_images(2, VIEW, VIEW).astype("float32")
    pretrainer = make_pretrainer(
        flatten_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    assert pretrainer.evaluation_views(images) is images
    features = pretrainer(images, training=False)["features"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(features),
        keras.ops.convert_to_numpy(pretrainer.encoder(images)),
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(features), images.reshape(3, -1)
    )


def test_cifar_preset_resizes_whole_images():
    images = random_images(3, 40, 40)
    pretrainer = make_pretrainer(
        flatten_encoder(), SimCLRAugmentation(VIEW, preset="cifar", seed=0)
    )
    features = keras.ops.convert_to_numpy(
        pretrainer(images, training=False)["features"]
    )
    expected = whole_image_resize(images, VIEW, VIEW)
    np.testing.assert_allclose(
        features, expected.reshape(3, -1), atol=PIXEL_ATOL, rtol=0
    )


def test_without_augmentation_images_pass_unchanged():
    images = random_images(4, VIEW, VIEW).astype("float32")
    pretrainer = make_pretrainer(flatten_encoder(), None)
    assert pretrainer.evaluation_transform is None
    assert pretrainer.evaluation_views(images) is images


@pytest.mark.skipif(
    not hasattr(SimCLRAugmentation, "pair"), reason="no augmentation pairs"
)
def test_augmentation_pair_uses_the_first_view_transform():
    pair = SimCLRAugmentation.pair(VIEW, preset="byol", seed=0)
    pretrainer = make_pretrainer(flatten_encoder(), pair)
    assert pretrainer.evaluation_transform is pair.view_a
    images = random_images(5, 48, 40)
    features = keras.ops.convert_to_numpy(
        pretrainer(images, training=False)["features"]
    )
    np.testing.assert_allclose(
        features,
        official_center_crop(images, VIEW, VIEW).reshape(3, -1),
        atol=PIXEL_ATOL,
        rtol=0,
    )


def test_predict_on_a_dataset_of_open_image_size():
    """Batches whose height and width the pipeline leaves open: a traced
    TensorFlow step decides in the graph, the others per batch."""
    import tensorflow as tf

    large = random_images(6, 48, 40, batch=2)
    small = random_images(7, VIEW, VIEW, batch=2)

    def batches():
        yield large
        yield small

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((None, None, None, 3), tf.uint8)
    ).apply(tf.data.experimental.assert_cardinality(2))
    pretrainer = make_pretrainer(
        flatten_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    pretrainer.build((None, VIEW, VIEW, 3))
    features = pretrainer.predict(dataset, verbose=0)["features"]
    expected = np.concatenate(
        [official_center_crop(large, VIEW, VIEW), small.astype("float32")]
    ).reshape(4, -1)
    np.testing.assert_allclose(features, expected, atol=PIXEL_ATOL, rtol=0)


@pytest.mark.parametrize("explicit_encoder", [False, True])
def test_knn_monitor_evaluates_the_pretrainer_on_its_evaluation_views(
    explicit_encoder,
):
    rng = np.random.default_rng(8)
    train_images = random_images(9, 48, 40, batch=12)
    test_images = random_images(10, 48, 40, batch=6)
    train_labels = rng.integers(0, 3, 12)
    test_labels = rng.integers(0, 3, 6)
    pretrainer = make_pretrainer(
        conv_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.01))
    monitor = KNNMonitor(
        (train_images, train_labels),
        (test_images, test_labels),
        encoder=pretrainer.encoder if explicit_encoder else None,
        k=3,
    )
    pretrainer.fit(
        train_images, epochs=1, batch_size=6, callbacks=[monitor], verbose=0
    )

    def reference_features(images):
        return keras.ops.convert_to_numpy(
            pretrainer.encoder(
                official_center_crop(images, VIEW, VIEW), training=False
            )
        )

    scores = knn_scores(
        reference_features(train_images),
        train_labels,
        reference_features(test_images),
        3,
        k=3,
    )
    assert monitor.results[0] == top_k_accuracies(scores, test_labels)
    assert monitor.results[0] == knn_accuracy(
        pretrainer, (train_images, train_labels), (test_images, test_labels), k=3
    )


def test_knn_monitor_takes_another_encoder_with_its_preprocessing():
    images = random_images(11, 48, 40, batch=8)
    labels = np.arange(8) % 2
    pretrainer = make_pretrainer(
        conv_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    pretrainer.build((None, 48, 40, 3))
    other = conv_encoder()
    monitor = KNNMonitor(
        (images, labels),
        (images, labels),
        encoder=other,
        k=3,
        preprocessing=pretrainer.evaluation_views,
    )
    monitor.set_model(pretrainer)
    monitor.on_train_begin()
    assert monitor._encoder is other
    logs = {}
    monitor.on_epoch_end(0, logs)
    features = keras.ops.convert_to_numpy(
        other(official_center_crop(images, VIEW, VIEW), training=False)
    )
    scores = knn_scores(features, labels, features, 2, k=3)
    assert logs["knn_accuracy"] == top_k_accuracies(scores, labels)["top1"]
    with pytest.raises(ValueError, match="preprocessing=3"):
        KNNMonitor((images, labels), (images, labels), preprocessing=3)


def test_evaluation_views_in_a_tf_data_map_of_open_image_size():
    """In a `tf.data` graph, on every backend, the size is tested per batch."""
    import tensorflow as tf

    large = random_images(12, 48, 40, batch=2)
    small = random_images(13, VIEW, VIEW, batch=2)

    def batches():
        yield large
        yield small

    pretrainer = make_pretrainer(
        flatten_encoder(), SimCLRAugmentation(VIEW, preset="imagenet", seed=0)
    )
    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((None, None, None, 3), tf.uint8)
    ).map(pretrainer.evaluation_views)
    assert dataset.element_spec.shape.as_list() == [None, VIEW, VIEW, 3]
    first, second = list(dataset.as_numpy_iterator())
    np.testing.assert_allclose(
        first, official_center_crop(large, VIEW, VIEW), atol=PIXEL_ATOL, rtol=0
    )
    np.testing.assert_array_equal(second, small.astype("float32"))


@pytest.mark.parametrize("view_size", [(24, 16), (16, 28)])
def test_non_square_views_are_the_official_center_crop(view_size):
    """A tall and a wide view: the encoder sees the official crop's shape
    (eagerly, and in a `tf.data` map of open image size), not its
    transpose."""
    import tensorflow as tf

    height, width = view_size
    images = random_images(14, 48, 40)
    encoder = keras.Sequential(
        [keras.Input((height, width, 3)), keras.layers.Flatten()]
    )
    pretrainer = make_pretrainer(
        encoder, SimCLRAugmentation(view_size, preset="imagenet", seed=0)
    )
    expected = official_center_crop(images, height, width)
    features = keras.ops.convert_to_numpy(
        pretrainer(images, training=False)["features"]
    )
    np.testing.assert_allclose(
        features, expected.reshape(3, -1), atol=PIXEL_ATOL, rtol=0
    )
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([images]),
        output_signature=tf.TensorSpec((None, None, None, 3), tf.uint8),
    ).map(pretrainer.evaluation_views)
    (views,) = list(dataset.as_numpy_iterator())
    np.testing.assert_allclose(views, expected, atol=PIXEL_ATOL, rtol=0)
