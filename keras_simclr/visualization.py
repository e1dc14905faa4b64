"""Pictures of a run: augmented views and training curves, as PNG files.

Needs matplotlib (`pip install matplotlib`), imported only when a function
here is called. Figures are drawn on matplotlib's Agg canvas directly, without
`pyplot`, so nothing here changes matplotlib's global backend or keeps figures
open.
"""

import keras
import numpy as np
from keras import ops

from keras_simclr import _data_checks
from keras_simclr import _validation

DEFAULT_METRICS = ("loss", "contrastive_accuracy", "knn_accuracy")


def augmentation_preview(augmentation, images, path=None, num_images=8, seed=None):
    """Draws images next to two random views of each, as SimCLR trains on.

    Each row shows one image and two views of it made by
    `augmentation(images, training=True)`, so the strength of the crops and
    colour distortion can be checked by eye before a long run.

    Pixel values are mapped to the screen by the layer's `value_range` (as
    `SimCLRAugmentation` has); for a layer without one, by `(0, 255)` for
    integer images or images with values above 1, else by `(0, 1)`. Values
    outside the range are clipped. One-channel images are drawn in gray.

    Args:
        augmentation: a Keras layer that maps a batch of images to one random
            view of each, e.g. `keras_simclr.layers.SimCLRAugmentation`.
        images: array `(N, H, W, C)`, `C` 1 or 3, uint8 or float.
        path: where to write the PNG file, or `None` to return the figure.
        num_images: positive int, the number of rows: the first
            `num_images` images (all if there are fewer). Defaults to 8.
        seed: int or `None`. With an int, the views come from a copy of
            `augmentation` rebuilt from its config with this seed, so the
            same seed draws the same views and the layer's own random state
            is left as it was; a layer whose config has no `seed` is used as
            it is. With `None`, the layer itself draws the views.

    Returns:
        `path` after the PNG file is written, or a `matplotlib.figure.Figure`
        when `path` is `None`.

    Raises:
        ValueError: if an argument has the wrong type or shape.
        ImportError: if matplotlib is not installed.

    Example:

    ```python
    augmentation = keras_simclr.layers.SimCLRAugmentation(32, preset="cifar")
    keras_simclr.visualization.augmentation_preview(
        augmentation, train_images, "views.png", num_images=6, seed=0
    )
    ```
    """
    _validation.check_layer(
        augmentation,
        "augmentation",
        description="a Keras layer that makes a view of a batch of images",
    )
    _validation.check_path(path, allow_none=True)
    num_images = _validation.check_int(num_images, "num_images")
    seed = _validation.check_seed(seed)
    images = _data_checks.check_images(images)
    figure_class, canvas_class = _matplotlib()

    images = images[:num_images]
    layer = augmentation
    if seed is not None:
        config = augmentation.get_config()
        if "seed" in config:
            layer = augmentation.__class__.from_config({**config, "seed": int(seed)})
    views = [
        ops.convert_to_numpy(ops.cast(layer(images, training=True), "float32"))
        for _ in range(2)
    ]
    low, high = _display_range(augmentation, images)

    def to_screen(batch):
        batch = (np.asarray(batch, "float32") - low) / (high - low)
        return np.clip(batch, 0.0, 1.0)

    columns = [to_screen(images)] + [to_screen(view) for view in views]
    titles = ("image", "view 1", "view 2")
    figure = figure_class(figsize=(6.0, 2.0 * len(images)), dpi=100)
    canvas_class(figure)
    axes = figure.subplots(len(images), 3, squeeze=False)
    for row in range(len(images)):
        for column, batch in enumerate(columns):
            ax = axes[row, column]
            picture = batch[row]
            if picture.shape[-1] == 1:
                ax.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(picture)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(titles[column])
    figure.tight_layout()
    if path is None:
        return figure
    figure.savefig(path, format="png")
    return path


def plot_history(history, path, metrics=DEFAULT_METRICS, x_axis="epoch"):
    """Draws training curves, one panel per metric, into a PNG file.

    Each panel shows a metric of `history` and, when present, its
    `val_` counterpart. Metrics absent from `history` are skipped. Values
    that are not finite are left out, such as the NaN that
    `keras_simclr.callbacks.KNNMonitor` logs on the epochs it does not
    evaluate; points are marked, so curves measured every few epochs show
    where they were measured.

    Args:
        history: the `keras.callbacks.History` returned by `fit()`, or its
            `history` dict from metric names to one value per epoch.
        path: where to write the PNG file.
        metrics: names of the metrics to draw, in order; `None` for every
            metric in `history` except `time` and the `val_` ones (drawn
            with their own). Defaults to loss, contrastive accuracy and kNN
            accuracy.
        x_axis: `"epoch"` (1-based; a `History` after a resumed run gives
            the epoch numbers it ran) or `"time"`: the values of the
            `time` key of `history`, the wall-clock seconds from the start of
            training to the end of each epoch.

    Returns:
        `path`, after the PNG file is written.

    Raises:
        ValueError: if an argument has the wrong type, none of `metrics` is in
            `history`, or `x_axis="time"` and `history` has no `time` key of
            one value per epoch.
        ImportError: if matplotlib is not installed.

    Example:

    ```python
    history = pretrainer.fit(images, epochs=100, callbacks=[knn_monitor])
    keras_simclr.visualization.plot_history(history, "curves.png")
    ```
    """
    epochs = None
    if isinstance(history, keras.callbacks.History):
        epochs = list(getattr(history, "epoch", None) or [])
        history = history.history
    if not isinstance(history, dict) or not all(
        isinstance(key, str) for key in history
    ):
        raise ValueError(
            "`history` must be a keras.callbacks.History or a dict from "
            "metric names to lists of values (History.history). Received: "
            f"history of type {type(history).__name__}"
        )
    _validation.check_path(path)
    if metrics is None:
        metrics = [
            key for key in history if key != "time" and not key.startswith("val_")
        ]
    elif isinstance(metrics, str) or not (
        isinstance(metrics, (list, tuple))
        and metrics
        and all(isinstance(metric, str) for metric in metrics)
    ):
        raise ValueError(
            "`metrics` must be a non-empty list or tuple of metric names, or "
            f"None. Received: metrics={metrics!r}"
        )
    x_axis = _validation.check_choice(x_axis, "x_axis", ("epoch", "time"))
    present = [metric for metric in metrics if metric in history]
    if not present:
        raise ValueError(
            f"None of the metrics {list(metrics)} is in `history`. "
            f"Received: history with keys {sorted(history)}"
        )
    curves = {}
    for metric in present:
        for key in (metric, "val_" + metric):
            if key in history:
                curves[key] = _as_curve(history[key], key)
    num_epochs = max(len(values) for values in curves.values())
    if x_axis == "time":
        if "time" not in history:
            raise ValueError(
                'x_axis="time" needs a "time" key in `history`: the seconds '
                "from the start of training to the end of each epoch. "
                f"Received: history with keys {sorted(history)}"
            )
        x_values = _as_curve(history["time"], "time")
        x_label = "wall time (s)"
    else:
        if epochs is None or len(epochs) != num_epochs:
            epochs = list(range(num_epochs))
        x_values = np.asarray(epochs, "float64") + 1
        x_label = "epoch"
    for key, values in curves.items():
        if len(values) != len(x_values):
            raise ValueError(
                f"Every metric must have one value per epoch. Received: "
                f"{len(values)} values of {key!r} for {len(x_values)} "
                f"{'time values' if x_axis == 'time' else 'epochs'}"
            )
    figure_class, canvas_class = _matplotlib()

    figure = figure_class(figsize=(6.0, 2.5 * len(present)), dpi=100)
    canvas_class(figure)
    axes = figure.subplots(len(present), 1, squeeze=False, sharex=True)[:, 0]
    for ax, metric in zip(axes, present):
        for key in (metric, "val_" + metric):
            if key not in curves:
                continue
            finite = np.isfinite(curves[key])
            ax.plot(
                x_values[finite], curves[key][finite], marker="o", markersize=3,
                label=key,
            )
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if "val_" + metric in curves:
            ax.legend()
    axes[-1].set_xlabel(x_label)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _matplotlib():
    """matplotlib's `Figure` and Agg canvas classes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_simclr.visualization draws with matplotlib, which is not "
            "installed. Install it with `pip install matplotlib`."
        ) from error
    return Figure, FigureCanvasAgg


def _display_range(augmentation, images):
    value_range = getattr(augmentation, "value_range", None)
    if (
        isinstance(value_range, (tuple, list))
        and len(value_range) == 2
        and value_range[0] < value_range[1]
    ):
        return float(value_range[0]), float(value_range[1])
    if images.dtype.kind in "biu" or np.max(images) > 1.0:
        return 0.0, 255.0
    return 0.0, 1.0


def _as_curve(values, key):
    try:
        curve = np.asarray(values, "float64")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`history[{key!r}]` must be a list of numbers. Received: {values!r}"
        ) from error
    if curve.ndim != 1:
        raise ValueError(
            f"`history[{key!r}]` must be a list of numbers, one per epoch. "
            f"Received: a value of shape {curve.shape}"
        )
    return curve
