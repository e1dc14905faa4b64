import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ProjectionHead
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.models.simclr_classifier import SimCLRClassifier
from keras_simclr.objectives import SimCLR
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test

IMAGE_SIZE = 8
NUM_CLASSES = 3


def tiny_encoder():
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="tiny_encoder")


def tiny_head(num_layers=3):
    return ProjectionHead(hidden_dim=5, output_dim=4, num_layers=num_layers)


def images_and_labels(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    images = rng.uniform(0, 60, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3))
    for i, label in enumerate(labels):
        images[i, :, :, label] += 150
    return images.astype("float32"), labels


def numpy_weights(layer):
    return [ops.convert_to_numpy(w).copy() for w in layer.weights]


def assert_weights_equal(before, layer):
    after = numpy_weights(layer)
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def assert_weights_moved(before, layer):
    after = numpy_weights(layer)
    assert any(not np.allclose(old, new) for old, new in zip(before, after))


def test_linear_mode_trains_only_the_classifier():
    images, labels = images_and_labels()
    encoder, head = tiny_encoder(), tiny_head()
    # Moving statistics away from their initial values, so that a change
    # would show and inference mode differs from training mode.
    for _ in range(3):
        head(encoder(images, training=True), training=True)
    model = SimCLRClassifier(
        encoder, NUM_CLASSES, head_layers=2, projection_head=head, mode="linear"
    )
    encoder_before = numpy_weights(encoder)
    head_before = numpy_weights(head)
    hidden = ops.convert_to_numpy(model.export_outputs(images)["head_features"])
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    # One full-batch step from zero logits: the gradient of the mean
    # cross-entropy is hidden^T (softmax - one_hot) / N, softmax uniform.
    model.fit(images, labels, batch_size=len(images), epochs=1, verbose=0)
    error = 1.0 / NUM_CLASSES - np.eye(NUM_CLASSES)[labels]
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.linear_classifier.kernel),
        -0.5 * hidden.T @ error / len(images),
        rtol=1e-4,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.linear_classifier.bias),
        -0.5 * error.mean(axis=0),
        rtol=1e-4,
        atol=1e-7,
    )
    model.fit(images, labels, batch_size=len(images), epochs=3, verbose=0)
    assert_weights_equal(encoder_before, encoder)
    assert_weights_equal(head_before, head)
    assert [w.path for w in model.trainable_weights] == [
        w.path for w in model.linear_classifier.weights
    ]


def trainable_flags(layer):
    return [layer.trainable] + [
        sub.trainable for sub in layer._flatten_layers(include_self=False)
    ] + [w.trainable for w in layer.weights]


def test_linear_evaluation_leaves_the_pretrainer_as_it_was():
    # Linear evaluation, then fine-tuning, then more pretraining: each
    # stage trains what it should, whatever stage came before.
    images, labels = images_and_labels()
    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder(), projection_head=tiny_head(),
        objective=SimCLR(temperature=0.5),
    )
    pretrainer.build(images.shape)
    encoder, head = pretrainer.encoder, pretrainer.projection_head
    flags_before = trainable_flags(pretrainer)
    pretrainer_trainable = len(pretrainer.trainable_weights)

    linear = SimCLRClassifier(pretrainer, NUM_CLASSES, head_layers=1, mode="linear")
    linear.compile(optimizer=keras.optimizers.SGD(0.1))
    encoder_before = numpy_weights(encoder)
    linear.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert_weights_equal(encoder_before, encoder)
    assert len(linear.trainable_weights) == 2
    assert trainable_flags(pretrainer) == flags_before
    assert len(pretrainer.trainable_weights) == pretrainer_trainable

    finetune = SimCLRClassifier(pretrainer, NUM_CLASSES, head_layers=1)
    finetune.compile(optimizer=keras.optimizers.SGD(0.1))
    finetune.build(images.shape)
    # Encoder, the kept head layer, the classifier's kernel and bias.
    kept = head.dense_layers[0].trainable_weights + (
        head.batch_norm_layers[0].trainable_weights
    )
    assert len(finetune.trainable_weights) == (
        len(encoder.trainable_weights) + len(kept) + 2
    )
    encoder_before = numpy_weights(encoder)
    finetune.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert_weights_moved(encoder_before, encoder)

    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1))
    encoder_before, head_before = numpy_weights(encoder), numpy_weights(head)
    # No augmentation: two views made here, the second flipped.
    views = {"view_a": images, "view_b": images[:, :, ::-1].copy()}
    pretrainer.fit(views, batch_size=8, epochs=1, verbose=0)
    assert_weights_moved(encoder_before, encoder)
    # The last head layer is used by pretraining only.
    assert_weights_moved(head_before[-4:], head.dense_layers[-1])


def test_linear_classifier_reloads_without_warnings(tmp_path):
    images, labels = images_and_labels(n=16)
    pretrainer = SimCLRPretrainer(encoder=tiny_encoder(), projection_head=tiny_head())
    model = SimCLRClassifier(pretrainer, NUM_CLASSES, head_layers=1, mode="linear")
    model.compile()
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "linear.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = keras.saving.load_model(path)
    assert [str(w.message) for w in caught] == []
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)
    assert len(restored.trainable_weights) == 2
    assert restored.encoder.trainable


def test_linear_mode_runs_batch_norm_in_inference_mode():
    images, _ = images_and_labels(n=8)
    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES, mode="linear")
    model.build(images.shape)
    model.linear_classifier.kernel.assign(
        np.random.default_rng(0).normal(size=(6, NUM_CLASSES)).astype("float32")
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(images, training=True)),
        ops.convert_to_numpy(model(images, training=False)),
        rtol=1e-6,
    )


def test_finetune_from_a_pretrainer_trains_the_shared_encoder():
    images, labels = images_and_labels()
    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder(), projection_head=tiny_head(),
        objective=SimCLR(temperature=0.5),
    )
    pretrainer.build(images.shape)
    model = SimCLRClassifier(pretrainer, NUM_CLASSES, head_layers=1)
    assert model.encoder is pretrainer.encoder
    assert model.projection_head is pretrainer.projection_head
    head = pretrainer.projection_head
    encoder_before = numpy_weights(pretrainer.encoder)
    kept_before = numpy_weights(head.dense_layers[0])
    unused_layers = head.dense_layers[1:] + head.batch_norm_layers[1:]
    unused_before = [numpy_weights(layer) for layer in unused_layers]
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    history = model.fit(images, labels, batch_size=8, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    # The pretrainer's own encoder and first head layer moved.
    assert_weights_moved(encoder_before, pretrainer.encoder)
    assert_weights_moved(kept_before, head.dense_layers[0])
    # The later head layers are not part of the classifier.
    for before, layer in zip(unused_before, unused_layers):
        assert_weights_equal(before, layer)
    trainable = {id(w) for w in model.trainable_weights}
    for layer in unused_layers:
        assert not any(id(w) in trainable for w in layer.weights)
    assert head.dense_layers[0].kernel.trainable


@pytest.mark.parametrize("head_layers", [0, 1, 2, 3])
def test_head_layers_use_the_first_layers_of_the_head(head_layers):
    images, _ = images_and_labels(n=6)
    encoder, head = tiny_encoder(), tiny_head()
    model = SimCLRClassifier(
        encoder,
        NUM_CLASSES,
        head_layers=head_layers,
        projection_head=head if head_layers else None,
    )
    model.build(images.shape)
    if not head.built:
        head.build((None, 6))
    rng = np.random.default_rng(1)
    width = 6 if head_layers == 0 else (4 if head_layers == 3 else 5)
    kernel = rng.normal(size=(width, NUM_CLASSES)).astype("float32")
    bias = rng.normal(size=(NUM_CLASSES,)).astype("float32")
    model.linear_classifier.kernel.assign(kernel)
    model.linear_classifier.bias.assign(bias)
    for batch_norm in head.batch_norm_layers:
        batch_norm.moving_mean.assign(rng.normal(size=batch_norm.moving_mean.shape))
        batch_norm.moving_variance.assign(
            rng.uniform(0.5, 2.0, size=batch_norm.moving_variance.shape)
        )

    outputs = {
        key: ops.convert_to_numpy(value)
        for key, value in model.export_outputs(images).items()
    }
    features = ops.convert_to_numpy(encoder(images, training=False))
    np.testing.assert_allclose(outputs["features"], features, rtol=1e-5, atol=1e-6)
    # The head's own account of its hidden layers.
    hiddens = head(encoder(images, training=False), training=False, return_hidden=True)
    expected_hidden = ops.convert_to_numpy(hiddens[head_layers])
    # By hand: Dense, batch norm on moving statistics, ReLU except last.
    by_hand = features
    for index in range(head_layers):
        dense, batch_norm = head.dense_layers[index], head.batch_norm_layers[index]
        by_hand = by_hand @ ops.convert_to_numpy(dense.kernel)
        mean = ops.convert_to_numpy(batch_norm.moving_mean)
        variance = ops.convert_to_numpy(batch_norm.moving_variance)
        by_hand = (by_hand - mean) / np.sqrt(variance + batch_norm.epsilon)
        by_hand = by_hand * ops.convert_to_numpy(batch_norm.gamma)
        if batch_norm.center:
            by_hand = by_hand + ops.convert_to_numpy(batch_norm.beta)
        if index < 2:
            by_hand = np.maximum(by_hand, 0)
    np.testing.assert_allclose(expected_hidden, by_hand, rtol=1e-4, atol=1e-5)
    if head_layers:
        np.testing.assert_allclose(
            outputs["head_features"], expected_hidden, rtol=1e-5, atol=1e-6
        )
    else:
        assert set(outputs) == {"features", "logits"}
    np.testing.assert_allclose(
        outputs["logits"], expected_hidden @ kernel + bias, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(images)), outputs["logits"], rtol=1e-6
    )
    assert len(model.trainable_weights) == 2 + 3 * head_layers + len(
        encoder.trainable_weights
    ) - (1 if head_layers == 3 else 0)


def test_classifier_starts_at_zero():
    images, _ = images_and_labels(n=4)
    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(images)), 0.0)


@pytest.mark.parametrize("num_classes, top_5", [(3, False), (7, True)])
def test_compile_defaults(num_classes, top_5):
    images, _ = images_and_labels(n=16)
    labels = np.arange(16) % num_classes
    model = SimCLRClassifier(tiny_encoder(), num_classes, dropout=0.2)
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.momentum == 0.9 and model.optimizer.nesterov
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    # The cross-entropy of the zero-initialised logits is log(num_classes).
    results = model.evaluate(images, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["loss"], np.log(num_classes), rtol=1e-5)
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
    assert "accuracy" in history
    assert ("top_5_accuracy" in history) == top_5
    logits = ops.convert_to_numpy(model.predict(images, verbose=0))
    assert logits.shape == (16, num_classes)


def test_plain_encoder_without_head():
    images, labels = images_and_labels(n=8)
    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
    assert model.projection_head is None
    outputs = model.export_outputs(images)
    assert tuple(outputs["features"].shape) == (8, 6)
    assert tuple(outputs["logits"].shape) == (8, NUM_CLASSES)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pretrainer_or_encoder": "resnet"}, "pretrainer_or_encoder"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 3.0}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"mode": "probe"}, "mode"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"head_layers": -1}, "head_layers"),
        ({"head_layers": 1.5}, "head_layers"),
        ({"head_layers": 1}, "head_layers"),
        ({"head_layers": 4, "projection_head": "head"}, "head_layers=4"),
        ({"head_layers": 0, "projection_head": "head"}, "projection_head"),
        (
            {"head_layers": 1, "projection_head": keras.layers.Dense(4)},
            "projection_head",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"pretrainer_or_encoder": tiny_encoder(), "num_classes": 3}
    arguments.update(kwargs)
    if arguments.get("projection_head") == "head":
        arguments["projection_head"] = tiny_head()
    with pytest.raises(ValueError, match=match):
        SimCLRClassifier(**arguments)


def test_pretrainer_and_projection_head_are_exclusive():
    pretrainer = SimCLRPretrainer(encoder=tiny_encoder(), projection_head=tiny_head())
    with pytest.raises(ValueError, match="projection_head"):
        SimCLRClassifier(pretrainer, 3, head_layers=1, projection_head=tiny_head())


def test_encoder_must_give_feature_vectors():
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    encoder = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    model = SimCLRClassifier(encoder, 3)
    with pytest.raises(ValueError, match="feature vectors"):
        model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))


@pytest.mark.parametrize("mode", ["finetune", "linear"])
def test_config_and_keras_round_trip(mode, tmp_path):
    images, labels = images_and_labels(n=16)
    pretrainer = SimCLRPretrainer(encoder=tiny_encoder(), projection_head=tiny_head())
    model = SimCLRClassifier(
        pretrainer, NUM_CLASSES, head_layers=1, mode=mode, dropout=0.1
    )
    model.compile()
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    revived = run_serialization_test(model)
    assert revived.mode == mode and revived.head_layers == 1
    assert revived.dropout == 0.1 and revived.num_classes == NUM_CLASSES
    assert revived.projection_head.num_layers == 3
    restored = run_model_saving_test(
        model, images, tmp_path, output_fn=lambda m, x: m.export_outputs(x)
    )
    assert len(restored.trainable_weights) == len(model.trainable_weights)
    # The whole head is saved, its unused layers included.
    for layer, restored_layer in zip(
        model.projection_head.dense_layers, restored.projection_head.dense_layers
    ):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layer.kernel),
            ops.convert_to_numpy(restored_layer.kernel),
        )
    # The compiled state comes back: training goes on.
    assert isinstance(restored.optimizer, keras.optimizers.SGD)
    restored.fit(images, labels, batch_size=8, epochs=1, verbose=0)


def test_untrainable_classifier_stays_untrainable_from_its_config():
    model = SimCLRClassifier(
        tiny_encoder(), NUM_CLASSES, head_layers=1, projection_head=tiny_head()
    )
    model.trainable = False
    revived = SimCLRClassifier.from_config(model.get_config())
    revived.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    assert not revived.trainable
    assert revived.trainable_weights == []
    assert all(not layer.trainable for layer in revived.head_dense_layers)


# === Evaluation transform ===


def crop_pretrainer(encoder):
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation

    return SimCLRPretrainer(
        encoder=encoder,
        augmentation=SimCLRAugmentation(IMAGE_SIZE, preset="imagenet", seed=0),
        projection_head=tiny_head(),
    )


def large_images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 12, 10, 3)).astype("float32")


def random_logits_layer(model, seed=1):
    """Gives the zero-initialised final layer random weights, so that the
    logits show the features."""
    rng = np.random.default_rng(seed)
    layer = model.linear_classifier
    layer.kernel.assign(rng.normal(size=tuple(layer.kernel.shape)))
    layer.bias.assign(rng.normal(size=tuple(layer.bias.shape)))
    return ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)


def reference_views(images):
    from tests.center_crop_reference import official_center_crop

    return official_center_crop(images, IMAGE_SIZE, IMAGE_SIZE)


def test_inference_applies_the_pretrainers_evaluation_transform():
    encoder = tiny_encoder()
    pretrainer = crop_pretrainer(encoder)
    model = SimCLRClassifier(pretrainer, NUM_CLASSES, mode="linear")
    assert model.evaluation_transform is pretrainer.augmentation
    model.build((None, 12, 10, 3))
    kernel, bias = random_logits_layer(model)
    images = large_images()
    features = ops.convert_to_numpy(
        encoder(reference_views(images), training=False)
    )
    outputs = model.export_outputs(images)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs["features"]), features, atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        model.predict(images, verbose=0), features @ kernel + bias, atol=1e-5,
        rtol=1e-5,
    )
    # Images at the view size are taken as they are.
    small, _ = images_and_labels(n=4)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(small, training=False)),
        ops.convert_to_numpy(encoder(small, training=False)) @ kernel + bias,
        atol=1e-5,
        rtol=1e-5,
    )


def test_training_takes_the_images_as_given():
    # Channel means: an encoder that takes any size, so that what reached
    # it shows in the features.
    encoder = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D()]
    )
    model = SimCLRClassifier(crop_pretrainer(encoder), NUM_CLASSES, mode="linear")
    model.build((None, 12, 10, 3))
    kernel, bias = random_logits_layer(model)
    images = large_images()
    trained_on = ops.convert_to_numpy(model(images, training=True))
    np.testing.assert_allclose(
        trained_on, images.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-5, atol=1e-4
    )
    inferred = ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(
        inferred,
        reference_views(images).mean(axis=(1, 2)) @ kernel + bias,
        rtol=1e-5,
        atol=1e-4,
    )
    assert np.max(np.abs(trained_on - inferred)) > 1e-2


def test_evaluation_transform_round_trips(tmp_path):
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation

    encoder = tiny_encoder()
    model = SimCLRClassifier(crop_pretrainer(encoder), NUM_CLASSES, head_layers=1)
    images = large_images(n=6)
    model.build((None, 12, 10, 3))
    random_logits_layer(model)
    revived = run_serialization_test(model)
    assert isinstance(revived.evaluation_transform, SimCLRAugmentation)
    assert revived.evaluation_transform.preset == "imagenet"
    restored = run_model_saving_test(
        model, images, tmp_path, output_fn=lambda m, x: m.export_outputs(x)
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.export_outputs(images)["features"]),
        ops.convert_to_numpy(encoder(reference_views(images), training=False)),
        atol=1e-5,
        rtol=0,
    )


def test_an_encoder_has_no_evaluation_transform_unless_given_one():
    from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation

    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
    assert model.evaluation_transform is None
    small, _ = images_and_labels(n=3)
    assert model.evaluation_views(small) is small
    transform = SimCLRAugmentation(IMAGE_SIZE, preset="imagenet")
    encoder = tiny_encoder()
    model = SimCLRClassifier(encoder, NUM_CLASSES, evaluation_transform=transform)
    assert model.evaluation_transform is transform
    images = large_images(n=3)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.export_outputs(images)["features"]),
        ops.convert_to_numpy(encoder(reference_views(images), training=False)),
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(ValueError, match="evaluation_transform"):
        SimCLRClassifier(tiny_encoder(), NUM_CLASSES, evaluation_transform="crop")


# === Losses that read the logits as probabilities (compile) ===


@pytest.mark.parametrize(
    "loss",
    [
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
        "binary_crossentropy",
        "SparseCategoricalCrossentropy",
        keras.losses.SparseCategoricalCrossentropy(),
        keras.losses.CategoricalCrossentropy(from_logits=False),
        keras.losses.CategoricalFocalCrossentropy(),
        keras.losses.sparse_categorical_crossentropy,
        keras.losses.categorical_crossentropy,
        ["sparse_categorical_crossentropy"],
    ],
    ids=lambda loss: loss if isinstance(loss, str) else None,
)
def test_compile_refuses_a_loss_that_expects_probabilities(loss):
    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
    with pytest.raises(ValueError) as caught:
        model.compile(loss=loss)
    message = str(caught.value)
    assert message.startswith("`loss` expects probabilities")
    assert "SparseCategoricalCrossentropy(from_logits=True)" in message
    assert 'loss="auto"' in message
    assert f"Received: loss={loss!r}" in message
    assert getattr(model, "optimizer", None) is None


def test_compile_accepts_losses_on_logits():
    import functools

    images, labels = images_and_labels(n=12)
    for loss in (
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        functools.partial(
            keras.losses.sparse_categorical_crossentropy, from_logits=True
        ),
        "auto",
    ):
        model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
        model.compile(loss=loss)
        # The zero-initialised logits give a cross-entropy of ln(K).
        results = model.evaluate(images, labels, verbose=0, return_dict=True)
        np.testing.assert_allclose(results["loss"], np.log(NUM_CLASSES), rtol=1e-5)
    # One-hot labels through a categorical cross-entropy on logits.
    model = SimCLRClassifier(tiny_encoder(), NUM_CLASSES)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=[]
    )
    history = model.fit(
        images, np.eye(NUM_CLASSES)[labels], batch_size=12, epochs=2, verbose=0
    ).history
    np.testing.assert_allclose(history["loss"][0], np.log(NUM_CLASSES), rtol=1e-5)
    assert history["loss"][1] < history["loss"][0]


# === The images' range in fit, evaluate and predict (issue 25, item 5) ===


def test_fit_evaluate_and_predict_refuse_images_on_another_scale():
    import re

    import tensorflow as tf

    from keras_simclr.layers import SimCLRAugmentation
    from keras_simclr.models import ResNet

    images, labels = images_and_labels(n=8)
    resnet = ResNet(
        18, width_multiplier=0.125, cifar_stem=True,
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    )
    pretrainer = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=SimCLRAugmentation(IMAGE_SIZE, preset="cifar", seed=0),
        projection_head=tiny_head(),
    )
    for model, owner in (
        (SimCLRClassifier(resnet, NUM_CLASSES), "the classifier's encoder"),
        # The encoder declares no range: the pretrainer's augmentation does.
        (
            SimCLRClassifier(pretrainer, NUM_CLASSES),
            "the classifier's evaluation_transform",
        ),
    ):
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.build(images.shape)
        before = numpy_weights(model)
        unit = images / 255.0
        runs = {
            "x": lambda: model.fit(unit, labels, batch_size=4, verbose=0),
            "validation_data[0]": lambda: model.fit(
                images, labels, batch_size=4, verbose=0,
                validation_data=(unit, labels),
            ),
            "validation_data": lambda: model.fit(
                images, labels, batch_size=4, verbose=0,
                validation_data=tf.data.Dataset.from_tensor_slices(
                    (unit, labels)
                ).batch(4),
            ),
        }
        for argument, run in runs.items():
            message = (
                f"`{argument}` holds images in [0, 1] but `value_range` is "
                f"(0.0, 255.0) (declared by {owner})"
            )
            with pytest.raises(ValueError, match=re.escape(message)):
                run()
        assert_weights_equal(before, model)
        dataset = tf.data.Dataset.from_tensor_slices((unit, labels)).batch(4)
        with pytest.raises(ValueError, match=re.escape("`x` holds images in [0, 1]")):
            model.evaluate(dataset, verbose=0)
        with pytest.raises(ValueError, match=re.escape("`x` holds images in [-1, 1]")):
            model.predict(images / 127.5 - 1.0, verbose=0)
        # The images in their range go through.
        model.fit(images, labels, batch_size=4, verbose=0)
        np.testing.assert_allclose(
            model.predict(images, batch_size=4, verbose=0),
            ops.convert_to_numpy(model(images, training=False)),
            rtol=1e-5, atol=1e-5,
        )
