import json

import keras
import numpy as np
import pytest

from keras_simclr.models.resnet import ResNet
from keras_simclr.models.resnet import SelectiveKernelMixing
from tests.testing import run_model_saving_test
from tests.testing import run_serialization_test

BLOCKS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
    200: ("bottleneck", [3, 24, 36, 3]),
}


def expected_trainable_params(
    depth, width=1, cifar_stem=False, sk_ratio=0.0, channels=None
):
    """Counts weights from the architecture's description, block by block.

    `channels` is `(stem, deep_stem_half, group_widths)`; by default the
    exact integer-width values `64 * width`, `32 * width` and
    `64 * width * 2**group`.
    """

    def bn(channels):
        return 2 * channels

    block, blocks = BLOCKS[depth]
    if channels is None:
        channels = (64 * width, 32 * width, [64 * width * 2**g for g in range(4)])
    stem, half, group_widths = channels
    if cifar_stem:
        total = 3 * 3 * 3 * stem + bn(stem)
    elif sk_ratio > 0:
        total = 3 * 3 * 3 * half + bn(half)
        total += 3 * 3 * half * half + bn(half)
        total += 3 * 3 * half * stem + bn(stem)
    else:
        total = 7 * 7 * 3 * stem + bn(stem)
    channels = stem
    for group, num_blocks in enumerate(blocks):
        filters = group_widths[group]
        for index in range(num_blocks):
            strides = 2 if group > 0 and index == 0 else 1
            if block == "basic":
                out = filters
                total += 9 * channels * filters + bn(filters)
                total += 9 * filters * filters + bn(filters)
            else:
                out = 4 * filters
                total += channels * filters + bn(filters)
                if sk_ratio > 0:
                    hidden = max(int(filters * sk_ratio), 32)
                    total += 9 * filters * 2 * filters + bn(2 * filters)
                    total += filters * hidden + bn(hidden)
                    total += hidden * 2 * filters
                else:
                    total += 9 * filters * filters + bn(filters)
                total += filters * out + bn(out)
            if strides != 1 or channels != out:
                total += channels * out + bn(out)
            channels = out
    return total


def count(weights):
    """Number of values in variables, or in shapes."""
    return sum(int(np.prod(getattr(w, "shape", w))) for w in weights)


def images(shape=(2, 32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("float32")


def randomize_weights(model, seed=0):
    """Random weights everywhere (zero-init gammas included), variances > 0."""
    rng = np.random.default_rng(seed)
    weights = []
    for variable in model.weights:
        if "variance" in variable.path:
            value = rng.uniform(0.5, 1.5, size=variable.shape)
        elif "gamma" in variable.path:
            value = rng.uniform(0.2, 0.6, size=variable.shape)
        else:
            fan_in = int(np.prod(variable.shape[:-1])) or 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=variable.shape)
        weights.append(value.astype("float32"))
    model.set_weights(weights)


# (kwargs, reference count): torchvision's ResNets without their `fc` layer,
# exact (trainable weights); the SimCLR v2 paper's encoders (Table 1), in
# millions. At width 1
# every selective-kernel bottleneck is 32 wide (the minimum), so the width-2
# SK case is the one that checks `sk_ratio` itself. Basic blocks with SK:
# `test_serialization_round_trip`.
PARAMETER_CASES = [
    (dict(depth=18), 11_176_512),
    (dict(depth=18, cifar_stem=True), 11_168_832),
    (dict(depth=34), 21_284_672),
    (dict(depth=50), 23_508_032),
    (dict(depth=50, sk_ratio=0.0625), 35e6),
]
# SimCLR v2's Table 1 up to ResNet-152 3x with selective kernels. These are
# built without allocating their weights (see `build_without_weights`), so
# they cost only the graph construction: a few seconds each on 2 cores.
PARAMETER_CASES += [
    (dict(depth=101), 42_500_160),
    (dict(depth=152), 58_143_808),
    (dict(depth=200), None),
    (dict(depth=101, sk_ratio=0.0625), 65e6),
    (dict(depth=152, sk_ratio=0.0625), 89e6),
    (dict(depth=50, width_multiplier=2), 94e6),
    (dict(depth=50, width_multiplier=2, sk_ratio=0.0625), 140e6),
    (dict(depth=101, width_multiplier=2), 170e6),
    (dict(depth=101, width_multiplier=2, sk_ratio=0.0625), 257e6),
    (dict(depth=152, width_multiplier=2), 233e6),
    (dict(depth=152, width_multiplier=2, sk_ratio=0.0625), 354e6),
    (dict(depth=152, width_multiplier=3, sk_ratio=0.0625), 795e6),
]


def build_without_weights(**kwargs):
    """Builds a ResNet whose variables have shapes but no values.

    In a `StatelessScope` that does not initialise, Keras defers every
    initializer, so a 795M-parameter model costs its graph construction only.
    `clear_session` afterwards drops the pending initializers, so no later
    scope initialises them.
    """
    with keras.StatelessScope(initialize_variables=False):
        model = ResNet(**kwargs)
        shapes = {
            "trainable": [w.shape for w in model.trainable_weights],
            "non_trainable": [w.shape for w in model.non_trainable_weights],
            "batch_norm": [
                w.shape
                for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)
                for w in layer.trainable_weights
            ]
            + [
                w.shape
                for layer in model.layers
                if isinstance(layer, SelectiveKernelMixing)
                for w in layer.reduce_bn.trainable_weights
            ],
            "output": tuple(model.output.shape),
            "feature_dim": model.feature_dim,
            # Output channels of every convolution and SK mixing layer.
            "filters": {
                layer.name: layer.filters
                for layer in model.layers
                if hasattr(layer, "filters")
            },
            "reduced_channels": {
                layer.name: layer.reduced_channels
                for layer in model.layers
                if isinstance(layer, SelectiveKernelMixing)
            },
        }
    keras.backend.clear_session()
    return shapes


def case_id(case):
    if isinstance(case, dict):
        return "-".join(f"{key}={value}" for key, value in case.items())
    return "ref"


def analytic_count(kwargs):
    return expected_trainable_params(
        kwargs["depth"],
        width=kwargs.get("width_multiplier", 1),
        cifar_stem=kwargs.get("cifar_stem", False),
        sk_ratio=kwargs.get("sk_ratio", 0.0),
    )


@pytest.mark.parametrize("kwargs, reference", PARAMETER_CASES, ids=case_id)
def test_parameter_counts(kwargs, reference):
    shapes = build_without_weights(**kwargs)
    trainable = count(shapes["trainable"])
    assert trainable == analytic_count(kwargs)
    if isinstance(reference, int):
        assert trainable == reference
    elif reference is not None:
        # The paper prints millions, rounded, of all the encoder's variables:
        # batch-norm moving statistics included. Trainable weights alone give
        # 232 and 353 for the two ResNet-152 2x rows (233 and 354 printed);
        # all variables match every row.
        everything = trainable + count(shapes["non_trainable"])
        assert round(everything / 1e6) == reference / 1e6
    # Moving mean and variance: one pair per batch-norm scale and offset.
    assert count(shapes["non_trainable"]) == count(shapes["batch_norm"])
    width = kwargs.get("width_multiplier", 1)
    expected_dim = (512 if kwargs["depth"] < 50 else 2048) * width
    assert shapes["output"] == (None, expected_dim)
    assert shapes["feature_dim"] == expected_dim


# Channels at fractional widths, worked out by hand from the rounding rule
# (nearest multiple of 8, at least 8, never more than 10% below the exact
# value): (stem, each of the two first convolutions of the SK deep stem,
# widths of the four groups). At 0.25 and 0.5 every count is exact:
# 64w, 32w and 64w * 2**group.
FRACTIONAL_CHANNELS = {
    0.25: (16, 8, (16, 32, 64, 128)),
    0.5: (32, 16, (32, 64, 128, 256)),
    # 6.4 -> 8 (the minimum), 12.8 -> 16, 25.6 -> 24 (down), 51.2 -> 48;
    # the deep stem's 3.2 -> 8 (the minimum).
    0.1: (8, 8, (8, 16, 24, 48)),
    # 19.2: the nearest multiple, 16, is more than 10% below, so 24;
    # 38.4 -> 40, 76.8 -> 80 (up), 153.6 -> 152 (down); the deep stem's 9.6:
    # 8 is more than 10% below, so 16.
    0.3: (24, 16, (24, 40, 80, 152)),
}

FRACTIONAL_CASES = (
    [dict(depth=depth, width_multiplier=0.25) for depth in BLOCKS]
    + [
        dict(depth=depth, width_multiplier=0.5, sk_ratio=0.0625)
        for depth in BLOCKS
    ]
    + [
        dict(depth=depth, width_multiplier=width, cifar_stem=True)
        for depth in (18, 50)
        for width in (0.25, 0.5)
    ]
    + [
        dict(depth=depth, width_multiplier=width, sk_ratio=0.0625)
        for depth in (18, 50)
        for width in (0.1, 0.3)
    ]
)


def expected_layer_channels(depth, width, cifar_stem=False, sk_ratio=0.0):
    """Output channels of every convolution (and SK mixing layer) by name."""
    stem, half, group_widths = FRACTIONAL_CHANNELS[width]
    block, blocks = BLOCKS[depth]
    if cifar_stem or sk_ratio == 0:
        filters = {"stem_conv": stem}
    else:
        filters = {"stem_conv1": half, "stem_conv2": half, "stem_conv3": stem}
    reduced = {}
    channels = stem
    for group, num_blocks in enumerate(blocks):
        width_of_group = group_widths[group]
        out = width_of_group if block == "basic" else 4 * width_of_group
        for index in range(num_blocks):
            prefix = f"group{group + 1}_block{index + 1}"
            filters[f"{prefix}_conv1"] = width_of_group
            filters[f"{prefix}_conv2"] = width_of_group
            if block == "bottleneck":
                filters[f"{prefix}_conv3"] = out
                if sk_ratio > 0:
                    filters[f"{prefix}_conv2"] = 2 * width_of_group
                    filters[f"{prefix}_sk_mixing"] = width_of_group
                    reduced[f"{prefix}_sk_mixing"] = max(
                        int(width_of_group * sk_ratio), 32
                    )
            if index == 0 and (group > 0 or channels != out):
                filters[f"{prefix}_shortcut_conv"] = out
            channels = out
    return filters, reduced


@pytest.mark.parametrize("kwargs", FRACTIONAL_CASES, ids=case_id)
def test_fractional_width_channels_match_table(kwargs):
    shapes = build_without_weights(**kwargs)
    width = kwargs["width_multiplier"]
    options = dict(
        cifar_stem=kwargs.get("cifar_stem", False),
        sk_ratio=kwargs.get("sk_ratio", 0.0),
    )
    filters, reduced = expected_layer_channels(kwargs["depth"], width, **options)
    assert shapes["filters"] == filters
    assert shapes["reduced_channels"] == reduced
    # Every weight, from the same table: input channels follow too.
    assert count(shapes["trainable"]) == expected_trainable_params(
        kwargs["depth"], channels=FRACTIONAL_CHANNELS[width], **options
    )
    last_group = FRACTIONAL_CHANNELS[width][2][-1]
    feature_dim = last_group if kwargs["depth"] < 50 else 4 * last_group
    assert shapes["output"] == (None, feature_dim)
    assert shapes["feature_dim"] == feature_dim


def test_fractional_width_forward_and_backward():
    # The SK variant's deep stem: its first two convolutions are 8 wide.
    model = ResNet(
        depth=18, width_multiplier=0.25, sk_ratio=0.0625, input_shape=(16, 16, 3)
    )
    feature_dim = 128
    # Non-zero gammas everywhere, so that every weight gets a gradient.
    randomize_weights(model)
    x = images((4, 16, 16, 3))
    features = keras.ops.convert_to_numpy(model(x, training=False))
    assert features.shape == (4, feature_dim)
    assert np.all(np.isfinite(features))
    assert features.min() >= 0.0 and features.max() > 0.0

    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    target = np.random.default_rng(1).normal(size=(4, feature_dim))
    loss = model.train_on_batch(x, target.astype("float32"))
    assert np.isfinite(loss)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    for variable, old, new in zip(model.trainable_weights, before, after):
        assert np.all(np.isfinite(new)), variable.path
        assert not np.array_equal(old, new), f"no gradient reached {variable.path}"


def test_fractional_width_round_trips(tmp_path):
    kwargs = dict(
        depth=18,
        width_multiplier=0.25,
        cifar_stem=True,
        input_shape=(8, 8, 3),
        sk_ratio=0.0625,
    )
    model = ResNet(**kwargs)
    config = model.get_config()
    assert config["width_multiplier"] == 0.25
    # Through JSON, as in a `.keras` file.
    revived = ResNet.from_config(json.loads(json.dumps(config)))
    assert revived.get_config() == config
    assert revived.width_multiplier == 0.25
    assert revived.feature_dim == model.feature_dim == 128
    assert [w.shape for w in revived.weights] == [w.shape for w in model.weights]
    run_serialization_test(model)
    randomize_weights(model)
    restored = run_model_saving_test(model, images((2, 8, 8, 3)), tmp_path)
    assert restored.get_config() == config


def test_integer_width_stays_an_integer_in_the_config():
    with keras.StatelessScope(initialize_variables=False):
        config = ResNet(depth=18, width_multiplier=2).get_config()
    keras.backend.clear_session()
    assert config["width_multiplier"] == 2
    assert isinstance(config["width_multiplier"], int)


def test_forward_pass_cifar_resnet18():
    model = ResNet(depth=18, cifar_stem=True)
    x = images()
    for training in (False, True):
        features = keras.ops.convert_to_numpy(model(x, training=training))
        assert features.shape == (2, 512)
        assert np.all(np.isfinite(features))
    # Post-ReLU global average: features are non-negative.
    assert features.min() >= 0.0


def test_imagenet_stem_spatial_sizes():
    model = ResNet(depth=18, input_shape=(32, 32, 3))
    sizes = [
        model.get_layer(name).output.shape[1]
        for name in (
            "stem_conv",
            "stem_pool",
            "group1_block2_out",
            "group2_block2_out",
            "group3_block2_out",
            "group4_block2_out",
        )
    ]
    assert sizes == [16, 8, 8, 4, 2, 1]


@pytest.mark.parametrize("size, expected", [(32, 16), (33, 17)])
def test_fixed_padding_output_size(size, expected):
    model = ResNet(depth=18, cifar_stem=True, input_shape=(size, size, 3))
    layer = model.get_layer("group2_block1_conv1")
    assert layer.strides == (2, 2)
    assert layer.padding == "valid"
    padding = model.get_layer("group2_block1_conv1_pad").padding
    assert padding == ((1, 1), (1, 1))
    assert layer.output.shape == (None, expected, expected, 128)


def test_fixed_padding_matches_numpy_reference():
    # The 7x7 stride-2 stem: pad 3 on each side, then a "valid" convolution.
    # Keras's "same" would pad (2, 3) on an even input.
    model = ResNet(depth=18, value_range=None, input_shape=(16, 16, 3))
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    x = images((2, 16, 16, 3)) / 255.0
    actual = keras.ops.convert_to_numpy(stem(x))
    kernel = keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel)
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
    expected = np.zeros((2, 8, 8, 64), dtype="float64")
    for i in range(8):
        for j in range(8):
            patch = padded[:, 2 * i : 2 * i + 7, 2 * j : 2 * j + 7, :]
            expected[:, i, j, :] = np.einsum("nhwc,hwcf->nf", patch, kernel)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=18, cifar_stem=True),
        dict(depth=50, sk_ratio=0.0625),
    ],
    ids=["resnet18_cifar", "resnet50_sk"],
)
def test_residual_branches_start_at_zero(kwargs):
    model = ResNet(**kwargs)
    adds = [layer for layer in model.layers if layer.name.endswith("_add")]
    expected_blocks = sum(BLOCKS[kwargs["depth"]][1])
    assert len(adds) == expected_blocks
    last_bn = "_bn2" if kwargs["depth"] < 50 else "_bn3"
    for add in adds:
        prefix = add.name[: -len("_add")]
        gamma = model.get_layer(prefix + last_bn).gamma
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(gamma), 0.0)
    # Each block's residual branch (the first input of its Add) is exactly
    # zero, so every block is the identity on its shortcut (then ReLU).
    # Batch statistics (training) for one, moving statistics for the other.
    probe = keras.Model(model.input, [add.input[0] for add in adds])
    branches = probe(images(), training=kwargs["depth"] >= 50)
    for branch in branches:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(branch), 0.0)


def test_value_range_rescaling():
    raw = ResNet(depth=18, cifar_stem=True, value_range=None)
    assert "rescaling" not in [layer.name for layer in raw.layers]
    pixels = ResNet(depth=18, cifar_stem=True, value_range=(0, 255))
    randomize_weights(raw)
    pixels.set_weights(raw.get_weights())
    rescaling = pixels.get_layer("rescaling")
    out = keras.ops.convert_to_numpy(rescaling(np.array([0.0, 127.5, 255.0])))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-7)
    x = images() / 255.0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pixels(x * 255.0, training=False)),
        keras.ops.convert_to_numpy(raw(x, training=False)),
        atol=1e-4,
        rtol=1e-4,
    )


def test_selective_kernel_mixing_matches_numpy_reference():
    filters, hidden = 4, 3
    layer = SelectiveKernelMixing(filters, hidden)
    layer.build((None, 5, 5, 2 * filters))
    rng = np.random.default_rng(0)
    layer.reduce_bn.moving_mean.assign(rng.normal(size=hidden))
    layer.reduce_bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=hidden))
    layer.reduce_bn.gamma.assign(rng.uniform(0.5, 2.0, size=hidden))
    layer.reduce_bn.beta.assign(rng.normal(size=hidden))
    x = rng.normal(size=(2, 5, 5, 2 * filters)).astype("float32")
    actual = keras.ops.convert_to_numpy(layer(x, training=False))

    w_reduce = keras.ops.convert_to_numpy(layer.reduce_conv.kernel)[0, 0]
    w_expand = keras.ops.convert_to_numpy(layer.expand_conv.kernel)[0, 0]
    bn = layer.reduce_bn
    a, b = x[..., :filters], x[..., filters:]
    pooled = (a + b).mean(axis=(1, 2))
    h = pooled @ w_reduce
    h = (h - keras.ops.convert_to_numpy(bn.moving_mean)) / np.sqrt(
        keras.ops.convert_to_numpy(bn.moving_variance) + 1e-5
    )
    h = np.maximum(
        h * keras.ops.convert_to_numpy(bn.gamma)
        + keras.ops.convert_to_numpy(bn.beta),
        0.0,
    )
    logits = h @ w_expand
    weight_a = 1.0 / (1.0 + np.exp(logits[:, filters:] - logits[:, :filters]))
    expected = (
        a * weight_a[:, None, None, :] + b * (1.0 - weight_a)[:, None, None, :]
    )
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)
    assert layer.compute_output_shape((2, 5, 5, 8)) == (2, 5, 5, filters)
    run_serialization_test(layer)


def test_serialization_round_trip():
    kwargs = dict(
        depth=18,
        width_multiplier=1,
        cifar_stem=False,
        input_shape=(32, 32, 3),
        value_range=(-1, 1),
        sk_ratio=0.0625,
        name="encoder",
    )
    model = ResNet(**kwargs)
    # Basic blocks with `sk_ratio > 0`: deep stem and ResNet-D shortcuts.
    assert count(model.trainable_weights) == analytic_count(kwargs)
    assert model.get_layer("group2_block1_shortcut_pool").strides == (2, 2)
    rescaling = model.get_layer("rescaling")
    out = keras.ops.convert_to_numpy(rescaling(np.array([-1.0, 0.0, 1.0])))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-7)
    revived = run_serialization_test(model)
    assert revived.get_config() == model.get_config()
    assert revived.name == "encoder"
    assert revived.image_shape == (32, 32, 3)
    assert revived.value_range == (-1.0, 1.0)
    assert count(revived.weights) == count(model.weights)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=18, cifar_stem=True),
        dict(depth=50, sk_ratio=0.0625, input_shape=(32, 32, 3)),
    ],
    ids=["resnet18_cifar", "resnet50_sk"],
)
def test_keras_file_round_trip(kwargs, tmp_path):
    model = ResNet(**kwargs)
    randomize_weights(model)
    restored = run_model_saving_test(model, images(), tmp_path, atol=1e-4)
    assert isinstance(restored, ResNet)
    assert restored.get_config() == model.get_config()


def test_dtype_policy():
    model = ResNet(depth=18, cifar_stem=True, dtype="mixed_bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("stem_conv").kernel.dtype == "float32"
    features = model(images((2, 16, 16, 3)))
    assert keras.backend.standardize_dtype(features.dtype) == "bfloat16"
    revived = ResNet.from_config(model.get_config())
    assert revived.get_layer("stem_conv").compute_dtype == "bfloat16"


def test_channels_last_whatever_the_global_data_format():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = ResNet(depth=18, cifar_stem=True, input_shape=(32, 32, 3))
    finally:
        keras.config.set_image_data_format(previous)
    assert model.get_layer("stem_conv").data_format == "channels_last"
    assert model(images()).shape == (2, 512)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(depth=19), "depth"),
        (dict(depth="50"), "depth"),
        (dict(depth=True), "depth"),
        (dict(depth=[50]), "depth"),
        (dict(width_multiplier=0), "width_multiplier"),
        (dict(width_multiplier=0.0), "width_multiplier"),
        (dict(width_multiplier=-1), "width_multiplier"),
        (dict(width_multiplier=-0.25), "width_multiplier"),
        (dict(width_multiplier=float("nan")), "width_multiplier"),
        (dict(width_multiplier=float("inf")), "width_multiplier"),
        (dict(width_multiplier=True), "width_multiplier"),
        (dict(width_multiplier=False), "width_multiplier"),
        (dict(width_multiplier="0.5"), "width_multiplier"),
        (dict(width_multiplier=None), "width_multiplier"),
        (dict(cifar_stem="yes"), "cifar_stem"),
        (dict(input_shape=(32, 32)), "input_shape"),
        (dict(input_shape=(1, 32, 32, 3)), "input_shape"),
        (dict(input_shape=(32, 32, None)), "input_shape"),
        (dict(input_shape=(0, 32, 3)), "input_shape"),
        (dict(input_shape="32x32x3"), "input_shape"),
        (dict(value_range=(255, 0)), "value_range"),
        (dict(value_range=(0, 1, 2)), "value_range"),
        (dict(value_range="uint8"), "value_range"),
        (dict(sk_ratio=-0.5), "sk_ratio"),
        (dict(sk_ratio=float("nan")), "sk_ratio"),
        (dict(sk_ratio="0.0625"), "sk_ratio"),
    ],
)
def test_invalid_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ResNet(**kwargs)


@pytest.mark.parametrize("value", [0, -2, -0.5, True, "0.25"])
def test_invalid_width_multiplier_message(value):
    with pytest.raises(ValueError, match="Received: width_multiplier="):
        ResNet(depth=18, width_multiplier=value)


def test_allowed_depths_listed_in_error():
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152, 200"):
        ResNet(depth=20)


# === The images' range, checked where the user gives them (issue 25) ===


@pytest.mark.parametrize("scale", ["[0, 1]", "[-1, 1]"])
def test_call_and_predict_refuse_images_on_another_scale(scale):
    import re

    import tensorflow as tf

    model = ResNet(
        depth=18, width_multiplier=0.125, cifar_stem=True, input_shape=(8, 8, 3)
    )
    x = images((4, 8, 8, 3))
    scaled = x / 255.0 if scale == "[0, 1]" else x / 127.5 - 1.0
    runs = {
        "inputs": lambda v: model(v, training=False),
        "x": lambda v: model.predict(v, batch_size=2, verbose=0),
    }
    for argument, run in runs.items():
        message = (
            f"`{argument}` holds images in {scale} but `value_range` is "
            "(0.0, 255.0) (declared by the ResNet)"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            run(scaled)
    for data in (
        tf.data.Dataset.from_tensor_slices(scaled).batch(2),
        keras.ops.convert_to_tensor(scaled),
    ):
        with pytest.raises(ValueError, match=re.escape(f"holds images in {scale}")):
            model.predict(data, verbose=0)
    with pytest.raises(ValueError, match=re.escape(f"holds images in {scale}")):
        model.predict_on_batch(scaled)
    with pytest.raises(ValueError, match="outside `value_range`"):
        model(x * 2.0)
    # Images in the range give the same features every way.
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(
        model.predict(x, batch_size=2, verbose=0), expected, rtol=1e-5, atol=1e-5
    )
    # A constant batch says nothing about the range (zeros build models).
    model(np.zeros((2, 8, 8, 3), "float32"))
    # The same images with the range declared, or with no range, are taken.
    for value_range in ((0, 1) if scale == "[0, 1]" else (-1, 1), None):
        other = ResNet(
            depth=18,
            width_multiplier=0.125,
            cifar_stem=True,
            input_shape=(8, 8, 3),
            value_range=value_range,
        )
        other(scaled)
        other.predict(scaled, verbose=0)


def test_inside_another_model_the_resnet_does_not_check():
    # The enclosing model's entry points check their data; a compiled step
    # pays nothing. A call inside a Keras model is not the user's.
    encoder = ResNet(
        depth=18, width_multiplier=0.125, cifar_stem=True, input_shape=(8, 8, 3)
    )
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(encoder(inputs)))
    assert model(images((2, 8, 8, 3)) / 255.0).shape == (2, 2)
