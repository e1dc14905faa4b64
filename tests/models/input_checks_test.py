"""What the three models do with labels and batches before and while training.

The pretrainer, the classifier and the distiller check labels through one
function, so the same bad labels get the same message from each; a
`tf.data` batch of one image is refused like an array whose last batch
holds one; and the logged `loss` of an epoch with a smaller last batch is
the objective's mean over images, the same number as the objective's own
metric.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_simclr.models import SimCLRClassifier
from keras_simclr.models import SimCLRDistiller
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.objectives import SimCLR

SIZE = 6
NUM_CLASSES = 3


def encoder():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(5)(x)
    return keras.Model(inputs, x)


def images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, 3)).astype(
        "float32"
    )


def pretrainer():
    # Identical views on purpose: these tests are about labels and batches.
    return SimCLRPretrainer(
        encoder(),
        augmentation=keras.layers.Identity(),
        num_classes=NUM_CLASSES,
        objective=SimCLR(temperature=0.5),
    )


def classifier():
    return SimCLRClassifier(encoder(), NUM_CLASSES)


def distiller():
    return SimCLRDistiller(teacher=classifier(), student=classifier())


MODELS = {"pretrainer": pretrainer, "classifier": classifier, "distiller": distiller}

BAD_LABELS = {
    "one_hot": (
        np.eye(NUM_CLASSES)[np.arange(8) % NUM_CLASSES],
        "must hold one integer class id per image, shape (N,). These look "
        "one-hot: pass `np.argmax(labels, axis=-1)`. Received: y.shape=(8, 3)",
    ),
    "out_of_range": (
        np.array([0, 1, 2, 3, 0, 1, 2, 0]),
        "must hold class ids in [0, 3) (num_classes=3). Received: labels from 0 to 3",
    ),
    "negative": (
        np.array([0, 1, 2, -1, 0, 1, 2, 0]),
        "must hold class ids in [0, 3) (num_classes=3). Received: labels from -1 to 2",
    ),
    "fractional": (
        np.array([0, 1, 2, 0.5, 0, 1, 2, 0]),
        "must hold integer class ids.",
    ),
    "count": (np.arange(7) % NUM_CLASSES, "has 7 labels for 8 images."),
}


def compiled(name):
    model = MODELS[name]()
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model


@pytest.mark.parametrize("labels_case", sorted(BAD_LABELS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_refuses_bad_labels_with_the_same_message(model_name, labels_case):
    labels, message = BAD_LABELS[labels_case]
    model = compiled(model_name)
    with pytest.raises(ValueError, match=re.escape(message)):
        model.fit(images(8), labels, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=re.escape(message)):
        model.evaluate(images(8), labels, batch_size=4, verbose=0)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_checks_the_labels_of_a_dataset(model_name):
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 0])
    dataset = tf.data.Dataset.from_tensor_slices((images(8), labels)).batch(4)
    model = compiled(model_name)
    with pytest.raises(ValueError, match=re.escape("class ids in [0, 3)")):
        model.fit(dataset, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=re.escape("validation_data[1]")):
        model.fit(
            images(8), labels % 3, batch_size=4, verbose=0,
            validation_data=(images(8), labels),
        )


def test_classifier_needs_labels():
    with pytest.raises(ValueError, match="needs a label per image"):
        compiled("classifier").fit(images(8), batch_size=4, verbose=0)


def test_classifier_with_its_own_loss_takes_its_own_labels():
    # A loss on one-hot labels: the class-id check steps aside.
    model = classifier()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    one_hot = np.eye(NUM_CLASSES)[np.arange(8) % NUM_CLASSES]
    history = model.fit(images(8), one_hot, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize("form", ["pairs", "images"])
def test_a_dataset_batch_of_one_image_is_refused(form):
    # 9 images in batches of 4: the last batch holds one image.
    x = images(9)
    if form == "pairs":
        dataset = tf.data.Dataset.from_tensor_slices(
            ({"view_a": x, "view_b": x[::-1].copy()}, np.arange(9) % 3)
        ).batch(4)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    model = SimCLRPretrainer(
        encoder(),
        augmentation=keras.layers.Identity(),
        num_classes=3 if form == "pairs" else None,
        objective=SimCLR(temperature=0.5),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    message = "`x` yielded a batch of a single image, which has no negatives"
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        model.fit(dataset, epochs=1, verbose=0)
    assert "drop_remainder=True" in str(error.value)
    with pytest.raises(ValueError, match=re.escape(message)):
        model.evaluate(dataset, verbose=0)
    # The same rule as for arrays.
    with pytest.raises(ValueError, match="single image"):
        model.fit(x, batch_size=4, epochs=1, verbose=0)
    # Without the single-image batch, the same pipeline trains.
    model.fit(dataset.take(2), epochs=1, verbose=0)


def numpy_nt_xent(z_a, z_b, temperature):
    """NT-Xent, the mean over the 2N views, written out in NumPy."""
    z = np.concatenate([z_a, z_b]).astype("float64")
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        logits = np.array(
            [z[i] @ z[j] / temperature for j in range(2 * n) if j != i]
        )
        others = [j for j in range(2 * n) if j != i]
        losses.append(
            -logits[others.index(positive)] + np.log(np.exp(logits).sum())
        )
    return float(np.mean(losses))


@pytest.mark.parametrize("form", ["arrays", "dataset"])
def test_epoch_loss_is_the_mean_over_images_and_equals_the_contrastive_loss(form):
    # 10 pairs in batches of 4, 4 and 2: the logged `loss` is Keras's mean
    # weighted by each batch's images; `contrastive_loss` must be the same.
    rng = np.random.default_rng(3)
    view_a = rng.normal(size=(10, SIZE, SIZE, 3)).astype("float32")
    view_b = (view_a + rng.normal(size=view_a.shape)).astype("float32")
    model = SimCLRPretrainer(
        encoder(), projection_head=keras.layers.Dense(4),
        objective=SimCLR(temperature=0.5),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x = {"view_a": view_a, "view_b": view_b}
    if form == "arrays":
        history = model.fit(x, batch_size=4, shuffle=False, verbose=0).history
    else:
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
        history = model.fit(dataset, verbose=0).history

    def project(v):
        return ops.convert_to_numpy(model.projection_head(model.encoder(v)))

    losses, sizes = [], []
    for start in range(0, 10, 4):
        a, b = view_a[start : start + 4], view_b[start : start + 4]
        losses.append(numpy_nt_xent(project(a), project(b), 0.5))
        sizes.append(len(a))
    expected = np.average(losses, weights=sizes)
    # Far from the unweighted mean, so a per-step mean would fail.
    assert abs(expected - np.mean(losses)) > 1e-3
    np.testing.assert_allclose(history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(history["contrastive_loss"][0], expected, rtol=1e-5)


def test_views_of_the_wrong_size_are_refused_naming_image_size():
    from keras_simclr.layers import SimCLRAugmentation

    model = SimCLRPretrainer(
        encoder(), augmentation=SimCLRAugmentation(2 * SIZE),
        objective=SimCLR(temperature=0.5),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    message = (
        f"The augmentation makes {2 * SIZE}x{2 * SIZE} views "
        f"(`image_size={2 * SIZE}`), but the encoder takes {SIZE}x{SIZE} images"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model.fit(
            np.zeros((4, 20, 20, 3), "uint8") + 100, batch_size=4, verbose=0
        )
    model = SimCLRPretrainer(encoder(), objective=SimCLR(temperature=0.5))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    big = images(4, seed=1)[:, :, :, :].repeat(2, axis=1).repeat(2, axis=2)
    with pytest.raises(ValueError, match=re.escape("The views given in `x` are 12x12")):
        model.fit({"view_a": big, "view_b": big}, batch_size=4, verbose=0)


def test_compile_auto_is_each_papers_optimizer():
    import keras_simclr

    model = SimCLRPretrainer(encoder(), objective=SimCLR(temperature=0.5))
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras_simclr.optimizers.LARS)
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 1e-6
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(optimizer.learning_rate)), 0.3, rtol=1e-6
    )
    for model in (classifier(), distiller()):
        model.compile()
        assert isinstance(model.optimizer, keras.optimizers.SGD)
        assert model.optimizer.nesterov and model.optimizer.momentum == 0.9
        np.testing.assert_allclose(
            float(ops.convert_to_numpy(model.optimizer.learning_rate)), 0.1, rtol=1e-6
        )


@pytest.mark.parametrize("form", ["array", "tensor", "dataset", "views"])
def test_images_in_zero_one_for_a_0_255_range_are_refused(form):
    from keras_simclr.layers import SimCLRAugmentation

    unit = images(8)  # in [0, 1]
    if form == "views":
        # Views go straight to the encoder, which reads them in its range.
        # The library's ResNet declares `value_range`; so does this encoder.
        view_encoder = encoder()
        view_encoder.value_range = (0, 255)
        model = SimCLRPretrainer(view_encoder, objective=SimCLR(temperature=0.5))
        data = {"view_a": unit, "view_b": unit}
        name = "x['view_a']"
    else:
        model = SimCLRPretrainer(
            encoder(), augmentation=SimCLRAugmentation(SIZE),
            objective=SimCLR(temperature=0.5),
        )
        data = {
            "array": unit,
            "tensor": ops.convert_to_tensor(unit),
            "dataset": tf.data.Dataset.from_tensor_slices(unit).batch(4),
        }[form]
        name = "x"
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batch_size = None if form == "dataset" else 4
    message = (
        f"`{name}` holds images in [0, 1] but `value_range` is (0.0, 255.0)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model.fit(data, batch_size=batch_size, verbose=0)
    with pytest.raises(ValueError, match=re.escape("value_range")):
        model.fit(
            ops.convert_to_numpy(unit) * 300.0 if form != "views" else {
                "view_a": unit * 300.0, "view_b": unit * 300.0
            },
            batch_size=4,
            verbose=0,
        )
    # The same images in 0-255 train.
    if form == "views":
        model.fit({"view_a": unit * 255, "view_b": unit * 255}, batch_size=4, verbose=0)
    else:
        model.fit(unit * 255.0, batch_size=4, verbose=0)


def test_a_pipeline_augmenting_images_in_zero_one_is_refused_before_training():
    from keras_simclr.layers import SimCLRAugmentation

    augmentation = SimCLRAugmentation(SIZE, seed=1)

    def two_views(x):
        return {
            "view_a": augmentation(x, training=True),
            "view_b": augmentation(x, training=True),
        }

    dataset = tf.data.Dataset.from_tensor_slices(images(8)).batch(4).map(two_views)
    model = SimCLRPretrainer(encoder(), objective=SimCLR(temperature=0.5))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    before = [ops.convert_to_numpy(w).copy() for w in model.weights]
    message = "holds images in [0, 1] but `value_range` is (0.0, 255.0)"
    with pytest.raises(ValueError, match=re.escape(message)):
        model.fit(dataset, verbose=0)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, ops.convert_to_numpy(new))


# === Value ranges and views (issue 25, items 5 and 6) ===


def tiny_resnet(value_range=(0, 255)):
    from keras_simclr.models import ResNet

    return ResNet(
        18,
        width_multiplier=0.125,
        cifar_stem=True,
        input_shape=(SIZE, SIZE, 3),
        value_range=value_range,
    )


def pixels(n, seed=0):
    """Images in [0, 255], as uint8 data gives them."""
    return np.round(images(n, seed) * 255.0).astype("float32")


def test_an_augmentation_in_another_range_than_the_encoder_is_refused():
    from keras_simclr.layers import SimCLRAugmentation

    augmentation = SimCLRAugmentation(SIZE, preset="cifar", value_range=(0, 1))
    with pytest.raises(ValueError) as raised:
        SimCLRPretrainer(tiny_resnet(), augmentation=augmentation)
    message = str(raised.value)
    assert message.endswith(
        "Received: augmentation value_range=(0.0, 1.0), encoder "
        "value_range=(0.0, 255.0)"
    ), message
    assert "Pass the same `value_range` to both" in message
    # Views in [0, 1] fill 1/255 of the encoder's range.
    assert f"[0, {1 / 255:.3g}]" in message
    # An augmentation pair is one augmentation, with one range.
    pair = SimCLRAugmentation.pair(SIZE, preset="byol")
    with pytest.raises(ValueError, match=re.escape(
        "Received: augmentation value_range=(0.0, 255.0), encoder "
        "value_range=(0.0, 1.0)"
    )):
        SimCLRPretrainer(tiny_resnet((0, 1)), augmentation=pair)
    # The distiller's augmentation feeds the teacher and the student.
    with pytest.raises(ValueError, match=re.escape(
        "Received: augmentation value_range=(0.0, 1.0), teacher's encoder "
        "value_range=(0.0, 255.0)"
    )):
        SimCLRDistiller(
            teacher=SimCLRClassifier(tiny_resnet(), NUM_CLASSES),
            student=SimCLRClassifier(encoder(), NUM_CLASSES),
            augmentation=augmentation,
        )
    # The same range on both sides, or an encoder that declares none, is
    # fine.
    SimCLRPretrainer(tiny_resnet((0, 1)), augmentation=augmentation)
    SimCLRPretrainer(encoder(), augmentation=augmentation)


@pytest.mark.parametrize("form", ["array", "dataset", "generator", "py_dataset"])
def test_raw_images_without_an_augmentation_are_refused(form):
    x = pixels(8)
    model = SimCLRPretrainer(encoder(), projection_head=keras.layers.Dense(4))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build(x.shape)
    before = [ops.convert_to_numpy(w).copy() for w in model.weights]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[4 * index : 4 * index + 4]

    def generator():
        for start in (0, 4):
            yield (x[start : start + 4],)

    data = {
        "array": x,
        "dataset": tf.data.Dataset.from_tensor_slices(x).batch(4),
        "generator": generator(),
        "py_dataset": Batches(),
    }[form]
    with pytest.raises(ValueError) as raised:
        model.fit(data, batch_size=None if form != "array" else 4, verbose=0)
    message = str(raised.value)
    assert message.startswith(
        "The pretrainer has no augmentation (`augmentation=None`, the default)"
    ), message
    assert "keras_simclr.layers.SimCLRAugmentation" in message
    assert '{"view_a": ..., "view_b": ...}' in message
    assert "Received: augmentation=None, x " in message
    assert "6, 6, 3)" in message
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, ops.convert_to_numpy(new))

    # Views made elsewhere train, from a generator too, whose first batch
    # (read for the check) is trained on with the others.
    def view_generator():
        for start in (0, 4):
            batch = x[start : start + 4]
            yield ({"view_a": batch, "view_b": batch[::-1]},)

    class CountBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trained.append(batch)

    trained = []
    views = {"view_a": x, "view_b": x[::-1].copy()}
    history = model.fit(view_generator(), verbose=0, callbacks=[CountBatches()])
    assert np.isfinite(history.history["loss"][0])
    assert trained == [0, 1]
    model.fit(views, batch_size=4, verbose=0)
    # Identical views on purpose, said explicitly.
    identical = SimCLRPretrainer(
        encoder(), augmentation=keras.layers.Identity(),
        projection_head=keras.layers.Dense(4),
    )
    identical.compile(optimizer=keras.optimizers.SGD(0.1))
    identical.fit(x, batch_size=4, verbose=0)


def test_predict_checks_the_range_the_pretrainer_reads_images_in():
    from keras_simclr.layers import SimCLRAugmentation

    x = pixels(8)
    # The range declared by the ResNet, and by the augmentation alone.
    for model_encoder, owner in (
        (tiny_resnet(), "the pretrainer's encoder and augmentation"),
        (encoder(), "the pretrainer's augmentation"),
    ):
        model = SimCLRPretrainer(
            model_encoder,
            augmentation=SimCLRAugmentation(SIZE, preset="cifar", seed=0),
            projection_head=keras.layers.Dense(4),
        )
        expected = ops.convert_to_numpy(model(x, training=False)["features"])
        np.testing.assert_allclose(
            model.predict(x, batch_size=4, verbose=0)["features"], expected,
            rtol=1e-5, atol=1e-5,
        )
        for data, argument in (
            (x / 255.0, "x"),
            (tf.data.Dataset.from_tensor_slices(x / 255.0).batch(4), "x"),
            ({"view_a": x / 255.0, "view_b": x}, "x['view_a']"),
        ):
            message = (
                f"`{argument}` holds images in [0, 1] but `value_range` is "
                f"(0.0, 255.0) (declared by {owner}), so they would be read "
                "as nearly black images. Pass `value_range=(0, 1)` to "
                f"{owner}, or multiply the images by 255. Received: "
                f"value_range=(0.0, 255.0), {argument}.min()="
            )
            with pytest.raises(ValueError, match=re.escape(message)):
                model.predict(data, batch_size=4, verbose=0)
        with pytest.raises(ValueError, match=re.escape("holds images in [-1, 1]")):
            model.predict(x / 127.5 - 1.0, verbose=0)
