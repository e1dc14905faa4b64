"""Writes tiny image files of every supported format, without Pillow."""

import struct

import numpy as np
import tensorflow as tf


def encode_bmp(image):
    """A 24-bit uncompressed BMP of a uint8 RGB image (H, W, 3)."""
    height, width, _ = image.shape
    row_bytes = (width * 3 + 3) // 4 * 4
    pixels = b"".join(
        image[row, :, ::-1].tobytes().ljust(row_bytes, b"\0")
        for row in range(height - 1, -1, -1)
    )
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0
    )
    return header + info + pixels


def encode_gif(color):
    """A 1x1 GIF whose one pixel has the RGB `color`."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
        + bytes(color)
        + b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def write_image(path, image):
    """Writes the uint8 RGB `image` in the format of `path`'s extension."""
    image = np.asarray(image, dtype="uint8")
    extension = str(path).lower().rsplit(".", 1)[-1]
    if extension == "png":
        data = tf.io.encode_png(image).numpy()
    elif extension in ("jpg", "jpeg"):
        data = tf.io.encode_jpeg(image, quality=100).numpy()
    elif extension == "bmp":
        data = encode_bmp(image)
    elif extension == "gif":
        data = encode_gif(image[0, 0])
    else:
        raise ValueError(f"No encoder for {path}")
    with open(path, "wb") as file:
        file.write(data)


def solid(height, width, color):
    return np.broadcast_to(np.asarray(color, "uint8"), (height, width, 3)).copy()
