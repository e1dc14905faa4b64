"""The `Task` base: what a task written by a user gets from it, checked
against NumPy, and the library's three tasks seen through its protocol."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr import export
from keras_simclr.evaluation import knn
from keras_simclr.layers import SimCLRAugmentation
from keras_simclr.models import SimCLRClassifier
from keras_simclr.models import SimCLRDistiller
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.models import Task
from tests import testing


@keras.saving.register_keras_serializable(package="keras_simclr_tests")
class SquaredNorm(Task):
    """A task written as a user would: the mean squared norm of a network's
    outputs, on images resized by an evaluation transform outside
    training."""

    config_layers = {"network": "network", "transform": "evaluation_transform"}
    builtin_loss = "squared norm of the outputs"
    noun = "toy"

    def __init__(self, network, transform=None, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.evaluation_transform = transform
        self.scale = scale

    def build(self, input_shape):
        # The tests' images are 2x2x1 after the transform.
        self.network.build((None, 4))

    def default_optimizer(self):
        return keras.optimizers.SGD(learning_rate=0.25)

    def call(self, images, training=False):
        if not training:
            images = self.evaluation_views(images)
        return self.network(ops.reshape(images, (ops.shape(images)[0], -1)))

    def compute_task_loss(self, x, y, y_pred, training):
        return self.scale * ops.mean(ops.sum(ops.square(y_pred), axis=-1))

    def export_outputs(self, images):
        return {"outputs": self(images, training=False)}

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config


def _network(regularizer=None):
    return keras.layers.Dense(
        3,
        kernel_initializer=keras.initializers.RandomNormal(seed=1),
        bias_initializer="ones",
        activity_regularizer=regularizer,
        name="network",
    )


def _images(n=8, size=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 1)).astype(
        "float32"
    )


def test_evaluate_loss_is_the_task_loss_plus_the_layers_losses():
    """`compute_loss` of the base: the task's own loss, plus the losses the
    layers add (an activity regulariser here), recomputed in NumPy."""
    task = SquaredNorm(_network(keras.regularizers.L2(0.1)), scale=0.5)
    images = _images()
    task.build(images.shape)
    task.compile()
    loss = task.evaluate(images, batch_size=8, verbose=0)
    kernel, bias = (ops.convert_to_numpy(w) for w in task.network.weights)
    outputs = images.reshape(8, -1) @ kernel + bias
    # Keras's activity regulariser is averaged over the batch.
    expected = 0.5 * np.mean(np.sum(outputs**2, -1)) + 0.1 * np.sum(
        outputs**2
    ) / 8
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_fit_takes_one_sgd_step_on_the_task_loss():
    """compile("auto") takes the task's default optimizer (SGD 0.25 here),
    and one step moves the bias by -0.25 times the loss's gradient,
    2 * mean(outputs) over the batch, computed in NumPy."""
    task = SquaredNorm(_network())
    images = _images()
    task.build(images.shape)
    task.compile()
    assert isinstance(task.optimizer, keras.optimizers.SGD)
    np.testing.assert_allclose(
        ops.convert_to_numpy(task.optimizer.learning_rate), 0.25
    )
    kernel, bias = (ops.convert_to_numpy(w) for w in task.network.weights)
    outputs = images.reshape(8, -1) @ kernel + bias
    task.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(task.network.bias),
        bias - 0.25 * 2 * outputs.mean(0),
        rtol=1e-5,
    )


def test_a_task_with_its_own_loss_refuses_a_loss_and_sample_weights():
    task = SquaredNorm(_network())
    with pytest.raises(ValueError, match=r"SquaredNorm computes its own squared norm of the outputs; do not pass `loss`\. Received: loss='mse'"):
        task.compile(loss="mse")
    task.compile()
    images = _images()
    with pytest.raises(ValueError, match="does not take sample weights.*Received: sample_weight=\\(8,\\)"):
        task.fit(images, sample_weight=np.ones(8, "float32"), verbose=0)


def test_a_task_without_a_default_optimizer_says_so():
    class NoDefault(SquaredNorm):
        default_optimizer = Task.default_optimizer

    with pytest.raises(NotImplementedError, match="NoDefault must define default_optimizer"):
        NoDefault(_network()).compile()
    NoDefault(_network()).compile(optimizer="sgd")


def test_evaluation_views_and_predict_use_the_transform():
    """Outside training the base sends images of another size through the
    transform's inference call (here a 4 -> 2 px centre crop) and passes
    images at the view size unchanged."""
    transform = keras.layers.CenterCrop(2, 2)
    task = SquaredNorm(_network(), transform=transform)
    large = _images(size=4)
    small = large[:, 1:3, 1:3, :]
    np.testing.assert_array_equal(
        ops.convert_to_numpy(task.evaluation_views(large)), small
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(task.evaluation_views(small)), small
    )
    np.testing.assert_allclose(
        task.predict(large, verbose=0), task.predict(small, verbose=0), rtol=1e-6
    )


def test_config_round_trip_and_saved_model_with_its_optimizer(tmp_path):
    """`get_config` serialises the `config_layers`; `from_config` rebuilds
    them without consuming the given config; a `.keras` file restores the
    weights, and the optimizer state through `compile_from_config`."""
    task = SquaredNorm(_network(), transform=keras.layers.CenterCrop(2, 2), scale=2.0)
    images = _images()
    task.build(images.shape)
    config = task.get_config()
    assert config["network"]["class_name"] == "Dense"
    assert config["transform"]["class_name"] == "CenterCrop"
    copy = dict(config)
    revived = testing.run_serialization_test(task)
    assert config == copy
    assert revived.network is not task.network and revived.scale == 2.0

    task.compile()
    task.fit(images, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "task.keras"
    task.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), task.predict(images, verbose=0), rtol=1e-6
    )
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 2
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded.optimizer.learning_rate), 0.25
    )


def test_export_serves_the_task_outputs():
    """Export reads a task's `export_outputs`, whatever its class."""
    task = SquaredNorm(_network())
    task.build((None, 2, 2, 1))
    outputs = export._output_function(task)(ops.convert_to_tensor(_images()))
    assert set(outputs) == {"outputs"}


def _pretrainer():
    encoder = testing.tiny_encoder()
    return SimCLRPretrainer(
        encoder,
        augmentation=SimCLRAugmentation(8, preset="cifar"),
        num_classes=3,
    )


def test_the_library_tasks_declare_what_differs():
    """What each of the three declares to the base."""
    pretrainer = _pretrainer()
    pretrainer.build((None, 8, 8, 3))
    classifier = SimCLRClassifier(pretrainer, num_classes=3)
    distiller = SimCLRDistiller(
        teacher=classifier,
        student=SimCLRClassifier(testing.tiny_encoder("student"), num_classes=3),
    )
    assert all(isinstance(m, Task) for m in (pretrainer, classifier, distiller))
    assert [m.trains_across_processes for m in (pretrainer, classifier, distiller)] == [
        True, False, False
    ]
    assert pretrainer.label_use == "probe"
    assert classifier.label_use is None  # until a sparse loss is compiled
    classifier.compile()
    assert classifier.label_use == "required"
    assert distiller.label_use == "optional"
    # The classifier and the distiller see images as the pretrainer does.
    assert classifier.evaluation_transform is pretrainer.augmentation
    assert distiller.evaluation_transform is pretrainer.augmentation


def test_pretrainer_export_outputs_against_its_parts():
    """The pretrainer's export outputs, recomputed from its encoder, head
    and probe on the centre-cropped, resized images."""
    pretrainer = _pretrainer()
    images = np.random.default_rng(0).uniform(0, 255, (4, 12, 12, 3)).astype(
        "float32"
    )
    pretrainer.build((None, 8, 8, 3))
    outputs = pretrainer.export_outputs(images)
    views = pretrainer.augmentation(images, training=False)
    features = pretrainer.encoder(views, training=False)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs["features"]),
        ops.convert_to_numpy(features),
        rtol=1e-5,
        atol=1e-6,
    )
    kernel, bias = (ops.convert_to_numpy(w) for w in pretrainer.probe.weights)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs["logits"]),
        ops.convert_to_numpy(features) @ kernel + bias,
        rtol=1e-4,
        atol=1e-5,
    )
    assert set(outputs) == {"features", "projection", "logits"}


def test_knn_takes_a_task_encoder_through_the_protocol():
    """kNN computes a task's features with its encoder on its evaluation
    views, for the library's tasks and for a user's task with an encoder."""
    pretrainer = _pretrainer()
    pretrainer.build((None, 8, 8, 3))
    encoder, preprocessing = knn.resolve_encoder(pretrainer, None)
    assert encoder is pretrainer.encoder
    assert preprocessing == pretrainer.evaluation_views

    class WithEncoder(SquaredNorm):
        @property
        def encoder(self):
            return self.network

    task = WithEncoder(_network())
    encoder, preprocessing = knn.resolve_encoder(task, None)
    assert encoder is task.network and preprocessing == task.evaluation_views
    # A task without an encoder (the distiller) is a network like any other.
    bare = SquaredNorm(_network())
    assert knn.resolve_encoder(bare, None) == (bare, None)
