import importlib.util
import math
import os
import pathlib
import sys
import types

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ProjectionHead
from keras_simclr.models import ResNet
from keras_simclr.optimizers import DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY
from keras_simclr.optimizers import LARS
from keras_simclr.optimizers import WarmupCosineDecay
from tests.testing import run_serialization_test


def reference_lars(
    weights,
    gradients,
    learning_rates,
    momentum,
    weight_decay,
    trust_coefficient,
    nesterov,
    classic_momentum,
    decay,
    adapt,
):
    """google-research/simclr tf2/lars_optimizer.py, in float64 NumPy.

    Returns the weights and the momentum buffer after one step per gradient.
    """

    def trust_ratio(w, d):
        w_norm, d_norm = np.linalg.norm(w), np.linalg.norm(d)
        if w_norm > 0 and d_norm > 0:
            return trust_coefficient * w_norm / d_norm
        return 1.0

    w = weights.astype(np.float64)
    v = np.zeros_like(w)
    for g, lr in zip(gradients, learning_rates):
        g = g.astype(np.float64)
        if decay:
            g = g + weight_decay * w
        if classic_momentum:
            scaled_lr = lr * (trust_ratio(w, g) if adapt else 1.0)
            v = momentum * v + scaled_lr * g
            update = momentum * v + scaled_lr * g if nesterov else v
            w = w - update
        else:
            v = momentum * v + g
            update = momentum * v + g if nesterov else v
            scaled_lr = lr * (trust_ratio(w, update) if adapt else 1.0)
            w = w - scaled_lr * update
    return w, v


def reference_warmup_cosine(step, learning_rate, total_steps, warmup_steps):
    if step < warmup_steps:
        return learning_rate * step / warmup_steps
    progress = min(step - warmup_steps, total_steps - warmup_steps)
    progress /= total_steps - warmup_steps
    return learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def make_variables(rng):
    """A kernel (adapted, decayed) and a bias and BN scale (both excluded)."""
    with keras.name_scope("block1_conv"):
        kernel = keras.Variable(
            rng.normal(size=(3, 3, 4, 5)).astype("float32"), name="kernel"
        )
        bias = keras.Variable(rng.normal(size=(5,)).astype("float32"), name="bias")
    with keras.name_scope("block1_bn"):
        gamma = keras.Variable(
            (1 + 0.1 * rng.normal(size=(5,))).astype("float32"), name="gamma"
        )
    return [kernel, bias, gamma]


NUM_STEPS = 5


@pytest.mark.parametrize(
    "classic_momentum, nesterov",
    [(True, False), (True, True), (False, False), (False, True)],
)
@pytest.mark.parametrize("use_schedule", [False, True])
def test_matches_official_lars(classic_momentum, nesterov, use_schedule):
    rng = np.random.default_rng(0)
    variables = make_variables(rng)
    initial = [ops.convert_to_numpy(v) for v in variables]
    # Gradients of varied scale, so that the trust ratio differs per step.
    gradients = [
        [rng.normal(size=v.shape).astype("float32") * 10.0**step for v in initial]
        for step in range(NUM_STEPS)
    ]
    # Large weight decay and trust coefficient, so that both change the
    # result well beyond the tolerance (decoupled decay applied a second
    # time would fail this test).
    momentum, weight_decay, trust_coefficient = 0.9, 0.05, 0.02
    if use_schedule:
        learning_rate = WarmupCosineDecay(0.8, total_steps=4, warmup_steps=2)
        learning_rates = [
            reference_warmup_cosine(step, 0.8, 4, 2) for step in range(NUM_STEPS)
        ]
    else:
        learning_rate = 0.5
        learning_rates = [0.5] * NUM_STEPS
    optimizer = LARS(
        learning_rate,
        momentum=momentum,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
        nesterov=nesterov,
        classic_momentum=classic_momentum,
    )
    for step_gradients in gradients:
        optimizer.apply_gradients(
            zip([ops.convert_to_tensor(g) for g in step_gradients], variables)
        )
    assert int(ops.convert_to_numpy(optimizer.iterations)) == NUM_STEPS

    for index, (variable, decayed) in enumerate(
        zip(variables, [True, False, False])
    ):
        expected_w, expected_v = reference_lars(
            initial[index],
            [g[index] for g in gradients],
            learning_rates,
            momentum,
            weight_decay,
            trust_coefficient,
            nesterov,
            classic_momentum,
            decay=decayed,
            adapt=decayed,
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(variable), expected_w, rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(optimizer.momentums[index]),
            expected_v,
            rtol=1e-5,
            atol=1e-6,
        )
        # The reference differs from plain momentum SGD on the kernel only.
        plain_w, _ = reference_lars(
            initial[index],
            [g[index] for g in gradients],
            learning_rates,
            momentum,
            weight_decay,
            trust_coefficient,
            nesterov,
            classic_momentum,
            decay=False,
            adapt=False,
        )
        assert np.allclose(plain_w, expected_w) != decayed


def test_excluded_variable_is_plain_momentum_sgd():
    # Classic momentum without adaptation or decay: v = m v + lr g, w -= v.
    with keras.name_scope("dense"):
        bias = keras.Variable(np.array([1.0, -2.0], "float32"), name="bias")
    optimizer = LARS(0.1, momentum=0.5, weight_decay=0.1)
    gradient = ops.convert_to_tensor(np.array([1.0, 2.0], "float32"))
    for _ in range(3):
        optimizer.apply_gradients([(gradient, bias)])
    # Velocities 0.1 g, 0.15 g, 0.175 g: w = w0 - 0.425 g.
    np.testing.assert_allclose(
        ops.convert_to_numpy(bias), [1.0 - 0.425, -2.0 - 0.85], rtol=1e-6
    )


def test_zero_weights_give_trust_ratio_one():
    kernel = keras.Variable(np.zeros((4, 3), "float32"), name="kernel")
    gradient = np.full((4, 3), 2.0, "float32")
    optimizer = LARS(0.1, weight_decay=1e-4)
    optimizer.apply_gradients([(ops.convert_to_tensor(gradient), kernel)])
    # ||w|| = 0: an unscaled SGD step, -lr * g.
    np.testing.assert_allclose(ops.convert_to_numpy(kernel), -0.1 * gradient)


@pytest.mark.parametrize("classic_momentum", [True, False])
def test_zero_gradient_keeps_weights_finite(classic_momentum):
    weights = np.arange(1.0, 7.0, dtype="float32").reshape(2, 3)
    kernel = keras.Variable(weights, name="kernel")
    optimizer = LARS(0.1, weight_decay=0.0, classic_momentum=classic_momentum)
    for _ in range(2):
        optimizer.apply_gradients([(ops.zeros((2, 3)), kernel)])
    # ||g|| = 0: trust ratio 1 and a zero update, not 0 / 0.
    np.testing.assert_array_equal(ops.convert_to_numpy(kernel), weights)


def test_zero_gradient_with_weight_decay_closed_form():
    # g = wd * w, so the trust ratio is eta / wd and the step lr * eta * w.
    weights = np.arange(1.0, 7.0, dtype="float32").reshape(2, 3)
    kernel = keras.Variable(weights, name="kernel")
    optimizer = LARS(0.5, momentum=0.0, weight_decay=1e-3, trust_coefficient=0.01)
    optimizer.apply_gradients([(ops.zeros((2, 3)), kernel)])
    np.testing.assert_allclose(
        ops.convert_to_numpy(kernel), weights * (1 - 0.5 * 0.01), rtol=1e-6
    )


def test_default_patterns_exclude_exactly_batch_norm_and_biases():
    encoder = ResNet(18, cifar_stem=True, input_shape=(8, 8, 3))
    head = ProjectionHead(name="projection_head")
    head.build((None, 512))
    others = [
        keras.layers.Dense(3),
        keras.layers.Conv2D(3, 3),
        keras.layers.BatchNormalization(),
        keras.layers.LayerNormalization(),
        keras.layers.Dense(3, name="debias_beta_gamma"),
    ]
    for layer in others:
        layer.build((None, 4, 4, 4) if "conv" in layer.name else (None, 4))
    variables = (
        encoder.trainable_weights
        + head.trainable_weights
        + [w for layer in others for w in layer.trainable_weights]
    )
    optimizer = LARS(0.1, weight_decay=1e-6)
    counts = {"kernel": 0, "gamma": 0, "beta": 0, "bias": 0}
    for variable in variables:
        kind = variable.path.split("/")[-1]
        counts[kind] += 1
        excluded = kind != "kernel"
        assert optimizer.uses_weight_decay(variable) is not excluded, variable.path
        assert optimizer.uses_layer_adaptation(variable) is not excluded, (
            variable.path
        )
    # ResNet-18: 1 + 16 + 3 convolutions and as many batch norms; the head:
    # 2 Dense and 2 batch norms, the last without beta.
    assert counts == {
        "kernel": 20 + 2 + 3,
        "gamma": 20 + 2 + 2,
        "beta": 20 + 1 + 2,
        "bias": 3,
    }
    for path in [
        "resnet/group1_block1_bn1/gamma",
        "projection_head/batch_norm_0/beta",
        "dense/bias",
        "rms_normalization/scale",
    ]:
        assert not optimizer.uses_weight_decay(path), path
    for path in ["bias_proj/kernel", "gamma/kernel", "projection_head/dense_1/kernel"]:
        assert optimizer.uses_layer_adaptation(path), path


def test_defaults_exclude_the_probe():
    # The paper's decay; the online probe left to plain momentum SGD, with
    # no decay (see `test_probe_against_the_official_supervised_head`).
    optimizer = LARS(0.3)
    assert optimizer.weight_decay == pytest.approx(1e-6)
    for path in [
        "linear_probe/kernel",
        "linear_probe/bias",
        "simclr_pretrainer/linear_probe/kernel",
    ]:
        assert not optimizer.uses_weight_decay(path), path
        assert not optimizer.uses_layer_adaptation(path), path
    for path in ["not_linear_probe/kernel", "projection_head/dense_0/kernel"]:
        assert optimizer.uses_weight_decay(path), path
        assert optimizer.uses_layer_adaptation(path), path


OFFICIAL_TF2 = (
    pathlib.Path(__file__).resolve().parents[2].parent
    / "shared"
    / "oracles"
    / "google-research-simclr"
    / "tf2"
)


def official_model_module():
    """The official `tf2/model.py` (its `add_weight_decay`), loaded under
    a private name; skips the test when the official code is absent."""
    path = OFFICIAL_TF2 / "model.py"
    if not path.is_file():
        pytest.skip(f"the official SimCLR code is absent: {path}")
    helpers = ("data_util", "lars_optimizer", "resnet")
    saved = {name: sys.modules.get(name) for name in helpers}
    sys.path.insert(0, str(OFFICIAL_TF2))
    try:
        spec = importlib.util.spec_from_file_location(
            "official_simclr_tf2_model", path
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(OFFICIAL_TF2))
        # The official modules' plain names stay out of the test session.
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


def test_probe_against_the_official_supervised_head():
    """The official code keeps `head_supervised` out of LARS's decay and
    trust ratio, and its `add_weight_decay` adds `weight_decay *
    l2_loss(kernel)` for the head's kernel to the loss: the official head's
    kernel IS decayed (coupled, no trust ratio), its bias is not. The
    default LARS leaves the probe undecayed (one step differs by exactly
    `lr * weight_decay * w`); the configuration of LARS's docstring gives
    the official step."""
    import tensorflow as tf

    official = official_model_module()
    learning_rate, weight_decay, momentum = 0.1, 0.5, 0.9
    official.FLAGS = types.SimpleNamespace(
        optimizer="lars", weight_decay=weight_decay
    )
    rng = np.random.default_rng(3)
    kernel_0 = rng.normal(size=(5, 3))
    bias_0 = rng.normal(size=(3,))
    kernel_gradient = rng.normal(size=(5, 3))
    bias_gradient = rng.normal(size=(3,))
    head = [
        tf.Variable(kernel_0, name="head_supervised/linear_layer/kernel"),
        tf.Variable(bias_0, name="head_supervised/linear_layer/bias"),
    ]
    with tf.GradientTape() as tape:
        regulariser = official.add_weight_decay(
            types.SimpleNamespace(trainable_variables=head),
            adjust_per_optimizer=True,
        )
    kernel_l2, bias_l2 = tape.gradient(regulariser, head)
    assert bias_l2 is None
    np.testing.assert_allclose(
        kernel_l2.numpy(), weight_decay * kernel_0, rtol=1e-12
    )
    # The official LARSOptimizer step of an excluded variable (its
    # `exclude_from_weight_decay` holds "head_supervised" and "bias").
    official_step = {}
    for name, start, gradient in (
        ("kernel", kernel_0, kernel_gradient + kernel_l2.numpy()),
        ("bias", bias_0, bias_gradient),
    ):
        official_step[name], _ = reference_lars(
            start,
            [gradient],
            [learning_rate],
            momentum,
            weight_decay,
            0.001,
            nesterov=False,
            classic_momentum=True,
            decay=False,
            adapt=False,
        )

    def probe_step(optimizer):
        with keras.name_scope("linear_probe"):
            kernel = keras.Variable(kernel_0.astype("float32"), name="kernel")
            bias = keras.Variable(bias_0.astype("float32"), name="bias")
        optimizer.apply_gradients(
            [
                (ops.convert_to_tensor(kernel_gradient, "float32"), kernel),
                (ops.convert_to_tensor(bias_gradient, "float32"), bias),
            ]
        )
        return ops.convert_to_numpy(kernel), ops.convert_to_numpy(bias)

    kernel, bias = probe_step(
        LARS(learning_rate, momentum=momentum, weight_decay=weight_decay)
    )
    np.testing.assert_allclose(bias, official_step["bias"], rtol=1e-5)
    np.testing.assert_allclose(
        kernel, kernel_0 - learning_rate * kernel_gradient, rtol=1e-5
    )
    np.testing.assert_allclose(
        official_step["kernel"] - kernel,
        -learning_rate * weight_decay * kernel_0,
        atol=1e-5,
    )
    kernel, bias = probe_step(
        LARS(
            learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
            exclude_from_weight_decay=(
                r"(?:^|/)bias$",
                r"(?:^|/)(?:gamma|beta|scale)$",
            ),
            exclude_from_layer_adaptation=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY,
        )
    )
    np.testing.assert_allclose(kernel, official_step["kernel"], rtol=1e-5)
    np.testing.assert_allclose(bias, official_step["bias"], rtol=1e-5)


def test_probe_of_a_pretrainer_is_plain_momentum_sgd():
    # The probe of a real pretrainer: one step equals -lr * g (momentum
    # buffer empty, no decay, no trust ratio), whatever the weight norm.
    import keras_simclr
    from tests.testing import tiny_encoder

    pretrainer = keras_simclr.models.SimCLRPretrainer(
        tiny_encoder(), num_classes=3
    )
    pretrainer.build((None, 8, 8, 3))
    probe = pretrainer.probe
    optimizer = LARS(0.1, weight_decay=0.5)
    optimizer.build(probe.trainable_variables)
    kernel = probe.kernel
    kernel.assign(np.full(kernel.shape, 3.0, "float32"))
    gradient = np.full(kernel.shape, 0.25, "float32")
    optimizer.apply_gradients([(ops.convert_to_tensor(gradient), kernel)])
    np.testing.assert_allclose(
        ops.convert_to_numpy(kernel), 3.0 - 0.1 * gradient, rtol=1e-6
    )


def test_exclusion_arguments():
    optimizer = LARS(0.1, weight_decay=1e-6, exclude_from_weight_decay="linear_probe")
    assert optimizer.exclude_from_weight_decay == ("linear_probe",)
    # None: layer adaptation follows the weight-decay exclusions.
    assert not optimizer.uses_layer_adaptation("linear_probe/kernel")
    assert optimizer.uses_layer_adaptation("stem_bn/gamma")

    optimizer = LARS(
        0.1,
        weight_decay=1e-6,
        exclude_from_weight_decay=["bias$"],
        exclude_from_layer_adaptation=[],
    )
    assert not optimizer.uses_weight_decay("dense/bias")
    assert optimizer.uses_layer_adaptation("dense/bias")

    # No weight decay at all: nothing is decayed, adaptation is unchanged.
    optimizer = LARS(0.1, weight_decay=0.0)
    assert not optimizer.uses_weight_decay("dense/kernel")
    assert optimizer.uses_layer_adaptation("dense/kernel")
    assert not optimizer.uses_layer_adaptation("dense/bias")
    assert optimizer.exclude_from_weight_decay == DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY


def test_config_round_trip():
    optimizer = LARS(
        WarmupCosineDecay(1.2, total_steps=100, warmup_steps=10),
        momentum=0.8,
        weight_decay=1e-6,
        trust_coefficient=0.002,
        nesterov=True,
        classic_momentum=False,
        exclude_from_weight_decay=["bias", "batch_norm"],
        exclude_from_layer_adaptation=("bias",),
        global_clipnorm=1.0,
        name="pretrain_lars",
    )
    revived = run_serialization_test(optimizer)
    config = revived.get_config()
    assert config["exclude_from_weight_decay"] == ["bias", "batch_norm"]
    assert config["exclude_from_layer_adaptation"] == ["bias"]
    assert config["global_clipnorm"] == 1.0
    assert config["name"] == "pretrain_lars"
    assert config["learning_rate"]["config"] == {
        "learning_rate": 1.2,
        "total_steps": 100,
        "warmup_steps": 10,
        "alpha": 0.0,
    }
    defaults = run_serialization_test(LARS(0.3)).get_config()
    assert defaults["exclude_from_layer_adaptation"] is None
    assert defaults["exclude_from_weight_decay"] == list(
        DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY
    )
    assert defaults["learning_rate"] == pytest.approx(0.3)


def test_model_fit_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(2),
        ]
    )
    optimizer = LARS(
        WarmupCosineDecay(0.5, total_steps=10, warmup_steps=0),
        weight_decay=1e-4,
    )
    model.compile(optimizer=optimizer, loss="mse")
    before = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert all(not np.allclose(b, a) for b, a in zip(before, after))

    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, LARS)
    assert restored.optimizer.get_config() == optimizer.get_config()
    for expected, actual in zip(optimizer.variables, restored.optimizer.variables):
        np.testing.assert_allclose(
            ops.convert_to_numpy(actual), ops.convert_to_numpy(expected)
        )
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(model(x)), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": "0.9"}, "momentum"),
        ({"weight_decay": -1e-6}, "weight_decay"),
        ({"weight_decay": None}, "weight_decay"),
        ({"trust_coefficient": 0.0}, "trust_coefficient"),
        ({"nesterov": 1}, "nesterov"),
        ({"classic_momentum": None}, "classic_momentum"),
        ({"exclude_from_weight_decay": ["bias", 3]}, "exclude_from_weight_decay"),
        ({"exclude_from_weight_decay": "bias("}, "exclude_from_weight_decay"),
        ({"exclude_from_layer_adaptation": "[gamma"}, "exclude_from_layer_adaptation"),
        ({"exclude_from_layer_adaptation": {"bias"}}, "exclude_from_layer_adaptation"),
    ],
)
def test_rejects_bad_arguments(kwargs, argument):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=argument):
        LARS(**kwargs)
