import keras
import numpy as np
import pytest

from keras_simclr.evaluation import extract_features
from keras_simclr.evaluation import knn_accuracy
from keras_simclr.evaluation import knn_predict
from keras_simclr.evaluation import knn_scores


def reference_knn_scores(train, train_labels, queries, num_classes, k, temperature):
    """The InstDisc weighted vote, written out query by query in float64."""
    def normalize(x):
        x = np.asarray(x, "float64")
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(norm, 1e-12)

    train, queries = normalize(train), normalize(queries)
    k = min(k, len(train))
    scores = np.zeros((len(queries), num_classes))
    for row, query in enumerate(queries):
        similarities = train @ query
        # Stable: among equal similarities the lower index comes first.
        neighbours = np.argsort(-similarities, kind="stable")[:k]
        for index in neighbours:
            scores[row, train_labels[index]] += np.exp(
                similarities[index] / temperature
            )
    return scores / scores.sum(axis=1, keepdims=True)


def random_problem(seed, num_train=150, num_queries=40, dim=12, num_classes=7):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(num_train, dim)).astype("float32")
    labels = rng.integers(0, num_classes, size=num_train)
    queries = rng.normal(size=(num_queries, dim)).astype("float32")
    return train, labels, queries


@pytest.mark.parametrize(
    "k, temperature", [(1, 0.1), (5, 0.07), (20, 0.1), (200, 0.5), (60, 1.0)]
)
def test_scores_and_predictions_match_numpy_reference(k, temperature):
    train, labels, queries = random_problem(k)
    expected = reference_knn_scores(train, labels, queries, 7, k, temperature)
    scores = knn_scores(train, labels, queries, 7, k=k, temperature=temperature)
    assert scores.shape == (40, 7) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    predictions = knn_predict(
        train, labels, queries, 7, k=k, temperature=temperature
    )
    np.testing.assert_array_equal(predictions, expected.argmax(axis=1))


def test_chunking_does_not_change_scores():
    train, labels, queries = random_problem(1, num_queries=53)
    whole = knn_scores(train, labels, queries, 7, k=10, chunk_size=1000)
    for chunk_size in (7, 53):
        np.testing.assert_allclose(
            knn_scores(train, labels, queries, 7, k=10, chunk_size=chunk_size),
            whole,
            atol=1e-6,
        )


def test_k_larger_than_train_set_is_clamped():
    train, labels, queries = random_problem(2, num_train=30)
    clamped = knn_scores(train, labels, queries, 7, k=200)
    np.testing.assert_allclose(
        clamped, knn_scores(train, labels, queries, 7, k=30), atol=1e-6
    )
    np.testing.assert_allclose(
        clamped, reference_knn_scores(train, labels, queries, 7, 200, 0.1),
        atol=1e-5,
    )


def test_features_are_compared_by_cosine():
    train, labels, queries = random_problem(3)
    scale = np.random.default_rng(0).uniform(0.1, 10.0, size=(150, 1))
    np.testing.assert_allclose(
        knn_scores(train * scale.astype("float32"), labels, 3.0 * queries, 7, k=9),
        knn_scores(train, labels, queries, 7, k=9),
        atol=1e-5,
    )


def test_small_temperature_neither_overflows_nor_underflows():
    train, labels, queries = random_problem(4)
    scores = knn_scores(train, labels, queries, 7, k=20, temperature=1e-4)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    # The nearest neighbour outweighs all others.
    nearest = knn_predict(train, labels, queries, 7, k=1)
    np.testing.assert_array_equal(scores.argmax(axis=1), nearest)


def test_ties_at_the_kth_neighbour_go_to_the_lower_index():
    eye = np.eye(4, dtype="float32")
    # Three copies of e0 (labels 2, 0, 1) then e1 twice (label 3).
    train = np.stack([eye[0], eye[0], eye[0], eye[1], eye[1]])
    labels = np.array([2, 0, 1, 3, 3])
    query = np.array([[0.8, 0.6, 0.0, 0.0]], "float32")
    # k=2: two of the three tied copies of e0 are neighbours: indices 0 and 1.
    scores = knn_scores(train, labels, query, 4, k=2)
    np.testing.assert_array_equal(scores, [[0.5, 0.0, 0.5, 0.0]])
    np.testing.assert_allclose(
        scores, reference_knn_scores(train, labels, query, 4, 2, 0.1), atol=1e-6
    )
    # Classes 0 and 2 tie; the lower class id wins.
    np.testing.assert_array_equal(knn_predict(train, labels, query, 4, k=2), [0])
    # k=4: all three copies and the first e1.
    scores = knn_scores(train, labels, query, 4, k=4)
    np.testing.assert_allclose(
        scores, reference_knn_scores(train, labels, query, 4, 4, 0.1), atol=1e-6
    )


def test_ties_are_the_same_for_every_chunk_and_row():
    rng = np.random.default_rng(5)
    base = np.eye(6, dtype="float32")
    # Many exact duplicates: every similarity is a repeated value.
    train = base[rng.integers(0, 6, size=80)]
    labels = rng.integers(0, 6, size=80)
    queries = rng.normal(size=(30, 6)).astype("float32")
    expected = reference_knn_scores(train, labels, queries, 6, 25, 0.1)
    for chunk_size in (1, 30):
        scores = knn_scores(train, labels, queries, 6, k=25, chunk_size=chunk_size)
        np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_class_without_neighbours_scores_zero():
    train, labels, queries = random_problem(6)
    labels = labels % 3
    scores = knn_scores(train, labels, queries, 7, k=15)
    np.testing.assert_array_equal(scores[:, 3:], 0.0)


def make_encoder(dim=5):
    return keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(dim)]
    )


def image_problem(seed, num_images, num_classes=8):
    centers = np.random.default_rng(99).normal(size=(num_classes, 4, 4, 1)) * 3.0
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=num_images)
    images = centers[labels] + rng.normal(size=(num_images, 4, 4, 1)) * 0.3
    return images.astype("float32"), labels


def test_knn_accuracy_equals_knn_on_the_encoder_features():
    encoder = make_encoder()
    train = image_problem(0, 90)
    test = image_problem(1, 37)
    result = knn_accuracy(encoder, train, test, k=10, batch_size=16)
    train_features = encoder.predict(train[0], verbose=0)
    test_features = encoder.predict(test[0], verbose=0)
    expected = reference_knn_scores(train_features, train[1], test_features, 8, 10, 0.1)
    assert result["top1"] == pytest.approx(np.mean(expected.argmax(1) == test[1]))
    top5 = np.argsort(-expected, axis=1, kind="stable")[:, :5]
    assert result["top5"] == pytest.approx(np.mean(np.any(top5 == test[1][:, None], 1)))
    assert result["top5"] >= result["top1"] > 0.5


def test_knn_accuracy_reports_top5_only_above_five_classes():
    encoder = make_encoder()
    train = image_problem(0, 40, num_classes=4)
    test = image_problem(1, 20, num_classes=4)
    result = knn_accuracy(encoder, train, test, k=5)
    assert set(result) == {"top1"}
    result = knn_accuracy(encoder, train, test, k=5, num_classes=6)
    assert set(result) == {"top1", "top5"}
    assert result["top5"] == 1.0


def test_knn_accuracy_accepts_tf_datasets_batched_or_not():
    tf = pytest.importorskip("tensorflow")
    encoder = make_encoder()
    train = image_problem(0, 50)
    test = image_problem(1, 21)
    expected = knn_accuracy(encoder, train, test, k=7)
    batched = knn_accuracy(
        encoder,
        tf.data.Dataset.from_tensor_slices(train).batch(8),
        tf.data.Dataset.from_tensor_slices(test).batch(5),
        k=7,
    )
    unbatched = knn_accuracy(
        encoder,
        tf.data.Dataset.from_tensor_slices(train),
        tf.data.Dataset.from_tensor_slices(test),
        k=7,
        batch_size=9,
    )
    assert batched == pytest.approx(expected)
    assert unbatched == pytest.approx(expected)


def test_extract_features_uses_inference_mode():
    encoder = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dropout(0.9),
            keras.layers.BatchNormalization(),
        ]
    )
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    features, labels = extract_features(encoder, (x, np.arange(10)), batch_size=3)
    expected = keras.ops.convert_to_numpy(encoder(x, training=False))
    np.testing.assert_allclose(features, expected, atol=1e-6)
    np.testing.assert_array_equal(labels, np.arange(10))
    # A layer that is not a model is called directly.
    features, _ = extract_features(keras.layers.Identity(), (x, np.zeros(10)))
    np.testing.assert_array_equal(features, x)


def test_knn_scores_rejects_bad_arguments():
    train, labels, queries = random_problem(0)
    with pytest.raises(ValueError, match="num_classes"):
        knn_scores(train, labels, queries, 1)
    with pytest.raises(ValueError, match="class ids in"):
        knn_scores(train, labels, queries, 5)
    with pytest.raises(ValueError, match="`k`"):
        knn_scores(train, labels, queries, 7, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_scores(train, labels, queries, 7, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_scores(train, labels, queries, 7, chunk_size=0)
    with pytest.raises(ValueError, match="same number of features"):
        knn_scores(train, labels, queries[:, :3], 7)
    with pytest.raises(ValueError, match="labels for"):
        knn_scores(train, labels[:-1], queries, 7)
    with pytest.raises(ValueError, match="non-negative"):
        knn_scores(train, labels - 1, queries, 7)
    with pytest.raises(ValueError, match="finite"):
        knn_scores(train * np.nan, labels, queries, 7)
    with pytest.raises(ValueError, match="2-D"):
        knn_scores(train[0], labels, queries, 7)


def test_knn_accuracy_rejects_bad_data_and_encoders():
    train = image_problem(0, 10)
    with pytest.raises(ValueError, match="encoder"):
        knn_accuracy("resnet", train, train)
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        knn_accuracy(make_encoder(), train[0], train)
    with pytest.raises(ValueError, match="labels for"):
        knn_accuracy(make_encoder(), (train[0], train[1][:5]), train)
    with pytest.raises(ValueError, match="integer class ids"):
        knn_accuracy(make_encoder(), (train[0], train[1] + 0.5), train)
    with pytest.raises(ValueError, match="feature vectors"):
        knn_accuracy(keras.layers.Identity(), train, train)
    with pytest.raises(ValueError, match="class ids in"):
        knn_accuracy(make_encoder(), train, train, num_classes=2)


# === Evaluation transform ===

VIEW = 32


def unit_range_setup(seed, num_images=10, size=40):
    """A pretrainer with the imagenet preset at 32 px on [0, 1] images,
    and labelled float images of another size."""
    from keras_simclr.layers.projection_head import ProjectionHead
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
    from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer

    encoder = keras.Sequential(
        [
            keras.Input((VIEW, VIEW, 3)),
            keras.layers.Conv2D(5, 3, strides=2),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    pretrainer = SimCLRPretrainer(
        encoder=encoder,
        augmentation=SimCLRAugmentation(
            VIEW, preset="imagenet", value_range=(0, 1), seed=0
        ),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (num_images, size, size, 3)).astype("float32")
    labels = rng.integers(0, 3, num_images)
    return pretrainer, encoder, images, labels


def reference_features(encoder, images):
    from tests.center_crop_reference import official_center_crop

    views = official_center_crop(images, VIEW, VIEW, value_range=(0, 1))
    return keras.ops.convert_to_numpy(encoder(views, training=False))


def test_features_of_a_pretrainer_go_through_its_evaluation_transform():
    pretrainer, encoder, images, labels = unit_range_setup(0)
    expected = reference_features(encoder, images)
    assert np.std(expected) > 1e-3
    features, got_labels = extract_features(
        pretrainer, (images, labels), batch_size=4
    )
    np.testing.assert_allclose(features, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got_labels, labels)
    # A bare encoder takes them through `preprocessing`.
    features, _ = extract_features(
        encoder, (images, labels), preprocessing=pretrainer.evaluation_views
    )
    np.testing.assert_allclose(features, expected, atol=1e-5, rtol=0)


def test_images_at_the_view_size_reach_the_encoder_unchanged():
    pretrainer, encoder, _, labels = unit_range_setup(1, size=VIEW)
    images = np.random.default_rng(2).uniform(0, 1, (10, VIEW, VIEW, 3))
    images = images.astype("float32")
    expected = keras.ops.convert_to_numpy(encoder(images, training=False))
    for model in (pretrainer, encoder):
        features, _ = extract_features(model, (images, labels), batch_size=4)
        np.testing.assert_allclose(features, expected, atol=1e-6, rtol=0)


def test_features_of_a_classifier_are_its_encoders_on_its_evaluation_views():
    from keras_simclr.models.simclr_classifier import SimCLRClassifier

    pretrainer, encoder, images, labels = unit_range_setup(3)
    classifier = SimCLRClassifier(pretrainer, num_classes=3, mode="linear")
    features, _ = extract_features(classifier, (images, labels))
    np.testing.assert_allclose(
        features, reference_features(encoder, images), atol=1e-5, rtol=0
    )


def test_knn_accuracy_of_a_pretrainer_is_that_of_the_reference_views():
    pretrainer, encoder, train_images, train_labels = unit_range_setup(4, 24)
    _, _, test_images, test_labels = unit_range_setup(5, 9)
    result = knn_accuracy(
        pretrainer,
        (train_images, train_labels),
        (test_images, test_labels),
        k=5,
    )
    expected = reference_knn_scores(
        reference_features(encoder, train_images),
        train_labels,
        reference_features(encoder, test_images),
        3,
        5,
        0.1,
    )
    assert result["top1"] == pytest.approx(
        np.mean(expected.argmax(1) == test_labels)
    )


def test_preprocessing_must_be_callable():
    train = image_problem(0, 10)
    with pytest.raises(ValueError, match="preprocessing='crop'"):
        knn_accuracy(make_encoder(), train, train, preprocessing="crop")
    with pytest.raises(ValueError, match="preprocessing=1"):
        extract_features(make_encoder(), train, preprocessing=1)


# === The images' range, checked before any feature (issue 25, item 5) ===


class CountingEncoder(keras.layers.Layer):
    """Flattens images to features; declares the range it reads them in, as
    the library's ResNet does, and counts its calls."""

    def __init__(self, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        self.value_range = value_range
        self.calls = 0

    def call(self, images, training=False):
        self.calls += 1
        return keras.ops.reshape(images, (keras.ops.shape(images)[0], -1))


def pixel_problem(seed, num_images=12):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num_images, 4, 4, 1)).astype("float32")
    return images, np.arange(num_images) % 3


def test_knn_accuracy_refuses_images_on_another_scale_before_any_feature():
    import re

    import tensorflow as tf

    encoder = CountingEncoder()
    train, test = pixel_problem(0), pixel_problem(1)
    cases = {
        "train_data[0]": ((train[0] / 255.0, train[1]), test, "[0, 1]"),
        "test_data[0]": (train, (test[0] / 127.5 - 1.0, test[1]), "[-1, 1]"),
        "test_data": (
            train,
            tf.data.Dataset.from_tensor_slices((test[0] / 255.0, test[1])).batch(4),
            "[0, 1]",
        ),
    }
    for argument, (train_data, test_data, scale) in cases.items():
        message = (
            f"`{argument}` holds images in {scale} but `value_range` is "
            "(0.0, 255.0) (declared by the encoder)"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            knn_accuracy(encoder, train_data, test_data, k=3)
        with pytest.raises(ValueError, match=re.escape(f"holds images in {scale}")):
            extract_features(
                encoder, train_data if "train" in argument else test_data
            )
    # Refused before the encoder ran on either set.
    assert encoder.calls == 0
    expected = knn_accuracy(encoder, train, test, k=3)
    # The user's preprocessing is checked on what it gives the encoder.
    unit = ((train[0] / 255.0, train[1]), (test[0] / 255.0, test[1]))
    assert knn_accuracy(
        encoder, *unit, k=3, preprocessing=lambda images: images * 255.0
    ) == pytest.approx(expected)
    with pytest.raises(
        ValueError, match=re.escape("`preprocessing(train_data[0])` holds images")
    ):
        knn_accuracy(encoder, *unit, k=3, preprocessing=lambda images: images)
    # An encoder that declares no range is not checked.
    knn_accuracy(CountingEncoder(value_range=None), *unit, k=3)


def test_knn_accuracy_of_a_pretrainer_checks_its_augmentation_range():
    import re

    from keras_simclr.layers import ProjectionHead
    from keras_simclr.layers import SimCLRAugmentation
    from keras_simclr.models import SimCLRClassifier
    from keras_simclr.models import SimCLRPretrainer

    # The encoder declares no range; the augmentation it trained behind does.
    pretrainer = SimCLRPretrainer(
        make_encoder(),
        augmentation=SimCLRAugmentation(4, preset="cifar", seed=0),
        projection_head=ProjectionHead(hidden_dim=4, output_dim=2),
    )
    train, test = pixel_problem(0), pixel_problem(1)
    for model, owner in (
        (pretrainer, "the pretrainer's augmentation"),
        (SimCLRClassifier(pretrainer, 3), "the classifier's evaluation_transform"),
    ):
        message = (
            "`train_data[0]` holds images in [0, 1] but `value_range` is "
            f"(0.0, 255.0) (declared by {owner})"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            knn_accuracy(model, (train[0] / 255.0, train[1]), test, k=3)
        result = knn_accuracy(model, train, test, k=3)
        assert 0.0 <= result["top1"] <= 1.0
