"""`keras_simclr.models.load_official` against the official SimCLR code.

No machine here can download the published files, so the reference is the
official model code itself (`shared/oracles/google-research-simclr/tf2`,
next to the repository): tests/official/official_worker.py builds the
official `model.Model` for a grid of architectures (ResNet-18 and -50,
width 1 and 2, selective kernels off and on, CIFAR and ImageNet stems,
2- and 3-layer heads, a pretrained and a fine-tuned model) with random
weights and non-trivial batch norms, writes its checkpoint and SavedModel
as the official `run.py` does, and records its outputs in inference mode.
The converted model must give the same features, every projection-head
layer's output and the supervised head's logits within 1e-4 relative on
every backend, and its evaluation transform the official
`preprocess_image(is_training=False)`. Each part of the mapping, broken in
turn, must fail the comparison. The official TF2 code is Keras 2 code: the
worker runs with `tf-keras` and `TF_USE_LEGACY_KERAS=1` in its own process.
The tests skip, with the reason, when the oracle or `tf-keras` is absent.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr.models import official

from tests.distribute import processes
from tests.testing import built_once
from tests.testing import flags_only
from tests.testing import run_example
from tests.testing import script_behaviour

HERE = pathlib.Path(__file__).resolve().parent
ORACLE = HERE.parents[1].parent / "shared" / "oracles" / "google-research-simclr"
WORKER = HERE / "official_worker.py"
RTOL = 1e-4
TRANSFORM_ATOL = 1e-5

# name: the official flags, and what the converter must read from the files.
SPECS = {
    "r18_cifar": (
        dict(resnet_depth=18, width_multiplier=1, sk_ratio=0.0, image_size=32,
             num_proj_layers=2, num_classes=10),
        dict(depth=18, block="basic", width_multiplier=1, sk_ratio=0.0,
             cifar_stem=True, projection_head=[512, 128], num_classes=10),
    ),
    "r18_w2_sk": (
        dict(resnet_depth=18, width_multiplier=2, sk_ratio=0.0625, image_size=64,
             num_proj_layers=3, num_classes=5),
        dict(depth=18, block="basic", width_multiplier=2, sk_ratio=0.0625,
             cifar_stem=False, projection_head=[1024, 1024, 128], num_classes=5),
    ),
    "r50_sk": (
        dict(resnet_depth=50, width_multiplier=1, sk_ratio=0.0625, image_size=64,
             num_proj_layers=3, num_classes=10),
        dict(depth=50, block="bottleneck", width_multiplier=1, sk_ratio=0.0625,
             cifar_stem=False, projection_head=[2048, 2048, 128], num_classes=10),
    ),
    # SimCLR v1's network (7x7 stem), fine-tuned from the first
    # projection-head layer (SimCLR v2's choice).
    "r50_finetuned": (
        dict(resnet_depth=50, width_multiplier=1, sk_ratio=0.0, image_size=64,
             num_proj_layers=2, num_classes=7, train_mode="finetune",
             ft_proj_selector=1),
        dict(depth=50, block="bottleneck", width_multiplier=1, sk_ratio=0.0,
             cifar_stem=False, projection_head=[2048, 128], num_classes=7),
    ),
}
HEAD_LAYERS = {"r50_finetuned": 1}
FORMATS = ("ckpt-1", "saved_model")


def _files_key(specs):
    """What the official files depend on: the worker, the official code,
    the specs and TensorFlow's version."""
    import hashlib

    import tensorflow as tf

    digest = hashlib.sha256(json.dumps(specs, sort_keys=True).encode())
    digest.update(tf.__version__.encode())
    for path in [WORKER, *sorted((ORACLE / "tf2").glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    if not (ORACLE / "tf2" / "model.py").is_file():
        pytest.skip(f"the official SimCLR code is absent: {ORACLE}")
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf-keras is not installed (the test extra installs it)")
    specs = [dict(name=name, **flags) for name, (flags, _) in SPECS.items()]

    def build(out):
        processes.run(
            str(WORKER),
            [f"--oracle={ORACLE}", f"--out={out}", f"--specs={json.dumps(specs)}"],
            processes.environment("tensorflow", TF_USE_LEGACY_KERAS="1"),
            out / "worker.log",
        )

    # Once, not once per pytest-xdist worker, and kept in pytest's cache
    # for the next session (the other backends' among them) while nothing
    # they depend on changes.
    cached = request.config.cache.mkdir(f"official_files_{_files_key(specs)}")
    return built_once(tmp_path_factory, "official_files", build, directory=cached)


def _relative_difference(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _outputs(model, images):
    """Features, every projection-head output and the logits of a converted
    model, in inference mode; images in [0, 1] as the official model took
    them (the converted ResNet takes [0, 255])."""
    pixels = images * 255.0
    features = model.encoder(pixels, training=False)
    outputs = {"hidden_0": ops.convert_to_numpy(features)}
    if isinstance(model, keras_simclr.models.SimCLRPretrainer):
        hiddens = model.projection_head(features, training=False, return_hidden=True)
        for index, hidden in enumerate(hiddens[1:], 1):
            outputs[f"hidden_{index}"] = ops.convert_to_numpy(hidden)
        outputs["logits"] = ops.convert_to_numpy(model.probe(features))
    else:
        outputs["logits"] = ops.convert_to_numpy(model(pixels, training=False))
    return outputs


def _differences(files, name, file_format="ckpt-1"):
    model = official.load_official(
        files / name / file_format,
        head_layers=HEAD_LAYERS.get(name),
        image_size=SPECS[name][0]["image_size"],
    )
    reference = np.load(files / name / "outputs.npz")
    return {
        key: _relative_difference(value, reference[key])
        for key, value in _outputs(model, reference["images"]).items()
    }


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("name", list(SPECS))
def test_converted_model_computes_what_the_official_model_computes(
    files, name, file_format
):
    differences = _differences(files, name, file_format)
    # Features, each head layer (the fine-tuned model keeps none), logits.
    expected = 2 if name == "r50_finetuned" else len(SPECS[name][1]["projection_head"]) + 2
    assert len(differences) == expected
    for key, difference in differences.items():
        assert difference < RTOL, (key, difference)


@pytest.mark.parametrize("name", list(SPECS))
def test_the_architecture_is_read_from_the_variables(files, name):
    for file_format in FORMATS:
        checkpoint = official.OfficialCheckpoint(files / name / file_format)
        assert checkpoint.architecture() == SPECS[name][1]


def test_both_formats_name_the_variables_alike(files):
    # The SavedModel stores most variables under `variables/<n>` keys, the
    # checkpoint under their attribute paths: read through the object
    # graph, both give the checkpoint's own names.
    import tensorflow as tf

    prefix = str(files / "r50_sk" / "ckpt-1")
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    keys = {
        key[: -len(suffix)]
        for key, _ in tf.train.list_variables(prefix)
        if key.endswith(suffix)
    }
    saved = tf.train.load_checkpoint(
        str(files / "r50_sk" / "saved_model" / "variables" / "variables")
    )
    saved_keys = set(saved.get_variable_to_shape_map())
    assert any("/variables/" in key for key in saved_keys)
    assert set(official.variable_names(saved)) == keys
    assert set(official.variable_names(tf.train.load_checkpoint(prefix))) == keys


@pytest.mark.parametrize("name", ["r18_cifar", "r50_sk"])
def test_evaluation_transform_is_the_official_one(files, name):
    # A centre crop of 87.5% resized bicubically (the whole image at 32
    # pixels), on images of several sizes and aspect ratios.
    model = official.load_official(
        files / name / "ckpt-1", image_size=SPECS[name][0]["image_size"]
    )
    reference = np.load(files / name / "outputs.npz")
    index = 0
    while f"raw_{index}" in reference.files:
        raw = reference[f"raw_{index}"]
        views = model.evaluation_views(raw[None].astype("float32"))
        np.testing.assert_allclose(
            ops.convert_to_numpy(views)[0] / 255.0,
            reference[f"preprocessed_{index}"],
            atol=TRANSFORM_ATOL,
            err_msg=f"image {raw.shape}",
        )
        index += 1
    assert index == (1 if name == "r18_cifar" else 3)


def _half_swapped_selective_kernels(get):
    def swapped(self, name):
        value = get(self, name)
        if name.endswith("conv2d_fixed_padding/conv2d/kernel"):
            half = value.shape[-1] // 2
            value = np.concatenate([value[..., half:], value[..., :half]], axis=-1)
        return value

    return swapped


@pytest.mark.parametrize(
    "ablation", ["transposed_kernels", "swapped_statistics", "sk_split", "missing_head_layer"]
)
def test_each_part_of_the_mapping_is_needed(files, monkeypatch, ablation):
    if ablation == "transposed_kernels":
        monkeypatch.setattr(official, "conv_kernel", lambda value: np.swapaxes(value, 0, 1))
    elif ablation == "swapped_statistics":
        weights = official.batch_norm_weights

        def swapped(checkpoint, prefix, layer):
            values = weights(checkpoint, prefix, layer)
            return values[:-2] + [values[-1], values[-2]]

        monkeypatch.setattr(official, "batch_norm_weights", swapped)
    elif ablation == "sk_split":
        monkeypatch.setattr(
            official.OfficialCheckpoint,
            "get",
            _half_swapped_selective_kernels(official.OfficialCheckpoint.get),
        )
    else:
        assign = official.OfficialCheckpoint.assign_projection_head

        def without_last(self, head):
            last = [ops.convert_to_numpy(w) for w in head.dense_layers[-1].weights]
            assign(self, head)
            for weight, value in zip(head.dense_layers[-1].weights, last):
                weight.assign(value)

        monkeypatch.setattr(official.OfficialCheckpoint, "assign_projection_head", without_last)
    differences = _differences(files, "r50_sk")
    # Ten times the tolerance at least somewhere (or not a number).
    worst = max(np.nan_to_num(d, nan=np.inf) for d in differences.values())
    assert worst > 10 * RTOL, differences


def test_files_that_are_not_official_models_are_refused(files, tmp_path):
    import tensorflow as tf

    with pytest.raises(ValueError, match=r"neither a SavedModel directory nor a TensorFlow checkpoint.*Received: path="):
        official.load_official(tmp_path / "missing")
    tf.train.Checkpoint(step=tf.Variable(1)).write(str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"does not hold an official SimCLR model.*Received: path=.*step"):
        official.load_official(tmp_path / "other")
    # A name-based (TF1) checkpoint.
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("base_model/conv2d/kernel", shape=[3, 3, 3, 8])
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "tf1"))
    with pytest.raises(ValueError, match=r"name-based \(TF1\) checkpoint.*base_model/conv2d/kernel"):
        official.load_official(tmp_path / "tf1")
    # A fine-tuned file does not say which head layer its classifier reads.
    finetuned = tmp_path / "finetuned_10pct"
    os.symlink(files / "r50_finetuned" / "saved_model", finetuned)
    with pytest.raises(ValueError, match=r"give head_layers.*Received: head_layers=None"):
        official.load_official(finetuned)
    with pytest.raises(ValueError, match=r"supervised head reads 2048 features, not the 128"):
        official.load_official(finetuned, head_layers=2)


def test_continued_pretraining_starts_a_fresh_optimizer(files):
    model = official.load_official(files / "r18_cifar" / "ckpt-1")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    before = [np.array(w) for w in model.encoder.trainable_weights]
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    history = model.fit(images, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["contrastive_loss"][0])
    assert int(model.optimizer.iterations) == 2
    after = [np.array(w) for w in model.encoder.trainable_weights]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(after, before)) > 0


OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}
RELOAD = """
import sys
import keras
import numpy as np
import keras_simclr  # registers the classes
model = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model.predict(images, verbose=0)))
"""


def test_fine_tuned_converted_model_reloads_on_another_backend(files, tmp_path):
    # A converted 1x model fine-tuned from its first head layer for a few
    # steps, saved as .keras, gives the same logits on another backend.
    pretrainer = official.load_official(files / "r18_cifar" / "ckpt-1")
    classifier = keras_simclr.models.SimCLRClassifier(pretrainer, 3, head_layers=1)
    classifier.compile(optimizer=keras.optimizers.SGD(0.05))
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    classifier.fit(images, rng.integers(0, 3, 16), batch_size=8, epochs=1, verbose=0)
    logits = ops.convert_to_numpy(classifier.predict(images, verbose=0))
    assert np.max(np.abs(logits)) > 0
    classifier.save(tmp_path / "classifier.keras")
    np.save(tmp_path / "images.npy", images)
    other = OTHER_BACKEND[keras.backend.backend()]
    subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "classifier.keras"),
         str(tmp_path / "images.npy"), str(tmp_path / "logits.npy")],
        env=processes.environment(other),
        check=True,
        timeout=300,
    )
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), logits, rtol=1e-5, atol=1e-5)


@script_behaviour
def test_the_example_script_writes_a_model_that_loads_anywhere(files, tmp_path):
    output = tmp_path / "converted" / "pretrainer.keras"
    result = run_example(
        "convert_official.py", f"--checkpoint={files / 'r50_sk' / 'saved_model'}",
        f"--output={output}", "--image_size=64", timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SimCLRPretrainer: ResNet-50 1x SK" in result.stdout
    record = json.loads((tmp_path / "converted" / "convert.json").read_text())
    assert record["architecture"] == SPECS["r50_sk"][1]
    assert record["model"] == "SimCLRPretrainer" and record["peak_rss_mib"] > 0
    model = keras.saving.load_model(output)
    reference = np.load(files / "r50_sk" / "outputs.npz")
    for key, value in _outputs(model, reference["images"]).items():
        assert _relative_difference(value, reference[key]) < RTOL, key
    # A fine-tuned file without --head_layers: one line naming it.
    finetuned = tmp_path / "finetuned_1pct"
    os.symlink(files / "r50_finetuned" / "saved_model", finetuned)
    result = run_example("convert_official.py", f"--checkpoint={finetuned}", timeout=300)
    assert result.returncode != 0
    assert "give head_layers" in result.stderr


@flags_only
def test_the_example_script_refuses_an_output_that_is_not_a_keras_file():
    result = run_example("convert_official.py", "--checkpoint=x", "--output=model.h5", timeout=120)
    assert result.returncode != 0
    assert "flag --output=model.h5: --output must be a path ending in .keras" in result.stderr


def test_a_file_without_projection_head_gives_a_classifier_on_the_features(
    files, monkeypatch
):
    # SimCLR v1's published files and the supervised ones hold no projection
    # head: the same pretrained file with its head's variables removed.
    init = official.OfficialCheckpoint.__init__

    def without_head(self, path):
        init(self, path)
        self._keys = {
            name: key for name, key in self._keys.items()
            if not name.startswith("_projection_head/")
        }

    monkeypatch.setattr(official.OfficialCheckpoint, "__init__", without_head)
    model = official.load_official(files / "r50_sk" / "saved_model", image_size=64)
    assert isinstance(model, keras_simclr.models.SimCLRClassifier)
    assert model.head_layers == 0
    reference = np.load(files / "r50_sk" / "outputs.npz")
    outputs = _outputs(model, reference["images"])
    assert _relative_difference(outputs["logits"], reference["logits"]) < RTOL
    with pytest.raises(ValueError, match=r"no projection head to fine-tune from: give head_layers=0"):
        official.load_official(files / "r50_sk" / "saved_model", head_layers=1)
