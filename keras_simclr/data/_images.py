"""Image decoding and resizing shared by the dataset sources (TensorFlow ops).

Everything here runs inside `tf.data` functions, so it is plain TensorFlow:
`tf.data` runs TensorFlow whatever the Keras backend.
"""

import sys

import tensorflow as tf

# The formats `tf.io.decode_image` reads that Keras's own
# `image_dataset_from_directory` accepts.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")


def decode_image(contents, channels):
    """Decodes JPEG, PNG, BMP or GIF (first frame) bytes to uint8 `(H, W, C)`.

    `channels` is 3 (RGB) or 1 (grayscale). Decoding is always to RGB first:
    the BMP and GIF decoders cannot give one channel themselves.
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if channels == 1:
        gray = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
        image = tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)
    return image


def resize_image(image, size, crop_to_aspect_ratio=True, interpolation="bilinear"):
    """Resizes a uint8 `(H, W, C)` image to `size`; returns uint8.

    With `crop_to_aspect_ratio`, the largest central region of the target
    aspect ratio is cut out first, so nothing is stretched (for a square
    target: the shorter side is resized to the target and the longer one
    centre-cropped). Otherwise the whole image is stretched to `size`. An
    image already of `size` is returned as it is.
    """
    height, width = size
    channels = image.shape[-1]
    shape = tf.shape(image)
    in_height, in_width = shape[0], shape[1]

    def crop_and_resize():
        cropped = image
        if crop_to_aspect_ratio:
            # Integer arithmetic, so a crop never exceeds the image.
            crop_height = tf.minimum(in_height, (in_width * height) // width)
            crop_width = tf.minimum(in_width, (in_height * width) // height)
            crop_height = tf.maximum(crop_height, 1)
            crop_width = tf.maximum(crop_width, 1)
            top = (in_height - crop_height) // 2
            left = (in_width - crop_width) // 2
            cropped = image[top : top + crop_height, left : left + crop_width]
        resized = tf.image.resize(
            cropped, (height, width), method=interpolation, antialias=True
        )
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    same_size = tf.logical_and(
        tf.equal(in_height, height), tf.equal(in_width, width)
    )
    resized = tf.cond(same_size, lambda: tf.cast(image, tf.uint8), crop_and_resize)
    resized.set_shape([height, width, channels])
    return resized


def base_names(paths):
    """The file name part of string tensors of paths (`/` or `\\` separated)."""
    return tf.strings.regex_replace(paths, r"^.*[/\\]", "")


def print_if(condition, *message, summarize=None):
    """Prints `message` to stderr when the scalar `condition` holds.

    Returns a boolean tensor to hang a control dependency on, so the print
    runs inside a `tf.data` function. stderr, not the TensorFlow log, so
    `TF_CPP_MIN_LOG_LEVEL` cannot hide it.
    """

    def report():
        with tf.control_dependencies(
            [tf.print(*message, output_stream=sys.stderr, summarize=summarize)]
        ):
            return tf.constant(True)

    return tf.cond(condition, report, lambda: tf.constant(False))
