import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.optimizers import WarmupCosineDecay
from keras_simclr.optimizers import scale_learning_rate
from tests.testing import run_serialization_test


def schedule_value(schedule, step):
    return float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(step, "int32"))))


def test_warmup_then_cosine_values():
    # 100 steps, 20 of them warmup: linear from 0 to 2.0, then a cosine over
    # the remaining 80 steps from 2.0 to 0.
    schedule = WarmupCosineDecay(2.0, total_steps=100, warmup_steps=20)
    expected = {
        0: 0.0,
        5: 2.0 * 5 / 20,
        19: 2.0 * 19 / 20,
        20: 2.0,
        40: 2.0 * 0.5 * (1 + math.cos(math.pi * 20 / 80)),
        60: 1.0,  # half way through the decay
        99: 2.0 * 0.5 * (1 + math.cos(math.pi * 79 / 80)),
        100: 0.0,
        250: 0.0,
    }
    for step, value in expected.items():
        assert schedule_value(schedule, step) == pytest.approx(
            value, rel=1e-6, abs=1e-7
        ), step


def test_matches_official_warmup_and_cosine_decay():
    # The official WarmUpAndCosineDecay, with its step counts from the data:
    # warmup = round(warmup_epochs * N // B), total = N * epochs // B + 1.
    num_examples, batch_size, epochs, warmup_epochs = 50_000, 512, 10, 2
    warmup_steps = int(round(warmup_epochs * num_examples // batch_size))
    total_steps = num_examples * epochs // batch_size + 1
    learning_rate = 0.3 * batch_size / 256
    schedule = WarmupCosineDecay(learning_rate, total_steps, warmup_steps)
    for step in [0, 1, warmup_steps - 1, warmup_steps, 500, total_steps, 2000]:
        if step < warmup_steps:
            expected = step / warmup_steps * learning_rate
        else:
            decay_steps = total_steps - warmup_steps
            fraction = min(step - warmup_steps, decay_steps) / decay_steps
            expected = learning_rate * 0.5 * (1 + math.cos(math.pi * fraction))
        assert schedule_value(schedule, step) == pytest.approx(
            expected, rel=1e-6, abs=1e-7
        ), step


def test_alpha_sets_the_final_rate():
    schedule = WarmupCosineDecay(1.0, total_steps=10, warmup_steps=0, alpha=0.1)
    assert schedule_value(schedule, 0) == pytest.approx(1.0)
    assert schedule_value(schedule, 5) == pytest.approx(0.55, rel=1e-6)
    assert schedule_value(schedule, 10) == pytest.approx(0.1, rel=1e-6)
    assert schedule_value(schedule, 50) == pytest.approx(0.1, rel=1e-6)


def test_warmup_over_all_steps():
    schedule = WarmupCosineDecay(1.0, total_steps=4, warmup_steps=4, alpha=0.5)
    values = [schedule_value(schedule, step) for step in range(7)]
    np.testing.assert_allclose(values, [0, 0.25, 0.5, 0.75, 0.5, 0.5, 0.5])


def test_accepts_python_ints_and_optimizer_iterations():
    schedule = WarmupCosineDecay(1.0, total_steps=10, warmup_steps=4)
    assert float(ops.convert_to_numpy(schedule(2))) == pytest.approx(0.5)
    optimizer = keras.optimizers.SGD(schedule)
    variable = keras.Variable(np.zeros((2,), "float32"))
    for _ in range(3):
        optimizer.apply_gradients([(ops.ones((2,)), variable)])
    # Rates 0, 0.25, 0.5 at iterations 0, 1, 2.
    np.testing.assert_allclose(ops.convert_to_numpy(variable), [-0.75, -0.75])
    assert float(ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.75)


def test_config_round_trip():
    schedule = WarmupCosineDecay(
        4.8, total_steps=31_300, warmup_steps=3_128, alpha=0.01
    )
    revived = run_serialization_test(schedule)
    assert revived.get_config() == {
        "learning_rate": 4.8,
        "total_steps": 31_300,
        "warmup_steps": 3_128,
        "alpha": 0.01,
    }
    assert schedule_value(revived, 10_000) == pytest.approx(
        schedule_value(schedule, 10_000)
    )


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": "1"}, "learning_rate"),
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": 10.0}, "total_steps"),
        ({"total_steps": True}, "total_steps"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_steps": 11}, "warmup_steps"),
        ({"warmup_steps": 2.5}, "warmup_steps"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, argument):
    kwargs = {"learning_rate": 1.0, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=argument):
        WarmupCosineDecay(**kwargs)


def test_scale_learning_rate_paper_values():
    # SimCLR, Appendix B.1: 0.3 x B / 256 and 0.075 x sqrt(B).
    assert scale_learning_rate(0.3, 4096) == pytest.approx(4.8)
    assert scale_learning_rate(0.075, 4096, scaling="sqrt") == pytest.approx(4.8)
    assert scale_learning_rate(0.3, 256) == pytest.approx(0.3)
    assert scale_learning_rate(0.3, 512, scaling="linear") == pytest.approx(0.6)
    assert scale_learning_rate(0.075, 256, scaling="sqrt") == pytest.approx(1.2)
    assert scale_learning_rate(1.0, np.int64(64), scaling="sqrt") == 8.0
    assert isinstance(scale_learning_rate(0.3, 1024), float)


@pytest.mark.parametrize(
    "args, argument",
    [
        ((0.3, 0), "batch_size"),
        ((0.3, -256), "batch_size"),
        ((0.3, 256.0), "batch_size"),
        ((0.0, 256), "base_learning_rate"),
        ((0.3, 256, "cosine"), "scaling"),
        ((0.3, 256, "Linear"), "scaling"),
    ],
)
def test_scale_learning_rate_rejects_bad_arguments(args, argument):
    with pytest.raises(ValueError, match=argument):
        scale_learning_rate(*args)
