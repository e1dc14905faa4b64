"""Input checks shared by the objectives that take several tensors."""

from keras import ops


def check_matrix(name, x):
    """`x` as a tensor; it must be 2D `(batch, dim)`."""
    x = ops.convert_to_tensor(x)
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must be a 2D tensor. Received: {name}.shape={tuple(x.shape)}"
        )
    return x


def check_dict_call(loss_name, y_pred, sample_weight, keys):
    """What a Loss class whose `y_pred` is a dict of tensors accepts."""
    if sample_weight is not None:
        raise ValueError(
            f"{loss_name} has no per-sample weights. Received: sample_weight "
            f"of shape {getattr(sample_weight, 'shape', None)}"
        )
    if not isinstance(y_pred, dict) or set(y_pred) != set(keys):
        received = sorted(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
        expected = ", ".join(f'"{key}"' for key in keys)
        raise ValueError(
            f"`y_pred` must be a dict with keys {expected}. "
            f"Received: y_pred={received}"
        )
