"""export_saved_model: SavedModels from any backend, served by TensorFlow alone.

Six tiny models are exported once for the whole module (an encoder, a
grayscale encoder, a SimCLRPretrainer with a probe and a momentum target, a
model with an `export_outputs` method, and a pretrainer with the imagenet
preset's evaluation transform and a SimCLRClassifier built from it), then
one subprocess, which imports
TensorFlow and cannot import Keras, keras_simclr or the tests, loads every
SavedModel and runs it on uint8 images. Its outputs are compared with those
of the Keras models in this process, in inference mode. On the JAX and
PyTorch backends the exports run in one TensorFlow subprocess, kept between
them; on TensorFlow, in this process.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.export import export_saved_model
from keras_simclr.layers import PredictionHead
from keras_simclr.layers import ProjectionHead
from keras_simclr.layers import SimCLRAugmentation
from keras_simclr.models import SimCLRPretrainer
from keras_simclr.models.simclr_classifier import SimCLRClassifier
from keras_simclr.objectives import BYOL
from tests.center_crop_reference import official_center_crop
from tests.export_models import TinyClassifier
from tests.export_models import Unloadable

BACKEND = keras.backend.backend()
IMAGE_SIZE = 16
CLASSIFIER_SIZE = 12
ATOL = 1e-4
RTOL = 1e-4

# Runs in a process that imports TensorFlow and NumPy only: each SavedModel
# must serve without Keras, keras_simclr or the test's models. They are
# installed here, so importing them is made to fail.
SERVING_SCRIPT = r"""
import importlib, importlib.abc, importlib.machinery, json, sys

BLOCKED = ("keras", "keras_simclr", "tests")
preloaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)


class Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError(f"{spec.name} must not be needed to serve")

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} must not be needed to serve")


class Block(importlib.abc.MetaPathFinder):
    # A spec with no origin whose loading fails: importing raises
    # ImportError, while TensorFlow, which only looks Keras up with
    # find_spec when it is imported, goes on as if Keras were absent.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Refuse())
        return None


sys.meta_path.insert(0, Block())

import numpy as np
import tensorflow as tf

out_path = sys.argv[1]
job = json.loads(sys.stdin.read())
arrays = np.load(job["arrays"])
results, info = {}, {}
for name, case in job["cases"].items():
    loaded = tf.saved_model.load(case["path"])
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    info[name] = {
        "input_names": sorted(signature.structured_input_signature[1]),
        "input_dtype": spec.dtype.name,
        "input_shape": spec.shape.as_list(),
        "output_names": sorted(signature.structured_outputs),
        "output_dtypes": sorted(
            {s.dtype.name for s in signature.structured_outputs.values()}
        ),
        "num_variables": len(loaded.variables),
        "num_trainable_variables": len(loaded.trainable_variables),
    }
    for key in case["inputs"]:
        images = tf.constant(arrays[key])
        for output, value in signature(images=images).items():
            results[f"{name}/{key}/signature/{output}"] = value.numpy()
        for output, value in loaded.serve(images).items():
            results[f"{name}/{key}/serve/{output}"] = value.numpy()
np.savez(out_path, **results)

wrong_images = {}
for name, (case, shape) in job["wrong_images"].items():
    signature = tf.saved_model.load(job["cases"][case]["path"]).signatures[
        "serving_default"
    ]
    try:
        signature(images=tf.zeros(shape, tf.uint8))
        wrong_images[name] = {"type": None, "message": ""}
    except Exception as error:
        wrong_images[name] = {"type": type(error).__name__, "message": str(error)}
info["wrong_images"] = wrong_images

info["preloaded"] = preloaded
info["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
blocked = {}
for name in BLOCKED:
    try:
        importlib.import_module(name)
        blocked[name] = None
    except ImportError as error:
        blocked[name] = type(error).__name__
info["blocked"] = blocked
with open(out_path + ".json", "w") as file:
    json.dump(info, file)
"""


def _randomize_batch_norm(model, seed):
    """Gives every batch norm non-trivial statistics, so that inference mode
    and the statistics' export both matter."""
    rng = np.random.default_rng(seed)
    draws = {
        "gamma": lambda shape: rng.uniform(0.5, 1.5, shape),
        "beta": lambda shape: rng.normal(0.0, 0.2, shape),
        "moving_mean": lambda shape: rng.normal(0.0, 0.2, shape),
        "moving_variance": lambda shape: rng.uniform(0.5, 1.5, shape),
    }
    for weight in model.weights:
        if weight.name in draws:
            weight.assign(draws[weight.name](tuple(weight.shape)).astype("float32"))


def _numpy(structure):
    return keras.tree.map_structure(ops.convert_to_numpy, structure)


def _tiny_encoder(rescale=False, channels=3):
    """A convnet to a feature vector; with `rescale`, it maps pixels from
    [0, 255] to [0, 1] itself, as `keras_simclr.models.ResNet` does, else it
    expects them in [0, 1]."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs) if rescale else inputs
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="tiny_encoder")


def _start_serving_script(directory):
    """Starts the TensorFlow process now, so that its imports overlap with the
    exports; `_serve` gives it the work."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    out_path = os.path.join(directory, "served.npz")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVING_SCRIPT, out_path],
        env=env,
        cwd=directory,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, out_path


# Images the signatures must refuse: (exported model, shape).
WRONG_IMAGES = {
    "gray": ("encoder", (2, IMAGE_SIZE, IMAGE_SIZE, 1)),
    "rgba": ("encoder", (2, IMAGE_SIZE, IMAGE_SIZE, 4)),
    "rgb_for_gray": ("gray_encoder", (2, IMAGE_SIZE, IMAGE_SIZE, 3)),
}


def _serve(process, out_path, cases, arrays):
    arrays_path = os.path.join(os.path.dirname(out_path), "arrays.npz")
    np.savez(arrays_path, **arrays)
    job = json.dumps(
        {"arrays": arrays_path, "cases": cases, "wrong_images": WRONG_IMAGES}
    )
    _, stderr = process.communicate(job, timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    with open(out_path + ".json") as file:
        info = json.load(file)
    return dict(np.load(out_path)), info


def _export_models(root, arrays):
    """Exports the three models; returns them, their expected outputs and the
    cases to serve."""
    expected = {}
    models = {}

    encoder = _tiny_encoder(rescale=True)
    _randomize_batch_norm(encoder, seed=1)
    encoder_path = os.path.join(root, "encoder")
    # A previous export in the way, replaced with overwrite=True, stale
    # variable shard included.
    os.makedirs(os.path.join(encoder_path, "variables"))
    os.makedirs(os.path.join(encoder_path, "assets"))
    for name in ("saved_model.pb", "variables/variables.data-00001-of-00002"):
        with open(os.path.join(encoder_path, name), "w") as file:
            file.write("from an earlier export")
    returned_path = export_saved_model(encoder, encoder_path, overwrite=True)
    for key in ("images", "large", "small"):
        images = arrays[key].astype("float32")
        if images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            images = ops.image.resize(
                images, (IMAGE_SIZE, IMAGE_SIZE), interpolation="bilinear"
            )
        expected[f"encoder/{key}"] = {
            "features": _numpy(encoder(images, training=False))
        }
    models["encoder"] = encoder

    gray_encoder = _tiny_encoder(rescale=True, channels=1)
    _randomize_batch_norm(gray_encoder, seed=4)
    export_saved_model(gray_encoder, os.path.join(root, "gray_encoder"))
    expected["gray_encoder/gray"] = {
        "features": _numpy(
            gray_encoder(arrays["gray"].astype("float32"), training=False)
        )
    }
    models["gray_encoder"] = gray_encoder

    pretrainer = SimCLRPretrainer(
        encoder=_tiny_encoder(),
        augmentation=SimCLRAugmentation(
            IMAGE_SIZE, preset="cifar", value_range=(0, 1), seed=0
        ),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
        num_classes=3,
        objective=BYOL(prediction_head=PredictionHead(hidden_dim=8)),
    )
    pretrainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    _randomize_batch_norm(pretrainer, seed=2)
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    export_saved_model(
        pretrainer, os.path.join(root, "pretrainer"), value_range=(0, 1)
    )
    outputs = _numpy(
        pretrainer(arrays["images"].astype("float32") / 255.0, training=False)
    )
    expected["pretrainer/images"] = {
        "features": outputs["features"],
        "projection": outputs["projection"],
        "logits": outputs["probe_logits"],
    }
    models["pretrainer"] = pretrainer

    classifier = TinyClassifier(num_classes=3)
    classifier(np.zeros((1, CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), "float32"))
    _randomize_batch_norm(classifier, seed=3)
    export_saved_model(
        classifier, os.path.join(root, "classifier"), image_size=CLASSIFIER_SIZE
    )
    images = ops.image.resize(
        arrays["images"].astype("float32"),
        (CLASSIFIER_SIZE, CLASSIFIER_SIZE),
        interpolation="bilinear",
    )
    expected["classifier/images"] = _numpy(classifier.export_outputs(images))
    models["classifier"] = classifier

    # Under the mixed_bfloat16 policy that use_fast_precision() may choose,
    # the signature still returns float32.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bf16_pretrainer = SimCLRPretrainer(
            encoder=_tiny_encoder(),
            augmentation=SimCLRAugmentation(
                IMAGE_SIZE, preset="cifar", value_range=(0, 1), seed=0
            ),
            projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
            num_classes=3,
        )
        bf16_pretrainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    _randomize_batch_norm(bf16_pretrainer, seed=7)
    export_saved_model(
        bf16_pretrainer, os.path.join(root, "bf16_pretrainer"), value_range=(0, 1)
    )
    outputs = bf16_pretrainer.export_outputs(
        arrays["images"].astype("float32") / 255.0
    )
    expected["bf16_pretrainer/images"] = {
        name: _numpy(ops.cast(value, "float32")) for name, value in outputs.items()
    }
    models["bf16_pretrainer"] = bf16_pretrainer

    # The imagenet preset's evaluation transform: images of another size
    # are centre-cropped (87.5%) and resized bicubically; the expected
    # outputs take the official crop, written with tf.image.
    crop_encoder = _tiny_encoder()
    crop_pretrainer = SimCLRPretrainer(
        encoder=crop_encoder,
        augmentation=SimCLRAugmentation(
            IMAGE_SIZE, preset="imagenet", value_range=(0, 1), seed=0
        ),
        projection_head=ProjectionHead(hidden_dim=8, output_dim=4),
    )
    crop_pretrainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    _randomize_batch_norm(crop_pretrainer, seed=5)
    export_saved_model(
        crop_pretrainer, os.path.join(root, "crop_pretrainer"), value_range=(0, 1)
    )
    crop_classifier = SimCLRClassifier(crop_pretrainer, 3, mode="linear")
    crop_classifier.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    kernel = crop_classifier.linear_classifier.kernel
    kernel.assign(np.random.default_rng(6).normal(size=tuple(kernel.shape)))
    export_saved_model(
        crop_classifier, os.path.join(root, "crop_classifier"), value_range=(0, 1)
    )
    for key in ("images", "large", "small"):
        views = arrays[key].astype("float32") / 255.0
        if views.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            views = official_center_crop(
                views, IMAGE_SIZE, IMAGE_SIZE, value_range=(0, 1)
            )
        features = crop_encoder(views, training=False)
        expected[f"crop_pretrainer/{key}"] = {
            "features": _numpy(features),
            "projection": _numpy(crop_pretrainer.projection_head(features)),
        }
        expected[f"crop_classifier/{key}"] = {
            "features": _numpy(features),
            "logits": _numpy(crop_classifier.linear_classifier(features)),
        }
    models["crop_pretrainer"] = crop_pretrainer
    models["crop_classifier"] = crop_classifier

    cases = {
        "encoder": {"path": returned_path, "inputs": ["images", "large", "small"]},
        "gray_encoder": {
            "path": os.path.join(root, "gray_encoder"),
            "inputs": ["gray"],
        },
        "pretrainer": {
            "path": os.path.join(root, "pretrainer"),
            "inputs": ["images"],
        },
        "classifier": {
            "path": os.path.join(root, "classifier"),
            "inputs": ["images"],
        },
        "bf16_pretrainer": {
            "path": os.path.join(root, "bf16_pretrainer"),
            "inputs": ["images"],
        },
        "crop_pretrainer": {
            "path": os.path.join(root, "crop_pretrainer"),
            "inputs": ["images", "large", "small"],
        },
        "crop_classifier": {
            "path": os.path.join(root, "crop_classifier"),
            "inputs": ["images", "large", "small"],
        },
    }
    return models, expected, cases


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports the three models and serves them in one TensorFlow process."""
    keras.utils.set_random_seed(0)
    root = str(tmp_path_factory.mktemp("export"))
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.integers(0, 256, (4, IMAGE_SIZE, IMAGE_SIZE, 3), "uint8"),
        # Larger than the model, with another aspect ratio: resized down.
        "large": rng.integers(0, 256, (3, 20, 26, 3), "uint8"),
        # Smaller than the model: resized up.
        "small": rng.integers(0, 256, (2, 9, 11, 3), "uint8"),
        "gray": rng.integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE, 1), "uint8"),
    }
    serving_process, served_path = _start_serving_script(root)
    try:
        models, expected, cases = _export_models(root, arrays)
        served, info = _serve(serving_process, served_path, cases, arrays)
    finally:
        if serving_process.poll() is None:
            serving_process.kill()
            serving_process.communicate()
    return {
        "root": root,
        "arrays": arrays,
        "models": models,
        "expected": expected,
        "served": served,
        "info": info,
    }


def _assert_served_as_expected(exported, case, key, atol=ATOL, rtol=RTOL):
    expected = exported["expected"][f"{case}/{key}"]
    served = exported["served"]
    for endpoint in ("signature", "serve"):
        names = sorted(
            name.rsplit("/", 1)[1]
            for name in served
            if name.startswith(f"{case}/{key}/{endpoint}/")
        )
        assert names == sorted(expected), endpoint
        for name, value in expected.items():
            actual = served[f"{case}/{key}/{endpoint}/{name}"]
            assert actual.dtype == np.float32
            np.testing.assert_allclose(
                actual, value, atol=atol, rtol=rtol, err_msg=f"{endpoint} {name}"
            )


def test_encoder_serves_its_features(exported):
    _assert_served_as_expected(exported, "encoder", "images")
    features = exported["expected"]["encoder/images"]["features"]
    assert features.shape == (4, 6)
    assert np.std(features) > 1e-3


@pytest.mark.parametrize("key", ["large", "small"])
def test_images_of_another_size_are_resized_bilinearly(exported, key):
    _assert_served_as_expected(exported, "encoder", key)


def test_pretrainer_serves_features_projection_and_probe_logits(exported):
    _assert_served_as_expected(exported, "pretrainer", "images")
    expected = exported["expected"]["pretrainer/images"]
    assert expected["projection"].shape == (4, 4)
    assert expected["logits"].shape == (4, 3)


def test_a_bfloat16_pretrainer_serves_float32(exported):
    """A model computing in bfloat16 serves float32 outputs, those of the
    model to bfloat16's precision (8 bits: TensorFlow's kernels and the
    backend's round at other places)."""
    assert exported["models"]["bf16_pretrainer"].encoder.compute_dtype == "bfloat16"
    _assert_served_as_expected(
        exported, "bf16_pretrainer", "images", atol=3e-2, rtol=3e-2
    )


def test_export_outputs_method_gives_the_outputs(exported):
    _assert_served_as_expected(exported, "classifier", "images")
    assert sorted(exported["expected"]["classifier/images"]) == [
        "features",
        "logits",
    ]


@pytest.mark.parametrize("key", ["images", "large", "small"])
@pytest.mark.parametrize("case", ["crop_pretrainer", "crop_classifier"])
def test_evaluation_transform_is_the_official_center_crop(exported, case, key):
    """Images at the view size are served as they are; the others through
    the imagenet preset's centre crop and bicubic resize."""
    _assert_served_as_expected(exported, case, key)


def test_served_outputs_equal_the_models_own_inference(exported):
    """The signature and the Keras models apply one rule at inference."""
    served = exported["served"]
    pretrainer = exported["models"]["crop_pretrainer"]
    classifier = exported["models"]["crop_classifier"]
    assert classifier.evaluation_transform is pretrainer.augmentation
    for key in ("images", "large", "small"):
        images = exported["arrays"][key].astype("float32") / 255.0
        np.testing.assert_allclose(
            served[f"crop_pretrainer/{key}/signature/features"],
            _numpy(pretrainer(images, training=False)["features"]),
            atol=ATOL,
            rtol=RTOL,
        )
        np.testing.assert_allclose(
            served[f"crop_classifier/{key}/signature/logits"],
            _numpy(classifier.predict(images, verbose=0)),
            atol=ATOL,
            rtol=RTOL,
        )


def test_value_range_must_be_the_transforms(exported, tmp_path):
    with pytest.raises(ValueError, match="value_range"):
        export_saved_model(exported["models"]["crop_pretrainer"], tmp_path / "out")


def test_image_size_must_match_the_evaluation_transform(tmp_path):
    pretrainer = SimCLRPretrainer(
        encoder=keras.Sequential([keras.layers.GlobalAveragePooling2D()]),
        augmentation=SimCLRAugmentation(IMAGE_SIZE, preset="imagenet"),
        projection_head=ProjectionHead(hidden_dim=4, output_dim=2),
    )
    pretrainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    with pytest.raises(ValueError, match="differs from the model's image size"):
        export_saved_model(pretrainer, tmp_path / "out", image_size=IMAGE_SIZE + 2)


def test_signature_takes_uint8_images_of_any_size(exported):
    for case in ("encoder", "pretrainer", "classifier"):
        info = exported["info"][case]
        assert info["input_names"] == ["images"]
        assert info["input_dtype"] == "uint8"
        assert info["input_shape"] == [None, None, None, 3]
        assert info["output_dtypes"] == ["float32"]


def test_saved_model_lists_only_the_variables_it_reads(exported):
    encoder = exported["models"]["encoder"]
    info = exported["info"]["encoder"]
    assert info["num_variables"] == len(encoder.weights)
    assert info["num_trainable_variables"] == len(encoder.trainable_weights)
    # Not the momentum target, the prediction head, the augmentation's seed
    # or the optimizer: the encoder, the projection head and the probe.
    pretrainer = exported["models"]["pretrainer"]
    served_layers = (pretrainer.encoder, pretrainer.projection_head, pretrainer.probe)
    info = exported["info"]["pretrainer"]
    assert info["num_variables"] == sum(len(layer.weights) for layer in served_layers)
    assert info["num_trainable_variables"] == sum(
        len(layer.trainable_weights) for layer in served_layers
    )


def test_serving_needs_no_keras_simclr(exported):
    """The serving process could not import Keras, keras_simclr or the tests
    (they are installed, so imports were made to fail), and still served
    every model's outputs."""
    info = exported["info"]
    assert info["preloaded"] == []
    assert info["blocked"] == {
        "keras": "ImportError",
        "keras_simclr": "ImportError",
        "tests": "ImportError",
    }
    assert info["modules"] == []
    for case, key in (
        ("encoder", "images"),
        ("gray_encoder", "gray"),
        ("pretrainer", "images"),
        ("classifier", "images"),
    ):
        _assert_served_as_expected(exported, case, key)


def test_grayscale_encoder_serves_one_channel_images(exported):
    _assert_served_as_expected(exported, "gray_encoder", "gray")
    assert exported["info"]["gray_encoder"]["input_shape"] == [None, None, None, 1]


def test_signature_refuses_a_wrong_channel_count(exported):
    errors = exported["info"]["wrong_images"]
    for name, channels in (("gray", 1), ("rgba", 4)):
        error = errors[name]
        assert error["type"] == "InvalidArgumentError", error
        message = error["message"]
        assert "`images` must have 3 channels: the exported model takes" in message
        shape = f"[2 {IMAGE_SIZE} {IMAGE_SIZE} {channels}]"
        assert f"Received: images.shape=] {shape}" in message
        assert "filter depth" not in message
    assert "tf.image.grayscale_to_rgb" in errors["gray"]["message"]
    assert "images[..., :3]" in errors["rgba"]["message"]
    error = errors["rgb_for_gray"]
    assert error["type"] == "InvalidArgumentError"
    assert "`images` must have 1 channel: the exported model takes" in error["message"]
    assert "tf.image.rgb_to_grayscale" in error["message"]


def test_overwrite_replaces_the_directory(exported):
    path = os.path.join(exported["root"], "encoder")
    stale = os.path.join(path, "variables", "variables.data-00001-of-00002")
    assert not os.path.exists(stale)
    with open(os.path.join(path, "saved_model.pb"), "rb") as file:
        assert file.read() != b"from an earlier export"
    # The staging directories beside the exports are removed.
    assert not [
        name for name in os.listdir(exported["root"]) if name.startswith(".export-")
    ]


# === Errors ===


def _built_classifier():
    classifier = TinyClassifier()
    classifier(np.zeros((1, CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), "float32"))
    return classifier


def test_image_size_is_required_when_the_model_leaves_it_open(tmp_path):
    with pytest.raises(ValueError, match="`image_size`.*required"):
        export_saved_model(_built_classifier(), tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


def test_image_size_must_match_the_model(tmp_path):
    encoder = _tiny_encoder()
    with pytest.raises(ValueError, match="differs from the model's image size"):
        export_saved_model(encoder, tmp_path / "out", image_size=(IMAGE_SIZE, 8))


@pytest.mark.parametrize("image_size", [0, -3, (12,), (12, 0), "12", (12.0, 12), True])
def test_invalid_image_size(image_size, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        export_saved_model(_built_classifier(), tmp_path / "out", image_size=image_size)


@pytest.mark.parametrize("value_range", [(1, 0), (0,), "0-255", (0, None)])
def test_invalid_value_range(value_range, tmp_path):
    with pytest.raises(ValueError, match="value_range"):
        export_saved_model(_tiny_encoder(), tmp_path / "out", value_range=value_range)


def test_model_must_be_a_built_keras_model(tmp_path):
    with pytest.raises(ValueError, match="must be a keras.Model"):
        export_saved_model(keras.layers.Dense(2), tmp_path / "out")
    with pytest.raises(ValueError, match="must be built"):
        export_saved_model(
            TinyClassifier(), tmp_path / "out", image_size=CLASSIFIER_SIZE
        )


def test_existing_path_needs_overwrite(tmp_path):
    directory = tmp_path / "taken"
    directory.mkdir()
    (directory / "file.txt").write_text("keep me")
    with pytest.raises(ValueError, match="overwrite=True"):
        export_saved_model(_tiny_encoder(), directory)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match="not a directory"):
        export_saved_model(_tiny_encoder(), a_file)
    assert (directory / "file.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="overwrite"):
        export_saved_model(_tiny_encoder(), tmp_path / "new", overwrite="yes")


def _tree(root):
    """Every path under `root` with the content of its files."""
    found = {}
    for directory, _, files in os.walk(root):
        found[os.path.relpath(directory, root)] = None
        for name in files:
            with open(os.path.join(directory, name), "rb") as file:
                found[os.path.relpath(os.path.join(directory, name), root)] = (
                    file.read()
                )
    return found


def test_overwrite_never_deletes_what_it_did_not_write(tmp_path):
    # The reported case: a directory of the user's own.
    user_dir = tmp_path / "results"
    (user_dir / "data").mkdir(parents=True)
    (user_dir / "notes.txt").write_text("keep me")
    (user_dir / "data" / "images.npy").write_bytes(b"\x00\x01")
    # A SavedModel directory with something of the user's in it.
    annotated = tmp_path / "annotated"
    (annotated / "variables").mkdir(parents=True)
    (annotated / "saved_model.pb").write_bytes(b"graph")
    (annotated / "README.md").write_text("keep me")
    # Another program's files under variables/.
    foreign_variables = tmp_path / "foreign_variables"
    (foreign_variables / "variables").mkdir(parents=True)
    (foreign_variables / "saved_model.pb").write_bytes(b"graph")
    (foreign_variables / "variables" / "notes.txt").write_text("keep me")
    # Export-like names without a graph.
    no_graph = tmp_path / "no_graph"
    (no_graph / "variables").mkdir(parents=True)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(annotated, target_is_directory=True)
    before = _tree(tmp_path)
    cases = [
        (user_dir, "holds data, notes.txt, which a SavedModel does not"),
        (annotated, "holds README.md, which a SavedModel does not"),
        (foreign_variables, "holds variables/notes.txt, which a SavedModel does not"),
        (no_graph, r"holds no saved_model.pb \(it holds variables\)"),
        (a_file, "`path` is a file, not a SavedModel directory"),
        (link, "`path` is a symbolic link, not a SavedModel directory"),
    ]
    for path, reason in cases:
        message = (
            f"{reason}.*nothing else is deleted.*Received: path="
            + re.escape(repr(str(path)))
            + "$"
        )
        with pytest.raises(ValueError, match=message):
            export_saved_model(_tiny_encoder(), path, overwrite=True)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", ["x.keras", "x.h5", "X.KERAS", "x.hdf5", "x.keras/"])
def test_a_keras_file_path_is_refused(tmp_path, name):
    path = os.path.join(str(tmp_path), name)
    message = r"use `model.save\(path\)`.*Received: path=" + re.escape(repr(path)) + "$"
    with pytest.raises(ValueError, match=message):
        export_saved_model(_tiny_encoder(), path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", ["", None, "gs://bucket/model"])
def test_invalid_path(path):
    with pytest.raises(ValueError, match="path"):
        export_saved_model(_tiny_encoder(), path)


def test_import_modules_must_be_importable(tmp_path):
    with pytest.raises(ValueError, match="import_modules"):
        export_saved_model(
            _tiny_encoder(),
            tmp_path / "out",
            import_modules=["no_such_module_for_export"],
        )
    with pytest.raises(ValueError, match="import_modules"):
        export_saved_model(_tiny_encoder(), tmp_path / "out", import_modules="tests")


exported_in_process = pytest.mark.skipif(
    BACKEND == "tensorflow",
    reason="on TensorFlow the model is exported in-process, never reloaded",
)


@exported_in_process
def test_classes_of_the_main_script_are_refused(tmp_path):
    class Identity(keras.layers.Layer):
        def call(self, inputs):
            return inputs

    # As if it were defined in the script being run.
    Identity.__module__ = "__main__"
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(Identity()(inputs))
    with pytest.raises(ValueError, match=r"__main__.*\['Identity'\]"):
        export_saved_model(keras.Model(inputs, outputs), tmp_path / "out")
    assert os.listdir(tmp_path) == []


@exported_in_process
def test_subprocess_failure_is_a_runtime_error_and_keeps_the_old_export(tmp_path):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(Unloadable()(inputs))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "export"
    path.mkdir()
    (path / "saved_model.pb").write_text("an earlier export")
    message = "(?s)TensorFlow subprocess.*not_an_argument"
    with pytest.raises(RuntimeError, match=message):
        export_saved_model(model, path, overwrite=True)
    assert (path / "saved_model.pb").read_text() == "an earlier export"
    assert sorted(os.listdir(tmp_path)) == ["export"]
