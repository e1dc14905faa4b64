"""What the loss functions and `keras.losses.Loss` classes check of the
tensors they are given. Dimensions unknown while tracing (None) pass."""

import keras


def check_matrix(name, x):
    """`x` as a tensor; it must be 2D `(batch, dim)`."""
    x = keras.ops.convert_to_tensor(x)
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must be a 2D tensor. Received: {name}.shape={tuple(x.shape)}"
        )
    return x


def check_same_shape(**tensors):
    """Checks that the tensors, given by name, have the same static shape."""
    shapes = {name: tuple(x.shape) for name, x in tensors.items()}
    if len(set(shapes.values())) > 1:
        names = [f"`{name}`" for name in shapes]
        names = ", ".join(names[:-1]) + " and " + names[-1]
        received = ", ".join(f"{name}.shape={shape}" for name, shape in shapes.items())
        raise ValueError(f"{names} must have the same shape. Received: {received}")


def check_branches(z_a, z_b, min_batch=2):
    """Two `(N, D)` projections of the same shape, N >= `min_batch` (a loss
    of batch statistics needs 2), as float32 tensors: float16 / bfloat16
    projections are computed on in float32, as 8 or 11 bits lose too much
    in a batch statistic or a softmax."""
    z_a = keras.ops.convert_to_tensor(z_a)
    z_b = keras.ops.convert_to_tensor(z_b)
    shape_a, shape_b = tuple(z_a.shape), tuple(z_b.shape)
    received = f"Received: z_a.shape={shape_a}, z_b.shape={shape_b}"
    if len(shape_a) != 2 or len(shape_b) != 2:
        raise ValueError(f"`z_a` and `z_b` must be 2D tensors (batch, dim). {received}")
    if any(
        a is not None and b is not None and a != b for a, b in zip(shape_a, shape_b)
    ):
        raise ValueError(
            "`z_a` and `z_b` must have the same shape: row n of each is a view "
            f"of image n. {received}"
        )
    if shape_a[0] is not None and shape_a[0] < min_batch:
        raise ValueError(
            f"`z_a` and `z_b` must hold at least {min_batch} images: the loss "
            f"uses statistics over the batch. Received: z_a.shape={shape_a}"
        )
    return keras.ops.cast(z_a, "float32"), keras.ops.cast(z_b, "float32")


def check_no_sample_weight(loss_name, sample_weight, reason=None):
    """Refuses the per-sample weights of a Loss class that takes none;
    `reason` says why in the message."""
    if sample_weight is not None:
        reason = f": {reason}" if reason else ""
        raise ValueError(
            f"{loss_name} has no per-sample weights{reason}. Received: "
            f"sample_weight of shape {getattr(sample_weight, 'shape', None)}"
        )


def check_stacked_views(loss_name, y_pred, sample_weight):
    """What a Loss class whose `y_pred` stacks both views accepts: `(2N, D)`
    with N >= 2, and no per-sample weights."""
    check_no_sample_weight(
        loss_name, sample_weight, "each image's term depends on the whole batch"
    )
    shape = getattr(y_pred, "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] is not None:
        if shape[0] % 2 or shape[0] < 4:
            raise ValueError(
                "`y_pred` must stack the two views of at least 2 images, "
                f"shape (2N, D) with N >= 2. Received: y_pred.shape={tuple(shape)}"
            )


def check_dict_call(loss_name, y_pred, sample_weight, keys):
    """What a Loss class whose `y_pred` is a dict of tensors accepts: those
    `keys`, and no per-sample weights."""
    check_no_sample_weight(loss_name, sample_weight)
    if not isinstance(y_pred, dict) or set(y_pred) != set(keys):
        received = sorted(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
        expected = ", ".join(f'"{key}"' for key in keys)
        raise ValueError(
            f"`y_pred` must be a dict with keys {expected}. "
            f"Received: y_pred={received}"
        )
