"""LARS, the layer-wise adaptive rate scaling optimizer of SimCLR."""

import numbers
import re

import keras
from keras import ops

from keras_simclr import _keras_compat
from keras_simclr import _validation

# Matched with `re.search` against `variable.path`, anchored on the last path
# component so that a layer whose name merely contains "bias" or "beta" (say
# "debias_proj/kernel") keeps its kernel adapted and decayed:
# - biases of Dense, Conv*, EinsumDense, MultiHeadAttention, ...;
# - the scale and shift of BatchNormalization, LayerNormalization and
#   GroupNormalization ("gamma", "beta") and of RMSNormalization ("scale").
# This is the official `['batch_normalization', 'bias', ...]` for Keras 3 paths,
# where batch-norm variables are "<layer>/gamma" and "<layer>/beta" whatever
# the layer is called (keras_simclr's ResNet names them "stem_bn",
# "group1_block1_bn1", ..., its ProjectionHead "batch_norm_0", ...);
# - every variable of `SimCLRPretrainer`'s online linear probe (the layer
#   "linear_probe"): with layer adaptation, a probe that starts at zero would
#   take tiny steps and `probe_accuracy` would understate the encoder. The
#   official code keeps its supervised head ("head_supervised") out of LARS
#   too, but decays the head's kernel through the loss instead (see the
#   class docstring); the probe here is not decayed.
DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = (
    r"(?:^|/)bias$",
    r"(?:^|/)(?:gamma|beta|scale)$",
    r"(?:^|/)linear_probe/",
)


def _validate_patterns(name, patterns):
    """Returns the patterns as a tuple of strings; `None` gives `()`."""
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not isinstance(patterns, (list, tuple)) or not all(
        isinstance(pattern, str) for pattern in patterns
    ):
        raise ValueError(
            f"`{name}` must be a regular expression (str), or a list or tuple "
            f"of them. Received: {name}={patterns!r}"
        )
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"`{name}` holds an invalid regular expression {pattern!r} "
                f"({error}). Received: {name}={patterns!r}"
            ) from None
    return tuple(patterns)


@keras.saving.register_keras_serializable(package="keras_simclr")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (LARS), as in the official SimCLR.

    Momentum SGD in which the step of each variable is rescaled by a "trust
    ratio" `trust_coefficient * ||w|| / ||g||`, the ratio of the norm of its
    weights to the norm of its gradient. Every layer then moves by about the
    same fraction of its weights per step, whatever the scale of its
    gradient, which keeps training stable at the very large learning rates
    that large batches need. Use it for batches of roughly 1024 images and
    more (SimCLR trains with 4096); for small batches, momentum SGD or Adam
    work as well.

    This is `LARSOptimizer` of google-research/simclr (`tf2/lars_optimizer.py`)
    step for step. For a variable `w` with gradient `g` and momentum buffer
    `v`, at learning rate `lr`:

    ```python
    if uses_weight_decay(w):
        g = g + weight_decay * w  # coupled: before the trust ratio
    # classic_momentum=True (default):
    ratio = trust_ratio(w, g) if uses_layer_adaptation(w) else 1
    v = momentum * v + lr * ratio * g
    update = momentum * v + lr * ratio * g if nesterov else v
    w = w - update
    # classic_momentum=False:
    v = momentum * v + g
    update = momentum * v + g if nesterov else v
    ratio = trust_ratio(w, update) if uses_layer_adaptation(w) else 1
    w = w - lr * ratio * update
    ```

    with `trust_ratio(w, d) = trust_coefficient * ||w|| / ||d||`, or 1 where
    `||w||` or `||d||` is 0. Norms are over the whole variable.

    Batch-norm parameters, biases and the online linear probe of
    `SimCLRPretrainer` (the layer `"linear_probe"`) are excluded from both
    weight decay and the trust ratio by default (plain momentum SGD for
    them). The exclusions are regular expressions searched (`re.search`) in
    each variable's `path`, such as `"group1_block1_bn1/gamma"` or
    `"projection_head/dense_0/kernel"`; the default
    `DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY` matches paths whose last component
    is `bias`, `gamma`, `beta` or `scale`, and every variable under a
    `linear_probe` layer, never another kernel. The decision is taken once
    per variable, in Python, so the update traces under `jit`.

    For batch-norm parameters and biases this is the official code's
    exclusion list. For the probe it differs: the official code excludes
    its supervised head (`"head_supervised"`) from LARS's decay and trust
    ratio as well, but `add_weight_decay` (`tf2/model.py`) then adds
    `weight_decay * ||kernel||^2 / 2` for the head's kernel (not its bias)
    to the loss, so the official head's kernel is decayed, with the same
    coupled L2 gradient `weight_decay * w` and no trust ratio, while the
    probe's kernel here is not decayed at all. At the paper's `1e-6` the
    difference is negligible for a monitor; to decay the probe as the
    official code decays its head, decay everything but biases and
    normalisation parameters and keep the probe out of layer adaptation
    only:

    ```python
    LARS(
        learning_rate,
        exclude_from_weight_decay=(
            r"(?:^|/)bias$",
            r"(?:^|/)(?:gamma|beta|scale)$",
        ),
        exclude_from_layer_adaptation=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY,
    )
    ```

    Weight decay here is the L2 term of the official code, added to the
    gradient; it is not the decoupled decay of `keras.optimizers.AdamW`, and
    is not passed to the Keras base class (which would apply it a second
    time). For the same reason, the base class's
    `exclude_from_weight_decay()` method is replaced by the attribute of the
    same name; give the patterns to the constructor.

    The SimCLR paper (Appendix B.1) trains with LARS, momentum 0.9, weight
    decay `1e-6`, and a learning rate of `0.3 * batch_size / 256` (linear
    scaling) or `0.075 * sqrt(batch_size)` (square-root scaling, better for
    small batches and long training), with 10 epochs of linear warmup and a
    cosine decay: see `keras_simclr.optimizers.scale_learning_rate` and
    `keras_simclr.optimizers.WarmupCosineDecay`.

    Args:
        learning_rate: a positive float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the learning rate.
        momentum: float in `[0, 1)`, the momentum coefficient.
        weight_decay: float >= 0, the L2 coefficient added to the gradient.
            Defaults to `1e-6`, the SimCLR paper's pretraining value (the
            official README uses `1e-4` on CIFAR-10); give `0.0` for
            fine-tuning, as the paper does.
        trust_coefficient: positive float, the `eta` of You et al. (the
            official `eeta`), scaling the trust ratio.
        nesterov: bool, whether to use Nesterov momentum.
        classic_momentum: bool. If `True`, the learning rate and trust ratio
            scale the gradient before it enters the momentum buffer; if
            `False` ("popular" momentum), they scale the buffer's output, and
            the trust ratio is computed from the update instead of the
            gradient.
        exclude_from_weight_decay: a regular expression, or a list or tuple of
            them; variables whose `path` any of them matches get no weight
            decay. `None` or `[]` excludes nothing. Defaults to
            `DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY` (batch-norm parameters,
            biases and the online linear probe, which the official code
            decays through its loss: see above).
        exclude_from_layer_adaptation: the same, for the trust ratio; `None`
            (the default) takes `exclude_from_weight_decay`, as the official
            code does, and `[]` adapts every variable.
        name: string, the name of the optimizer.
        **kwargs: other `keras.optimizers.Optimizer` arguments: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`. Not `weight_decay`, see above.

    Raises:
        ValueError: if an argument is out of range, naming the argument.

    Example:

    ```python
    batch_size, total_steps = 4096, 100 * 1_281_167 // 4096 + 1
    learning_rate = keras_simclr.optimizers.WarmupCosineDecay(
        keras_simclr.optimizers.scale_learning_rate(0.3, batch_size),  # 4.8
        total_steps=total_steps,
        warmup_steps=10 * 1_281_167 // batch_size,
    )
    optimizer = keras_simclr.optimizers.LARS(
        learning_rate, momentum=0.9, weight_decay=1e-6
    )
    pretrainer.compile(optimizer=optimizer)
    ```

    References:
        - [You et al., 2017](https://arxiv.org/abs/1708.03888), Large Batch
          Training of Convolutional Networks (LARS).
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          §B.1 (optimizer, learning rate scaling).
    """

    def __init__(
        self,
        learning_rate,
        momentum=0.9,
        weight_decay=1e-6,
        trust_coefficient=0.001,
        nesterov=False,
        classic_momentum=True,
        exclude_from_weight_decay=DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY,
        exclude_from_layer_adaptation=None,
        name="lars",
        **kwargs,
    ):
        if isinstance(learning_rate, numbers.Real):  # not a schedule
            learning_rate = _validation.check_positive_number(
                learning_rate, "learning_rate"
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = _validation.check_number(
            momentum, "momentum", minimum=0, maximum=1, include_maximum=False
        )
        self.weight_decay = _validation.check_non_negative_number(
            weight_decay, "weight_decay"
        )
        self.trust_coefficient = _validation.check_positive_number(
            trust_coefficient, "trust_coefficient"
        )
        self.nesterov = _validation.check_bool(nesterov, "nesterov")
        self.classic_momentum = _validation.check_bool(
            classic_momentum, "classic_momentum"
        )
        self.exclude_from_weight_decay = _validate_patterns(
            "exclude_from_weight_decay", exclude_from_weight_decay
        )
        self.exclude_from_layer_adaptation = (
            None
            if exclude_from_layer_adaptation is None
            else _validate_patterns(
                "exclude_from_layer_adaptation", exclude_from_layer_adaptation
            )
        )

    def uses_weight_decay(self, variable):
        """Whether `variable` (a `keras.Variable` or a path) is decayed."""
        if not self.weight_decay:
            return False
        return not _matches(self.exclude_from_weight_decay, variable)

    def uses_layer_adaptation(self, variable):
        """Whether `variable` (a `keras.Variable` or a path) gets a trust ratio."""
        patterns = self.exclude_from_layer_adaptation
        if patterns is None:
            patterns = self.exclude_from_weight_decay
        return not _matches(patterns, variable)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Static per-variable decisions, indexed like `variables`: the update
        # step may receive the backend's variable (a tf.Variable on
        # TensorFlow), which has no Keras `path`.
        self._decay_flags = tuple(self.uses_weight_decay(v) for v in variables)
        self._adaptation_flags = tuple(
            self.uses_layer_adaptation(v) for v in variables
        )

    def _apply_weight_decay(self, variables):
        # Keras's private hook (`keras_simclr._keras_compat.INTERNALS`): the
        # base class would apply `self.weight_decay` again, decoupled,
        # after the update; LARS adds it to the gradient in `update_step`.
        return

    def _trust_ratio(self, weights, direction):
        weight_norm = ops.sqrt(ops.sum(ops.square(weights)))
        direction_norm = ops.sqrt(ops.sum(ops.square(direction)))
        one = ops.ones_like(weight_norm)
        # The inner where() keeps the unused branch finite (no 0 / 0).
        safe_norm = ops.where(direction_norm > 0, direction_norm, one)
        ratio = self.trust_coefficient * weight_norm / safe_norm
        return ops.where(
            weight_norm > 0, ops.where(direction_norm > 0, ratio, one), one
        )

    def update_step(self, gradient, variable, learning_rate):
        index = _keras_compat.variable_index(self, variable)
        velocity = self.momentums[index]
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        momentum = ops.cast(self.momentum, dtype)
        gradient = ops.cast(gradient, dtype)
        weights = ops.convert_to_tensor(variable)
        previous_velocity = ops.convert_to_tensor(velocity)

        if self._decay_flags[index]:
            gradient = gradient + ops.cast(self.weight_decay, dtype) * weights
        adapt = self._adaptation_flags[index]

        if self.classic_momentum:
            scaled_lr = learning_rate
            if adapt:
                scaled_lr = scaled_lr * self._trust_ratio(weights, gradient)
            next_velocity = momentum * previous_velocity + scaled_lr * gradient
            if self.nesterov:
                update = momentum * next_velocity + scaled_lr * gradient
            else:
                update = next_velocity
        else:
            next_velocity = momentum * previous_velocity + gradient
            if self.nesterov:
                update = momentum * next_velocity + gradient
            else:
                update = next_velocity
            scaled_lr = learning_rate
            if adapt:
                scaled_lr = scaled_lr * self._trust_ratio(weights, update)
            update = scaled_lr * update

        self.assign(velocity, next_velocity)
        self.assign_sub(variable, update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "nesterov": self.nesterov,
                "classic_momentum": self.classic_momentum,
                "exclude_from_weight_decay": list(self.exclude_from_weight_decay),
                "exclude_from_layer_adaptation": (
                    None
                    if self.exclude_from_layer_adaptation is None
                    else list(self.exclude_from_layer_adaptation)
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The base class deserializes a schedule into `config` itself; a copy
        # leaves the caller's config as it was, still serializable.
        return super().from_config(dict(config), custom_objects=custom_objects)


def _matches(patterns, variable):
    path = variable if isinstance(variable, str) else variable.path
    return any(re.search(pattern, path) is not None for pattern in patterns)
