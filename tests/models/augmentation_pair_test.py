"""AugmentationPair: one augmentation layer per view, alone and in
SimCLRPretrainer."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.augmentation_pair import AugmentationPair
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test
from tests.testing import tiny_encoder


def to_numpy(x):
    return ops.convert_to_numpy(x)


def uint8_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype("uint8")


def make_pretrainer(augmentation, **kwargs):
    return SimCLRPretrainer(
        tiny_encoder(),
        augmentation=augmentation,
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
        **kwargs,
    )


# === The pair ===


def test_pair_makes_byol_views_with_offset_seeds():
    pair = SimCLRAugmentation.pair(8, preset="byol", seed=3)
    assert isinstance(pair, AugmentationPair)
    assert (pair.view_a.view, pair.view_b.view) == (1, 2)
    assert (pair.view_a.seed, pair.view_b.seed) == (3, 7)
    assert pair.view_a.blur.probability == 1.0
    assert pair.view_a.solarization is None
    assert pair.view_b.blur.probability == 0.1
    assert pair.view_b.solarization.probability == 0.2
    assert pair.image_size == 8 and pair.value_range == (0.0, 255.0)
    # Other arguments go to both views.
    pair = SimCLRAugmentation.pair(8, preset="cifar", crop_scale=(0.5, 1.0))
    assert pair.view_a.crop.scale == pair.view_b.crop.scale == (0.5, 1.0)
    assert pair.view_a.seed is None and pair.view_b.seed is None


def test_pair_equals_its_two_views_and_they_differ():
    x = np.repeat(uint8_images((1, 12, 12, 3)), 8, axis=0)
    view_a, view_b = SimCLRAugmentation.pair(8, preset="byol", seed=3)(x)
    expected_a = SimCLRAugmentation(8, preset="byol", view=1, seed=3)(x)
    expected_b = SimCLRAugmentation(8, preset="byol", view=2, seed=7)(x)
    np.testing.assert_array_equal(to_numpy(view_a), to_numpy(expected_a))
    np.testing.assert_array_equal(to_numpy(view_b), to_numpy(expected_b))
    assert np.abs(to_numpy(view_a) - to_numpy(view_b)).mean() > 5
    # With one preset for both views, seeds still make them differ.
    view_a, view_b = SimCLRAugmentation.pair(8, preset="cifar", seed=0)(x)
    assert np.abs(to_numpy(view_a) - to_numpy(view_b)).mean() > 5


def test_pair_without_training_is_the_evaluation_transform():
    x = uint8_images((8, 12, 12, 3))
    pair = SimCLRAugmentation.pair(8, preset="byol", seed=0)
    np.testing.assert_array_equal(
        to_numpy(pair(x, training=False)),
        to_numpy(pair.view_a(x, training=False)),
    )


def test_pair_config_round_trip():
    pair = SimCLRAugmentation.pair(8, preset="byol", seed=3, value_range=(0, 1))
    revived = run_serialization_test(pair)
    assert revived.view_b.seed == 7 and revived.view_b.view == 2
    assert revived.view_b.solarization.probability == 0.2
    revived = run_serialization_test(AugmentationPair(
        SimCLRAugmentation(8, preset="cifar"), keras.layers.Identity()
    ))
    assert isinstance(revived.view_b, keras.layers.Identity)


def test_pair_refuses_bad_views():
    with pytest.raises(ValueError, match="view_a="):
        AugmentationPair("crop", SimCLRAugmentation(8))
    with pytest.raises(ValueError, match="view_b="):
        AugmentationPair(SimCLRAugmentation(8), lambda x: x)
    with pytest.raises(ValueError, match=r"view_b with value_range=\(0.0, 1.0\)"):
        AugmentationPair(
            SimCLRAugmentation(8), SimCLRAugmentation(8, value_range=(0, 1))
        )
    with pytest.raises(ValueError, match="view=2"):
        SimCLRAugmentation.pair(8, preset="byol", view=2)


def test_pair_checks_the_value_range_of_its_input():
    pair = SimCLRAugmentation.pair(8, preset="byol")
    with pytest.raises(ValueError, match=r"holds images in \[0, 1\]"):
        pair(np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 3)))


def test_pair_in_tf_data():
    x = uint8_images((8, 12, 12, 3))
    pair = SimCLRAugmentation.pair(8, preset="byol", seed=1)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    dataset = dataset.map(lambda images: dict(zip(("view_a", "view_b"), pair(images))))
    batches = list(dataset)
    assert len(batches) == 2
    for batch in batches:
        view_a, view_b = batch["view_a"].numpy(), batch["view_b"].numpy()
        assert view_a.shape == view_b.shape == (4, 8, 8, 3)
        assert not np.allclose(view_a, view_b)
        assert view_a.min() >= 0 and view_a.max() <= 255


# === In SimCLRPretrainer ===


def test_pretrainer_gives_view_a_the_first_view_and_view_b_the_second():
    x = uint8_images((8, 8, 8, 3)).astype("float32")
    half = keras.layers.Rescaling(0.5)
    model = make_pretrainer((keras.layers.Identity(), half))
    assert isinstance(model.augmentation, AugmentationPair)
    features = to_numpy(model(x, training=True)["features"])
    expected = to_numpy(
        model.encoder(np.concatenate([x, 0.5 * x]), training=True)
    )
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # A list is accepted as well.
    model = make_pretrainer([keras.layers.Identity(), half])
    assert model.augmentation.view_b is half


def test_pretrainer_fits_one_step_with_a_byol_pair(tmp_path):
    x = uint8_images((8, 12, 12, 3)).astype("float32")
    pair = SimCLRAugmentation.pair(8, preset="byol", seed=0)
    model = make_pretrainer(pair)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    weights = [to_numpy(w) for w in model.encoder.trainable_weights]
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert model.optimizer.iterations.numpy() == 1
    assert np.isfinite(history["loss"][0])
    moved = [
        np.abs(to_numpy(w) - before).max()
        for w, before in zip(model.encoder.trainable_weights, weights)
    ]
    assert max(moved) > 0
    assert np.isfinite(model.evaluate(x, batch_size=8, verbose=0)[0])
    restored = run_model_saving_test(model, x, tmp_path)
    assert isinstance(restored.augmentation, AugmentationPair)
    assert restored.augmentation.view_b.solarization.probability == 0.2
    assert restored.augmentation.view_b.seed == 4


def test_pretrainer_with_a_pair_trains_byol():
    x = uint8_images((8, 12, 12, 3)).astype("float32")
    model = make_pretrainer(
        SimCLRAugmentation.pair(8, preset="byol", seed=0), objective="byol"
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize(
    "augmentation",
    [
        (SimCLRAugmentation(8),),
        (SimCLRAugmentation(8), SimCLRAugmentation(8), SimCLRAugmentation(8)),
        (SimCLRAugmentation(8), "blur"),
        (SimCLRAugmentation(8), lambda images: images),
        [],
    ],
)
def test_pretrainer_refuses_a_bad_pair(augmentation):
    with pytest.raises(ValueError, match="`augmentation`.*Received: augmentation="):
        make_pretrainer(augmentation)


def test_pretrainer_refuses_views_of_two_sizes():
    model = make_pretrainer(
        (SimCLRAugmentation(8), SimCLRAugmentation(6))
    )
    with pytest.raises(ValueError, match="augmentation.*one shape"):
        model.build((None, 12, 12, 3))
