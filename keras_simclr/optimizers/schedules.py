"""SimCLR's learning rate: batch-size scaling, linear warmup, cosine decay."""

import math

import keras
from keras import ops

from keras_simclr import _validation

# Learning rate scalings of the SimCLR paper (Appendix B.1) and of the
# official `--learning_rate_scaling` flag.
_SCALINGS = ("linear", "sqrt")


def scale_learning_rate(base_learning_rate, batch_size, scaling="linear"):
    """Scales a base learning rate with the batch size, as SimCLR does.

    - `"linear"`: `base_learning_rate * batch_size / 256`, the base being the
      learning rate per 256 images (SimCLR: 0.3, so 4.8 at batch size 4096).
    - `"sqrt"`: `base_learning_rate * sqrt(batch_size)` (SimCLR: 0.075, so
      4.8 at batch size 4096); the paper finds it better for small batches
      and long training.

    These are the `learning_rate_scaling` options of google-research/simclr.

    Args:
        base_learning_rate: positive float, the learning rate before scaling.
        batch_size: positive int, the number of images per step (not views).
        scaling: `"linear"` or `"sqrt"`.

    Returns:
        The scaled learning rate, a Python float.

    Raises:
        ValueError: for a non-positive learning rate or batch size, or an
            unknown `scaling`.

    Example:

    ```python
    scale_learning_rate(0.3, 4096)                  # 4.8
    scale_learning_rate(0.075, 4096, scaling="sqrt")  # 4.8
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix B.1.
    """
    base_learning_rate = _validation.check_positive_number(
        base_learning_rate, "base_learning_rate"
    )
    batch_size = _validation.check_int(batch_size, "batch_size")
    scaling = _validation.check_choice(scaling, "scaling", _SCALINGS)
    if scaling == "linear":
        return base_learning_rate * batch_size / 256.0
    return base_learning_rate * math.sqrt(batch_size)


@keras.saving.register_keras_serializable(package="keras_simclr")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0, then cosine decay: SimCLR's learning rate.

    For `step < warmup_steps` the rate grows linearly,
    `learning_rate * step / warmup_steps`. From `warmup_steps` to
    `total_steps` it follows a cosine from `learning_rate` down to
    `alpha * learning_rate`:

    ```python
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    cosine = 0.5 * (1 + cos(pi * progress))
    rate = learning_rate * ((1 - alpha) * cosine + alpha)
    ```

    and it stays at `alpha * learning_rate` after `total_steps`. With
    `alpha=0` this is `WarmUpAndCosineDecay` of google-research/simclr, which
    ends at 0.

    The official code counts steps from the data: `warmup_steps =
    round(warmup_epochs * num_examples // batch_size)` and `total_steps =
    num_examples * epochs // batch_size + 1`. With `fit`, use
    `epochs * steps_per_epoch` for `total_steps` (the optimizer's step counter
    starts at 0 and counts updates).

    Args:
        learning_rate: positive float, the peak rate, reached at the end of
            warmup; usually `scale_learning_rate(base, batch_size)`.
        total_steps: positive int, the number of steps of the whole schedule,
            warmup included.
        warmup_steps: int in `[0, total_steps]`, the steps of linear warmup
            (SimCLR: 10 epochs).
        alpha: float in `[0, 1]`, the final rate as a fraction of
            `learning_rate`.

    Call arguments:
        step: the optimizer step, an integer or float scalar (tensor).

    Returns:
        The learning rate, a float scalar tensor of dtype `floatx`.

    Raises:
        ValueError: if an argument is out of range, naming the argument.

    Example:

    ```python
    schedule = keras_simclr.optimizers.WarmupCosineDecay(
        learning_rate=4.8, total_steps=31_300, warmup_steps=3_128
    )
    optimizer = keras_simclr.optimizers.LARS(schedule, weight_decay=1e-6)
    ```

    References:
        - [Goyal et al., 2017](https://arxiv.org/abs/1706.02677), linear
          warmup for large batches.
        - [Loshchilov & Hutter, 2017](https://arxiv.org/abs/1608.03983), SGDR,
          cosine decay.
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Appendix B.1.
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, alpha=0.0):
        self.learning_rate = _validation.check_positive_number(
            learning_rate, "learning_rate"
        )
        self.total_steps = _validation.check_int(total_steps, "total_steps")
        self.warmup_steps = _validation.check_int(
            warmup_steps, "warmup_steps", minimum=0, maximum=self.total_steps
        )
        self.alpha = _validation.check_probability(alpha, "alpha")

    def __call__(self, step):
        dtype = keras.config.floatx()
        step = ops.cast(step, dtype)
        final = self.learning_rate * self.alpha
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps > 0:
            progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
            decayed = final + (self.learning_rate - final) * cosine
        else:
            decayed = ops.full_like(step, final)
        if self.warmup_steps == 0:
            return decayed
        warmup = self.learning_rate * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "alpha": self.alpha,
        }
