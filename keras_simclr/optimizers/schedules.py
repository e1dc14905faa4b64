"""SimCLR's learning rate: batch-size scaling, linear warmup, cosine decay."""

import math
import numbers

import keras
from keras import ops

# Learning rate scalings of the SimCLR paper (Appendix B.1) and of the
# official `--learning_rate_scaling` flag.
_SCALINGS = ("linear", "sqrt")


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
    if not _is_number(base_learning_rate) or not base_learning_rate > 0:
        raise ValueError(
            "`base_learning_rate` must be a positive number. "
            f"Received: base_learning_rate={base_learning_rate!r}"
        )
    if not _is_integer(batch_size) or batch_size < 1:
        raise ValueError(
            "`batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if scaling == "linear":
        return float(base_learning_rate) * int(batch_size) / 256.0
    if scaling == "sqrt":
        return float(base_learning_rate) * math.sqrt(int(batch_size))
    raise ValueError(
        f"`scaling` must be one of {_SCALINGS}. Received: scaling={scaling!r}"
    )


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
        if not _is_number(learning_rate) or not learning_rate > 0:
            raise ValueError(
                "`learning_rate` must be a positive number. "
                f"Received: learning_rate={learning_rate!r}"
            )
        if not _is_integer(total_steps) or total_steps < 1:
            raise ValueError(
                "`total_steps` must be a positive integer. "
                f"Received: total_steps={total_steps!r}"
            )
        if not _is_integer(warmup_steps) or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                "`warmup_steps` must be an integer in [0, total_steps="
                f"{total_steps}]. Received: warmup_steps={warmup_steps!r}"
            )
        if not _is_number(alpha) or not 0 <= alpha <= 1:
            raise ValueError(
                f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}"
            )
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.alpha = float(alpha)

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
