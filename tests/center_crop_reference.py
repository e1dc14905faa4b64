"""The official SimCLR evaluation crop, written with `tf.image`, as the
reference of the tests of the evaluation transform.

`google-research/simclr` `data_util.center_crop`: a crop of
`crop_proportion` of the image, of the output's aspect ratio, at the offsets
`((H - crop_height) + 1) // 2`, `((W - crop_width) + 1) // 2`, resized with
`tf.image.resize` (bicubic), then clipped to the value range as
`preprocess_for_eval` clips to `[0, 1]`.
"""

import numpy as np


def official_crop_box(image_height, image_width, height, width, proportion):
    """`(top, left, crop_height, crop_width)` of the official centre crop."""
    aspect_ratio = height / width
    if aspect_ratio > image_width / image_height:
        crop_height = int(np.rint(proportion / aspect_ratio * image_width))
        crop_width = int(np.rint(proportion * image_width))
    else:
        crop_height = int(np.rint(proportion * image_height))
        crop_width = int(np.rint(proportion * aspect_ratio * image_height))
    top = ((image_height - crop_height) + 1) // 2
    left = ((image_width - crop_width) + 1) // 2
    return top, left, crop_height, crop_width


def official_center_crop(
    images,
    height,
    width,
    crop_proportion=0.875,
    method="bicubic",
    value_range=(0, 255),
):
    """The official evaluation view of a batch of images, float32 NumPy."""
    import tensorflow as tf

    images = np.asarray(images, "float32")
    top, left, crop_height, crop_width = official_crop_box(
        images.shape[1], images.shape[2], height, width, crop_proportion
    )
    crop = images[:, top : top + crop_height, left : left + crop_width]
    resized = tf.image.resize(tf.constant(crop), (height, width), method=method)
    return np.clip(resized.numpy(), *value_range).astype("float32")


def whole_image_resize(images, height, width):
    """`tf.image.resize` of the whole images (bilinear, its defaults)."""
    import tensorflow as tf

    images = tf.constant(np.asarray(images, "float32"))
    return tf.image.resize(images, (height, width)).numpy()
