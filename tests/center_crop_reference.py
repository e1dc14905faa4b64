"""The official SimCLR evaluation crop, run from the official code itself, as
the reference of the tests of the evaluation transform.

`official_center_crop` calls `data_util.center_crop` of google-research/simclr
(`tf2/data_util.py`, which imports only TensorFlow, so it runs beside every
backend), loaded from `shared/oracles/google-research-simclr` next to the
repository (`../shared/...` from its root, as in CI). A test that needs it is
skipped, with the reason, when it is absent. The official code is never
imported by the package.
"""

import functools
import importlib.util
import pathlib

import numpy as np
import pytest

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
OFFICIAL_DATA_UTIL = (
    REPOSITORY_ROOT.parent
    / "shared"
    / "oracles"
    / "google-research-simclr"
    / "tf2"
    / "data_util.py"
)


@functools.lru_cache(maxsize=None)
def _load_official_data_util():
    spec = importlib.util.spec_from_file_location(
        "official_simclr_tf2_data_util", OFFICIAL_DATA_UTIL
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_data_util():
    """The official `tf2/data_util.py` as a module; skips the calling test
    when it is not there."""
    if not OFFICIAL_DATA_UTIL.is_file():
        pytest.skip(f"the official SimCLR code is absent: {OFFICIAL_DATA_UTIL}")
    return _load_official_data_util()


class _BoxRecordingTensorFlow:
    """TensorFlow as the official module sees it, except that
    `tf.image.crop_to_bounding_box` records the box it is given: the box is
    then the official code's own, not a re-reading of it."""

    def __init__(self, tf):
        self._tf = tf
        self.boxes = []
        recorder = self

        class Image:
            def __getattr__(self, name):
                return getattr(tf.image, name)

            def crop_to_bounding_box(self, image, *box):
                recorder.boxes.append(tuple(int(value) for value in box))
                return tf.image.crop_to_bounding_box(image, *box)

        self.image = Image()

    def __getattr__(self, name):
        return getattr(self._tf, name)


def _official_center_crop_one(image, height, width, crop_proportion):
    """`data_util.center_crop` of one float32 image, and the box it cut
    `(top, left, crop_height, crop_width)`."""
    module = official_data_util()
    tf = module.tf
    recording = _BoxRecordingTensorFlow(tf)
    module.tf = recording
    try:
        output = module.center_crop(
            tf.constant(image, tf.float32), height, width, crop_proportion
        )
    finally:
        module.tf = tf
    (box,) = recording.boxes
    return output.numpy(), box


def official_crop_box(image_height, image_width, height, width, proportion):
    """`(top, left, crop_height, crop_width)` that the official
    `center_crop` cuts from an `image_height` x `image_width` image."""
    image = np.zeros((image_height, image_width, 1), "float32")
    _, box = _official_center_crop_one(image, height, width, proportion)
    return box


def official_center_crop(
    images,
    height,
    width,
    crop_proportion=0.875,
    method="bicubic",
    value_range=(0, 255),
):
    """The official evaluation view of a batch of images, float32 NumPy.

    `data_util.center_crop` of each image (bicubic), then clipped to
    `value_range` as `preprocess_for_eval` clips to `[0, 1]`. Another
    `method` resizes the official box with `tf.image.resize(method=...)`
    instead (to show that a test can tell the two apart).
    """
    import tensorflow as tf

    outputs = []
    for image in np.asarray(images, "float32"):
        output, box = _official_center_crop_one(
            image, height, width, crop_proportion
        )
        if method != "bicubic":
            crop = tf.image.crop_to_bounding_box(image, *box)
            output = tf.image.resize(crop, (height, width), method=method)
            output = output.numpy()
        outputs.append(output)
    return np.clip(np.stack(outputs), *value_range).astype("float32")


def whole_image_resize(images, height, width):
    """`tf.image.resize` of the whole images (bilinear, its defaults)."""
    import tensorflow as tf

    images = tf.constant(np.asarray(images, "float32"))
    return tf.image.resize(images, (height, width)).numpy()
