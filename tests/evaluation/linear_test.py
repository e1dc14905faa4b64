import keras
import numpy as np
import pytest

from keras_simclr.evaluation import linear_evaluation


def blobs(num_images, num_classes, dim, spread, seed, center_seed=0):
    centers = np.random.default_rng(center_seed).normal(size=(num_classes, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=num_images)
    features = centers[labels] + spread * rng.normal(size=(num_images, dim))
    # An offset and uneven scales, which standardisation takes out.
    features = features * np.linspace(0.5, 20.0, dim) + 3.0
    return features.astype("float32"), labels


def test_separable_features_are_classified_almost_perfectly():
    train = blobs(240, 8, 16, spread=0.1, seed=0)
    test = blobs(120, 8, 16, spread=0.1, seed=1)
    result = linear_evaluation(
        keras.layers.Identity(), train, test, epochs=8, batch_size=60,
        learning_rate=5e-2,
    )
    assert set(result) == {"top1", "top5"}
    assert result["top1"] >= 0.98
    assert result["top5"] >= result["top1"]


def test_top5_is_at_least_top1_on_a_hard_problem():
    train = blobs(200, 10, 6, spread=1.5, seed=2)
    test = blobs(200, 10, 6, spread=1.5, seed=3)
    result = linear_evaluation(
        keras.layers.Identity(), train, test, epochs=10, batch_size=50,
        learning_rate=5e-2,
    )
    assert 0.1 < result["top1"] < 0.9
    assert result["top5"] > result["top1"]


def test_matches_scikit_learn_logistic_regression():
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    train = blobs(200, 3, 5, spread=1.2, seed=4)
    test = blobs(300, 3, 5, spread=1.2, seed=5)
    scaler = preprocessing.StandardScaler().fit(train[0])
    classifier = linear_model.LogisticRegression(C=1.0, max_iter=5000)
    classifier.fit(scaler.transform(train[0]), train[1])
    expected = classifier.score(scaler.transform(test[0]), test[1])
    # LogisticRegression(C) minimises the summed cross-entropy plus
    # |W|^2 / (2C): the mean cross-entropy plus |W|^2 / (2 C n).
    result = linear_evaluation(
        keras.layers.Identity(), train, test, num_classes=3, epochs=12,
        batch_size=40, learning_rate=1e-1, weight_decay=1.0 / (2 * 200),
    )
    assert set(result) == {"top1"}
    assert 0.5 < expected < 0.95
    assert abs(result["top1"] - expected) <= 0.02


def test_encoder_runs_in_inference_mode():
    # Dropout of 0.99 would destroy the features in training mode.
    encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dropout(0.99)])
    train = blobs(160, 4, 16, spread=0.1, seed=6)
    test = blobs(80, 4, 16, spread=0.1, seed=7)
    result = linear_evaluation(
        encoder, train, test, epochs=8, batch_size=40, learning_rate=5e-2
    )
    assert result["top1"] >= 0.98


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"standardize": "yes"}, "standardize"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2}, "class ids in"),
        ({"verbose": 3}, "verbose"),
        ({"encoder": "linear"}, "encoder"),
        ({"train_data": np.zeros((4, 3))}, r"\(images, labels\)"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    data = blobs(12, 3, 4, spread=0.1, seed=0)
    arguments = {
        "encoder": keras.layers.Identity(),
        "train_data": data,
        "test_data": data,
        "epochs": 1,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        linear_evaluation(**arguments)


def test_a_pretrainer_is_evaluated_on_its_evaluation_views():
    from keras_simclr.layers.projection_head import ProjectionHead
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
    from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
    from tests.center_crop_reference import official_center_crop

    encoder = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    pretrainer = SimCLRPretrainer(
        encoder=encoder,
        augmentation=SimCLRAugmentation(8, preset="imagenet", value_range=(0, 1)),
        projection_head=ProjectionHead(hidden_dim=4, output_dim=2),
    )
    rng = np.random.default_rng(8)

    def data(num_images):
        labels = rng.integers(0, 3, num_images)
        images = rng.uniform(0, 0.5, (num_images, 12, 10, 3))
        # Each class brightens its own channel in the centre, which the
        # crop keeps.
        images[np.arange(num_images), 3:9, 3:7, labels] += 0.5
        return images.astype("float32"), labels

    train, test = data(60), data(30)

    def views(split):
        return official_center_crop(split[0], 8, 8, value_range=(0, 1)), split[1]

    arguments = {"epochs": 5, "batch_size": 20, "learning_rate": 5e-2}
    keras.utils.set_random_seed(0)
    result = linear_evaluation(pretrainer, train, test, **arguments)
    keras.utils.set_random_seed(0)
    expected = linear_evaluation(encoder, views(train), views(test), **arguments)
    assert result == expected
    keras.utils.set_random_seed(0)
    preprocessed = linear_evaluation(
        encoder, train, test, preprocessing=pretrainer.evaluation_views,
        **arguments,
    )
    assert preprocessed == expected
    assert expected["top1"] > 0.5


def test_rejects_a_preprocessing_that_is_not_callable():
    data = blobs(12, 3, 4, spread=0.1, seed=0)
    with pytest.raises(ValueError, match="preprocessing"):
        linear_evaluation(
            keras.layers.Identity(), data, data, epochs=1, preprocessing=[1]
        )
