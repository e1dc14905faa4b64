import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr

from keras_simclr.layers import ProjectionHead
from keras_simclr.losses import nt_xent
from keras_simclr.models import SimCLRPretrainer
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test

IMAGE_SIZE = 12


def tiny_encoder(channels=3):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="tiny_encoder")


def tiny_augmentation(seed=0):
    from keras_simclr.layers import SimCLRAugmentation

    return SimCLRAugmentation(IMAGE_SIZE, preset="cifar", seed=seed)


def images_and_labels(n=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    # Four classes of coloured blobs, so the data have structure to learn.
    images = rng.uniform(0, 60, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3))
    for i, label in enumerate(labels):
        images[i, :, :, label % 3] += 150
        if label == 3:
            images[i, : IMAGE_SIZE // 2] += 40
    return images.astype("float32"), labels


def make_pretrainer(augmentation="default", num_classes=None, temperature=0.5, **kwargs):
    if augmentation == "default":
        augmentation = tiny_augmentation()
    arguments = {
        "encoder": tiny_encoder(),
        "augmentation": augmentation,
        "projection_head": ProjectionHead(hidden_dim=16, output_dim=8),
        "num_classes": num_classes,
    }
    arguments.update(kwargs)
    if "objective" not in arguments:
        arguments["objective"] = keras_simclr.objectives.SimCLR(temperature=temperature)
    return SimCLRPretrainer(**arguments)


def test_fit_lowers_the_loss_and_reports_metrics():
    images, labels = images_and_labels()
    model = make_pretrainer(num_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # The logged loss of each epoch is that of new random views (it moves by
    # about +-0.3 from epoch to epoch here), so learning is measured on
    # fixed views, made once by another augmentation layer.
    augment = tiny_augmentation(seed=7)
    fixed_views = [
        {
            "view_a": ops.convert_to_numpy(augment(images)),
            "view_b": ops.convert_to_numpy(augment(images)),
        }
        for _ in range(4)
    ]

    def fixed_loss():
        losses = []
        for views in fixed_views:
            z = ops.convert_to_numpy(model(views, training=True)["projection"])
            z_a, z_b = np.split(z, 2)
            losses.append(ops.convert_to_numpy(nt_xent(z_a, z_b, 0.5)))
        return np.mean(losses)

    model.build(images.shape)
    before = fixed_loss()
    history = model.fit(images, labels, batch_size=8, epochs=30, verbose=0).history
    for name in (
        "loss",
        "contrastive_loss",
        "contrastive_accuracy",
        "contrastive_entropy",
        "probe_loss",
        "probe_accuracy",
    ):
        assert name in history, name
        assert np.all(np.isfinite(history[name])), name
    after = fixed_loss()
    assert after < before - 0.1, (before, after)
    probe = history["probe_loss"]
    assert np.mean(probe[-5:]) < np.mean(probe[:5]), probe
    # With 2N = 16 views, a uniform softmax over the 15 others has entropy
    # log(15); the learned one is sharper.
    assert 0 < history["contrastive_entropy"][-1] < np.log(15)


def test_step_loss_equals_nt_xent_of_the_model_outputs():
    images, _ = images_and_labels(n=8)
    views = {"view_a": images, "view_b": images[:, ::-1]}
    model = make_pretrainer(augmentation=None)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    outputs = model(views, training=True)
    z_a, z_b = np.split(ops.convert_to_numpy(outputs["projection"]), 2)
    expected = ops.convert_to_numpy(nt_xent(z_a, z_b, 0.5))
    history = model.fit(views, batch_size=8, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["contrastive_loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(history["loss"][0], expected, rtol=1e-5)


def test_without_augmentation_images_are_both_views():
    images, _ = images_and_labels(n=4)
    model = make_pretrainer(augmentation=None)
    features = ops.convert_to_numpy(model(images, training=True)["features"])
    np.testing.assert_allclose(features[:4], features[4:], rtol=1e-6)


def test_views_differ_with_augmentation():
    images, _ = images_and_labels(n=4)
    model = make_pretrainer()
    outputs = model(images, training=True)
    features = ops.convert_to_numpy(outputs["features"])
    assert features.shape[0] == 8
    assert not np.allclose(features[:4], features[4:])
    # Inference: the un-augmented images, one row each.
    outputs = model(images, training=False)
    assert tuple(outputs["features"].shape) == (4, 8)
    assert tuple(outputs["projection"].shape) == (4, 8)


def test_probe_does_not_train_the_encoder():
    images, labels = images_and_labels(n=8)
    weights = None
    encoders = []
    for use_labels in (False, True):
        keras.utils.set_random_seed(7)
        # The same views in both runs: the images themselves, on purpose.
        model = make_pretrainer(augmentation=keras.layers.Identity(), num_classes=4)
        model.build(images.shape)
        if weights is None:
            weights = model.encoder.get_weights()
        model.encoder.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(images, labels if use_labels else None, batch_size=8, epochs=2, verbose=0)
        encoders.append(model.encoder.get_weights())
    for without, with_labels in zip(*encoders):
        np.testing.assert_allclose(without, with_labels, atol=1e-6)


def test_evaluate_and_predict():
    images, labels = images_and_labels(n=8)
    model = make_pretrainer(num_classes=4)
    model.compile(optimizer="sgd")
    results = model.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True)
    assert np.isfinite(results["contrastive_loss"])
    assert 0 <= results["probe_accuracy"] <= 1
    predictions = model.predict(images, batch_size=4, verbose=0)
    assert predictions["features"].shape == (8, 8)
    assert predictions["probe_logits"].shape == (8, 4)


def test_tf_data_input():
    import tensorflow as tf

    images, labels = images_and_labels(n=8)
    model = make_pretrainer(num_classes=4)
    model.compile(optimizer="adam")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    history = model.fit(dataset, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_keras_applications_encoder():
    from keras_simclr.layers import SimCLRAugmentation

    base = keras.applications.MobileNet(
        input_shape=(32, 32, 3),
        alpha=0.25,
        include_top=False,
        pooling="avg",
        weights=None,
    )
    # The README's recipe: views come in the augmentation's value_range
    # (0-255); the model's own preprocess_input, applied inside the
    # encoder, maps them to the range it expects ([-1, 1] for MobileNet).
    inputs = keras.Input((32, 32, 3))
    preprocess = keras.applications.mobilenet.preprocess_input
    encoder = keras.Model(inputs, base(preprocess(inputs)))
    images = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3))
    images = images.astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(encoder(images)),
        ops.convert_to_numpy(base(images / 127.5 - 1.0)),
        rtol=1e-5,
        atol=1e-6,
    )
    model = SimCLRPretrainer(
        encoder,
        augmentation=SimCLRAugmentation(32, preset="cifar", seed=0),
        projection_head=ProjectionHead(32, 8),
    )
    model.compile(optimizer="sgd")
    history = model.fit(images, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        images, labels = images_and_labels(n=8)
        model = make_pretrainer(num_classes=4)
        model.compile(optimizer="adam")
        history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0).history
        assert np.all(np.isfinite(history["contrastive_loss"]))
        features = model(images, training=False)["features"]
        assert keras.backend.standardize_dtype(features.dtype) == "bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)


def test_config_and_keras_round_trip(tmp_path):
    images, labels = images_and_labels(n=8)
    model = make_pretrainer(num_classes=4)
    model.compile(optimizer="adam")
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    revived = run_serialization_test(model)
    assert isinstance(revived.augmentation, type(model.augmentation))
    assert revived.num_classes == 4 and revived.objective.temperature == 0.5
    assert revived.global_bn is True
    restored = run_model_saving_test(model, images, tmp_path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.encoder(images, training=False)),
        ops.convert_to_numpy(model.encoder(images, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    # Training goes on after loading.
    restored.fit(images, labels, batch_size=8, epochs=1, verbose=0)


def fitted_model(num_classes=4):
    model = make_pretrainer(num_classes=num_classes)
    model.compile(optimizer="sgd")
    return model


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros((8, 12, 12)), {}, r"x.shape=\(8, 12, 12\)"),
        (np.zeros((8, 12, 12, 1)), {}, "1 channels but the encoder expects 3"),
        (np.zeros((1, 12, 12, 3)), {}, "at least 2 images"),
        (np.zeros((9, 12, 12, 3)), {"batch_size": 4}, "single image"),
        (np.zeros((8, 12, 12, 3)), {"batch_size": 1}, "batch_size=1"),
        (np.full((8, 12, 12, 3), "a"), {}, "x.dtype=<U1"),
        (np.zeros((8, 12, 12, 3)), {"y": np.arange(8)}, r"class ids in \[0, 4\)"),
        (np.zeros((8, 12, 12, 3)), {"y": np.arange(7)}, "7 labels for 8 images"),
        (np.zeros((8, 12, 12, 3)), {"y": np.zeros((8, 2))}, r"y.shape=\(8, 2\)"),
        ((np.zeros((8, 12, 12, 3)),) * 2, {}, "view_a"),
        ({"view_a": np.zeros((8, 12, 12, 3))}, {}, "exactly the keys"),
        (np.zeros((8, 12, 12, 3)), {"sample_weight": np.ones(8)}, "sample_weight"),
    ],
)
def test_bad_input_is_rejected_before_training(x, kwargs, match):
    model = fitted_model()
    with pytest.raises(ValueError, match=match):
        model.fit(x, epochs=1, verbose=0, **kwargs)
    assert model.optimizer.iterations.numpy() == 0


def test_labels_without_probe_are_rejected():
    model = fitted_model(num_classes=None)
    with pytest.raises(ValueError, match="num_classes"):
        model.fit(np.zeros((8, 12, 12, 3)), np.zeros(8), verbose=0)


def test_bad_dataset_is_rejected():
    import tensorflow as tf

    model = fitted_model()
    strings = tf.data.Dataset.from_tensor_slices(np.full((4, 12, 12, 3), "x")).batch(2)
    with pytest.raises(ValueError, match="must hold numbers"):
        model.fit(strings, verbose=0)
    singles = tf.data.Dataset.from_tensor_slices(np.zeros((4, 12, 12, 3))).batch(1)
    with pytest.raises(ValueError, match="batches of 1 image"):
        model.fit(singles, verbose=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"num_classes": 1}, "num_classes"),
        ({"projection_head": "mlp"}, "projection_head"),
        ({"augmentation": "simclr"}, "augmentation"),
        ({"global_bn": "yes"}, "global_bn"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_pretrainer(**kwargs)
    with pytest.raises(ValueError, match="encoder"):
        SimCLRPretrainer(encoder="resnet")


def test_compile_rejects_a_loss():
    with pytest.raises(ValueError, match="loss"):
        make_pretrainer().compile(optimizer="sgd", loss="mse")


@pytest.mark.parametrize("onednn", [False, True])
def test_fit_says_once_when_tensorflow_runs_without_onednn(monkeypatch, capsys,
                                                            onednn):
    from keras_simclr import cpu_defaults

    monkeypatch.delenv(cpu_defaults.ONEDNN_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_defaults.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_defaults, "onednn_enabled", lambda: onednn)
    monkeypatch.setattr(cpu_defaults, "_notice_printed", False)
    images, _ = images_and_labels(n=8)
    model = make_pretrainer()
    model.compile(optimizer="sgd")
    model.fit(images, batch_size=8, epochs=2, verbose=0)
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    notices = [line for line in capsys.readouterr().err.splitlines()
               if "oneDNN kernels off" in line]
    # Only TensorFlow has the setting; there one line for the whole process.
    expected = int(keras.backend.backend() == "tensorflow" and not onednn)
    assert len(notices) == expected


def _config_of(model):
    config = model.get_config()
    config.pop("name")
    for key in ("encoder", "projection_head"):
        config.pop(key)
    return config


def _new_form(objective):
    return SimCLRPretrainer(tiny_encoder(), objective=objective)


@pytest.mark.parametrize(
    "kwargs, replacement",
    [
        ({"temperature": 0.2}, "SimCLR(temperature=0.2)"),
        (
            {"objective": "simclr", "memory_queue": True, "queue_size": 64,
             "momentum": 0.9, "momentum_schedule_steps": 10},
            "SimCLR(memory_queue=True, queue_size=64, momentum=0.9, "
            "momentum_schedule_steps=10)",
        ),
        ({"objective": "moco", "temperature": 0.2, "queue_size": 64},
         "MoCo(temperature=0.2, queue_size=64)"),
        ({"objective": "byol", "prediction_head": "head"},
         "BYOL(prediction_head=PredictionHead(...))"),
        ({"objective": "unigrad", "objective_config": {"rho": 0.9}},
         "UniGrad(rho=0.9)"),
        ({"objective": "barlow_twins", "objective_config": {"lambda_offdiag": 0.01}},
         "BarlowTwins(lambda_offdiag=0.01)"),
    ],
)
def test_the_deprecated_objective_arguments_warn_and_build_the_same_objective(
    kwargs, replacement
):
    kwargs = dict(kwargs)
    if kwargs.get("prediction_head") == "head":
        kwargs["prediction_head"] = keras_simclr.layers.PredictionHead(
            hidden_dim=8, name="prediction_head"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SimCLRPretrainer(tiny_encoder(), **kwargs)
    assert [w.category for w in caught] == [DeprecationWarning]
    # At the caller's line, naming the replacement.
    assert caught[0].filename == __file__
    message = str(caught[0].message)
    assert "is deprecated" in message or "are deprecated" in message
    assert f"pass objective=keras_simclr.objectives.{replacement}" in message
    # The objective (and the pretrainer's config) of the new form.
    key = kwargs.pop("objective", "simclr")
    arguments = {**kwargs.pop("objective_config", {}), **kwargs}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = _new_form(keras_simclr.objectives.get(key, **arguments))
    assert caught == []
    assert _config_of(model) == _config_of(expected)


def test_positional_arguments_of_earlier_releases_still_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SimCLRPretrainer(tiny_encoder(), None, None, 0.3, 4, "simclr")
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "temperature= is deprecated" in str(caught[0].message)
    assert model.num_classes == 4 and model.objective.temperature == 0.3
    # Without a deprecated argument: no warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SimCLRPretrainer(tiny_encoder(), None, None, None, 4, "moco")
    assert caught == [] and model.num_classes == 4 and model.objective.key == "moco"
    with pytest.raises(TypeError, match="`num_classes` both by position and by keyword"):
        SimCLRPretrainer(tiny_encoder(), None, None, None, 4, num_classes=3)
    with pytest.raises(TypeError, match="positional arguments"):
        SimCLRPretrainer(tiny_encoder(), *([None] * 13))


def test_the_new_form_and_a_saved_model_do_not_warn(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SimCLRPretrainer(
            tiny_encoder(),
            objective=keras_simclr.objectives.MoCo(temperature=0.2, queue_size=64),
            num_classes=3,
        )
        model.build((None, 12, 12, 3))
        path = str(tmp_path / "moco.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    assert [str(w.message) for w in caught if w.category is DeprecationWarning
            and "deprecated" in str(w.message)] == []
    assert restored.get_config()["objective"] == model.get_config()["objective"]
