"""The generic checks of `keras_simclr._validation`, on any backend.

Every public entry point refuses a bad argument through these functions,
with the message "`name` must be ... Received: name=value".
"""

import math
import re

import keras
import numpy as np
import pytest

from keras_simclr import _data_checks
from keras_simclr import _validation


def refused(check, *args, **kwargs):
    """The message of the ValueError `check(*args, **kwargs)` raises."""
    with pytest.raises(ValueError) as raised:
        check(*args, **kwargs)
    return str(raised.value)


def assert_names(message, name, value):
    """The house format: the argument in backquotes, then what it received."""
    assert message.startswith(f"`{name}` must be ")
    assert message.endswith(f"Received: {name}={value!r}")


# === Integers ===


@pytest.mark.parametrize(
    "value", [0, -1, 1.0, 2.5, True, False, np.bool_(True), "3", None, [1]]
)
def test_check_int_refuses_non_positive_and_non_integers(value):
    message = refused(_validation.check_int, value, "steps")
    assert_names(message, "steps", value)
    assert "a positive integer" in message


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(200)])
def test_check_int_accepts_integers_as_python_ints(value):
    result = _validation.check_int(value, "steps")
    assert result == value and type(result) is int


def test_check_int_bounds_are_inclusive():
    assert _validation.check_int(0, "n", minimum=0) == 0
    assert _validation.check_int(10, "n", minimum=0, maximum=10) == 10
    assert _validation.check_int(-5, "n", minimum=None) == -5
    message = refused(_validation.check_int, -1, "n", minimum=0)
    assert "a non-negative integer" in message
    message = refused(_validation.check_int, 11, "n", minimum=0, maximum=10)
    assert "an integer in [0, 10]" in message
    message = refused(_validation.check_int, 1, "n", minimum=2)
    assert "an integer >= 2" in message


def test_check_int_none_only_where_allowed():
    assert _validation.check_int(None, "n", allow_none=True) is None
    message = refused(_validation.check_int, None, "n")
    assert_names(message, "n", None)
    message = refused(_validation.check_int, 0, "n", allow_none=True)
    assert "a positive integer or None" in message


def test_check_num_classes_and_seed():
    assert _validation.check_num_classes(2) == 2
    assert_names(refused(_validation.check_num_classes, 1), "num_classes", 1)
    assert "an integer >= 2" in refused(_validation.check_num_classes, True)
    assert _validation.check_num_classes(None, allow_none=True) is None
    assert _validation.check_seed(None) is None
    assert _validation.check_seed(-3) == -3
    message = refused(_validation.check_seed, 1.5)
    assert message == "`seed` must be an integer or None. Received: seed=1.5"


# === Numbers ===


@pytest.mark.parametrize(
    "value",
    [True, False, np.bool_(False), "0.1", None, math.nan, math.inf, -math.inf],
)
def test_check_number_refuses_bools_strings_nan_and_infinities(value):
    message = refused(_validation.check_number, value, "rate")
    assert_names(message, "rate", value)


def test_check_number_refuses_ints_too_large_for_a_float():
    assert "finite" in refused(_validation.check_number, 10**400, "rate")


@pytest.mark.parametrize("value", [0, 3, 0.5, np.float32(0.25), np.int64(2)])
def test_check_number_accepts_numbers_as_python_floats(value):
    result = _validation.check_number(value, "rate")
    assert result == pytest.approx(float(value)) and type(result) is float


@pytest.mark.parametrize(
    "kwargs, inside, outside, interval",
    [
        ({"minimum": 0, "maximum": 1}, [0, 1], [-0.1, 1.1], "[0, 1]"),
        (
            {"minimum": 0, "maximum": 1, "include_maximum": False},
            [0, 0.99],
            [1, 1.5],
            "[0, 1)",
        ),
        (
            {"minimum": 0, "maximum": 1, "include_minimum": False},
            [1e-9, 1],
            [0, -1],
            "(0, 1]",
        ),
        ({"minimum": 0.5}, [0.5, 1e9], [0.49], "[0.5, inf)"),
        ({"maximum": 2}, [-1e9, 2], [2.5], "(-inf, 2]"),
    ],
)
def test_check_number_bounds(kwargs, inside, outside, interval):
    for value in inside:
        assert _validation.check_number(value, "x", **kwargs) == value
    for value in outside:
        message = refused(_validation.check_number, value, "x", **kwargs)
        assert f"a number in {interval}" in message
        assert_names(message, "x", value)


def test_positive_and_non_negative_numbers():
    assert _validation.check_positive_number(1e-6, "t") == 1e-6
    message = refused(_validation.check_positive_number, 0.0, "t")
    assert message == "`t` must be a positive number. Received: t=0.0"
    assert _validation.check_non_negative_number(0, "w") == 0.0
    message = refused(_validation.check_non_negative_number, -1e-3, "w")
    assert message == "`w` must be a non-negative number. Received: w=-0.001"
    assert _validation.check_positive_number(None, "t", allow_none=True) is None
    message = refused(_validation.check_positive_number, -1, "t", allow_none=True)
    assert "a positive number or None" in message


def test_check_probability():
    assert _validation.check_probability(1, "p") == 1.0
    assert_names(refused(_validation.check_probability, 1.5, "p"), "p", 1.5)
    assert_names(refused(_validation.check_probability, True, "p"), "p", True)
    assert _validation.check_probability(None, "p", allow_none=True) is None


# === Other kinds ===


def test_check_bool():
    assert _validation.check_bool(np.bool_(True), "flag") is True
    for value in (1, 0, "True", None):
        message = refused(_validation.check_bool, value, "flag")
        assert message == f"`flag` must be True or False. Received: flag={value!r}"


def test_check_choice_matches_types():
    assert _validation.check_choice("v1", "impl", ("v1", "v2")) == "v1"
    assert _validation.check_choice(np.int64(3), "channels", (1, 3)) == 3
    assert _validation.check_choice(np.bool_(True), "l", ("auto", True)) is True
    assert _validation.check_choice(None, "d", (None, True, False)) is None
    for value, choices in [(True, (1, 3)), (1, (True, False)), (0, (None, False))]:
        refused(_validation.check_choice, value, "x", choices)
    message = refused(_validation.check_choice, "v3", "impl", ("v1", "v2"))
    assert message == "`impl` must be one of 'v1', 'v2'. Received: impl='v3'"


def test_check_interval():
    assert _validation.check_interval([1, 2], "s", minimum=0) == (1.0, 2.0)
    assert _validation.check_interval((1, 1), "s") == (1.0, 1.0)
    assert _validation.check_interval(None, "s", allow_none=True) is None
    for value, kwargs in [
        ((0, 1), {"minimum": 0, "include_minimum": False}),
        ((0.5, 2), {"minimum": 0, "maximum": 1}),
        ((2, 1), {}),
        ((1, 1), {"strictly_increasing": True}),
        ((0, math.inf), {}),
        ((0, math.nan), {}),
        ((True, 2), {}),
        ((1, 2, 3), {}),
        ("0-1", {}),
        (None, {}),
    ]:
        message = refused(_validation.check_interval, value, "s", **kwargs)
        assert_names(message, "s", value)
    message = refused(
        _validation.check_interval, (0, 1), "s", minimum=0, maximum=1,
        include_minimum=False,
    )
    assert "low <= high inside (0, 1]" in message
    message = refused(_validation.check_value_range, (1, 1), allow_none=True)
    assert message.startswith("`value_range` must be None or a tuple")
    assert "low < high" in message


def test_check_image_size():
    assert _validation.check_image_size(32) == (32, 32)
    assert _validation.check_image_size([24, np.int64(32)]) == (24, 32)
    assert _validation.check_image_size(None, allow_none=True) is None
    for value in (0, True, (32,), (32, 2.5), (32, 0), "32", None):
        message = refused(_validation.check_image_size, value)
        assert_names(message, "image_size", value)


def test_check_path(tmp_path):
    assert _validation.check_path(tmp_path / "a.png") == str(tmp_path / "a.png")
    assert _validation.check_path(None, allow_none=True) is None
    for value in ("", 3, b"a.png", None):
        assert_names(refused(_validation.check_path, value), "path", value)


def test_check_layer():
    layer = keras.layers.Identity()
    assert _validation.check_layer(layer, "encoder") is layer
    assert _validation.check_layer(None, "head", allow_none=True) is None
    message = refused(
        _validation.check_layer, "resnet", "encoder", description="an encoder"
    )
    assert message == "`encoder` must be an encoder. Received: encoder='resnet'"


# === Arrays ===


def test_class_ids():
    labels = _data_checks.class_ids([[0], [2], [1]], "y", num_images=3, num_classes=3)
    np.testing.assert_array_equal(labels, [0, 2, 1])
    assert labels.dtype == np.int64
    floats = _data_checks.class_ids(np.array([1.0, 0.0]), "y")
    np.testing.assert_array_equal(floats, [1, 0])
    empty = _data_checks.class_ids(np.zeros((0,), "int32"), "y", num_classes=2)
    assert empty.shape == (0,)


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        (np.eye(3), {}, "shape (N,). These look one-hot"),
        (
            np.zeros((4, 2), "int64"),
            {"dataset": True},
            "shape (num_images,). Received: y=array of shape (4, 2) and dtype int64",
        ),
        (np.arange(3), {"num_images": 4}, "4 images, but y has 3 labels for 4 images."),
        (np.array([0.5]), {}, "must hold integer class ids."),
        (np.array([0.5]), {}, "Received: y.dtype=float64 with non-integer values"),
        (np.zeros(2), {"dataset": True}, "class ids. Received: y=array of shape (2,)"),
        (np.array([True]), {"dataset": True}, "of shape (1,) and dtype bool"),
        (np.array(["a"]), {}, "must hold integer class ids"),
        (np.array([-1, 2]), {}, "non-negative class ids"),
        (np.array([2**31]), {}, "from 0 to 2**31 - 1"),
        (np.array([0, 3]), {"num_classes": 3}, "class ids in [0, 3) (num_classes=3)"),
    ],
)
def test_class_ids_refuses_bad_labels(labels, kwargs, message):
    error = refused(_data_checks.class_ids, labels, "y", **kwargs)
    assert error.startswith("`y` ") and message in error


def test_check_images():
    images = _data_checks.check_images(np.zeros((2, 4, 4, 1), "uint8"))
    assert images.shape == (2, 4, 4, 1)
    for shape in ((4, 4, 3), (1, 4, 4, 2), (0, 4, 4, 3), (1, 0, 4, 3)):
        images = np.zeros(shape)
        message = refused(_data_checks.check_images, images)
        assert message.startswith("`images` ") and f"shape {images.shape}" in message
    assert "must hold numbers" in refused(
        _data_checks.check_images, np.zeros((1, 4, 4, 3), bool)
    )


# === The images' value range, as reported (issue 25, item 5) ===


def scaled_images(low, high, seed=0):
    """A batch whose minimum and maximum are exactly `low` and `high`."""
    x = np.random.default_rng(seed).uniform(low, high, (4, 6, 6, 3))
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = low, high
    return x.astype("float32")


@pytest.mark.parametrize(
    "low, high, observed, remedy",
    [
        (0.0, 1.0, "holds images in [0, 1]", "Pass `value_range=(0, 1)`"),
        (-1.0, 1.0, "holds images in [-1, 1]", "Pass `value_range=(-1, 1)`"),
        (-3.0, 1.0, "has all its values at or below 1",
         "Pass the range the images are in as `value_range`"),
    ],
)
def test_scaled_down_images_are_reported_with_their_own_range(
    low, high, observed, remedy
):
    from keras_simclr.layers import data_layer

    x = scaled_images(low, high)
    message = refused(
        data_layer.check_value_range, keras.ops.convert_to_tensor(x), (0, 255), "x"
    )
    assert message.startswith(
        f"`x` {observed} but `value_range` is (0.0, 255.0), so they would be "
        f"read as nearly black images. {remedy}"
    ), message
    assert message.endswith(
        f"Received: value_range=(0.0, 255.0), x.min()={low:.6g}, "
        f"x.max()={high:.6g}"
    ), message
    # What declares the range is named, and where to pass another.
    message = refused(
        data_layer.check_value_range, x, (0, 255), "x", owner="the encoder"
    )
    assert "`value_range` is (0.0, 255.0) (declared by the encoder)" in message
    assert f"{remedy} to the encoder" in message


@pytest.mark.parametrize(
    "low, high, observed",
    [
        (0.0, 1.0, "holds images in [0, 1]"),
        (-1.0, 1.0, "holds images in [-1, 1]"),
        (-3.0, 1.0, "has all its values at or below 1"),
    ],
)
def test_a_tf_data_map_reports_scaled_down_images_with_their_own_range(
    low, high, observed
):
    import tensorflow as tf

    from keras_simclr.layers import SimCLRAugmentation
    from keras_simclr import _graph_checks

    x = scaled_images(low, high)
    augmentation = SimCLRAugmentation(6, preset="cifar", seed=0)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4).map(augmentation)
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        next(iter(dataset))
    error = _graph_checks.value_error(raised.value)
    assert isinstance(error, ValueError)
    assert str(error).startswith(
        f"`inputs` {observed} but `value_range` is (0.0, 255.0)"
    ), str(error)
    reported = [
        float(value)
        for value in re.findall(r"inputs\.m(?:in|ax)\(\)=([^,]+?)(?:,|$)", str(error))
    ]
    np.testing.assert_allclose(reported, [low, high], rtol=1e-6)
