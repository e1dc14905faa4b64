"""TensorFlow SavedModel export of a Keras model trained on any backend.

`model.export(format="tf_saved_model")` works on the TensorFlow and JAX
backends but not on PyTorch. `export_saved_model` takes one route for all
three: on the TensorFlow backend it writes the SavedModel in the running
process; on the others it saves the model as a `.keras` file (which does not
depend on the backend) and writes the SavedModel in a Python subprocess that
runs the TensorFlow backend (`keras_simclr._export_worker`). That subprocess
is kept for the exports that follow within two minutes, since starting it
costs the import of TensorFlow.

TensorFlow is imported here only where the SavedModel is written.
"""

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile

import keras

from keras_simclr import _evaluation_transform
from keras_simclr import _validation

ENDPOINT_NAME = "serve"
INPUT_NAME = "images"
# For models without an evaluation transform. As `tf.image.resize`'s
# defaults: bilinear, half-pixel centres, no antialiasing;
# `keras.ops.image.resize(x, size)` computes the same.
RESIZE_METHOD = "bilinear"
PIXEL_RANGE = (0.0, 255.0)

# Attributes that hold the network a model wraps, searched for its image size.
_WRAPPED_NETWORK_ATTRIBUTES = ("encoder", "student")
# Top-level packages whose objects load without importing anything else.
_BUILT_IN_PACKAGES = {"keras", "builtins"}
# Endings of Keras model files, refused as SavedModel directories.
_KERAS_FILE_EXTENSIONS = (".keras", ".h5", ".hdf5")
# What a SavedModel directory holds (TensorFlow writes the first four);
# `overwrite=True` deletes a directory only if it holds nothing else.
_SAVED_MODEL_GRAPHS = ("saved_model.pb", "saved_model.pbtxt")
_SAVED_MODEL_ENTRIES = _SAVED_MODEL_GRAPHS + (
    "variables", "assets", "fingerprint.pb", "assets.extra"
)
# How much of the subprocess's stderr a RuntimeError quotes.
_STDERR_TAIL_CHARS = 6000
# Starts each answer of the export subprocess on its stdout.
_REPLY_PREFIX = "keras_simclr.export:"
# How long the export subprocess is kept for another export.
_WORKER_IDLE_SECONDS = 120.0


def export_saved_model(
    model,
    path,
    image_size=None,
    value_range=(0, 255),
    import_modules=None,
    overwrite=False,
):
    """Writes a TensorFlow SavedModel that maps raw images to named outputs.

    Works for a model trained on any backend (TensorFlow, JAX or PyTorch).
    The SavedModel has one `tf.function` endpoint, `serve`, also registered
    as the `serving_default` signature. It takes a batch of raw images,
    `uint8` of shape `(batch, height, width, channels)`, of any height and
    width, with the channel count of the model's input (3 unless the model
    fixes another; other counts fail with a message that says so); converts
    them to float32 and brings them to the model's image size, runs the
    model in inference mode (`training=False`) and returns a dict of float32
    tensors (below).

    The image size is reached as the model itself reaches it at inference:

    - a model with an evaluation transform (`model.evaluation_transform`:
      a `SimCLRPretrainer` with an augmentation, a `SimCLRClassifier` built
      from one, a `SimCLRDistiller`): pixel values are mapped from
      `[0, 255]` linearly to `value_range`, then images whose height and
      width equal the view size pass unchanged and the others go through
      the transform (the augmentation's `training=False` call): for
      `SimCLRAugmentation`'s `"imagenet"` preset, a centre crop of 87.5% of
      the image (the official SimCLR offsets) resized bicubically to the
      view size and clipped to `value_range`, the official SimCLR
      evaluation; for the `"cifar"` preset, the whole image resized
      bilinearly. The test of the size runs in the graph, for each batch;
    - any other model: images are resized to the model's image size with
      `tf.image.resize`'s defaults (bilinear, half-pixel centres, no
      antialiasing, no rounding or clipping afterwards; the same as
      `keras.ops.image.resize(images, image_size)`), then pixel values are
      mapped from `[0, 255]` linearly to `value_range`.

    The outputs:

    - a model with a method `export_outputs(images)`, as every
      `keras_simclr.models.Task` has: the dict that method returns for the
      prepared images. A `SimCLRPretrainer` gives `"features"` (encoder
      output), `"projection"` (projection head output) and, when it has a
      linear probe, `"logits"` (its augmentation, prediction head and
      momentum target are not exported); a `SimCLRClassifier` its
      features, head features and logits; a `SimCLRDistiller` its
      student's;
    - any other model: its output, under the key `"features"` when it is one
      tensor (an encoder such as `keras_simclr.models.ResNet`), or the dict
      it returns.

    The SavedModel holds the variables the endpoint reads, listed as its
    `variables`, `trainable_variables` and `non_trainable_variables`, and no
    optimizer state. Loading it needs TensorFlow only, neither Keras nor
    keras_simclr:

    ```python
    serving = tf.saved_model.load(path).signatures["serving_default"]
    features = serving(images=uint8_images)["features"]
    ```

    On the JAX and PyTorch backends the model goes through a `.keras` file
    and is loaded again, with the TensorFlow backend, in a subprocess: the
    same Python executable and module search path, no GPU (the export needs
    none), kept for the exports of the next two minutes. Every class in the
    model must therefore be registered with
    `keras.saving.register_keras_serializable` and defined in a module that
    the subprocess can import: the modules named in the saved config are
    imported there, and so are those in `import_modules`. A class defined in
    a script run as `__main__` cannot be found there; move it to a module.
    A layer whose config is valid on one backend only, such as
    `BatchNormalization(synchronized=True)` (TensorFlow only), cannot be
    loaded there either. On the TensorFlow backend the SavedModel is written
    in the running process, without a `.keras` file, also for a model built
    under a `tf.distribute` strategy (inside its scope or outside).

    Args:
        model: a built `keras.Model`: an encoder, a `SimCLRPretrainer`, or a
            model with an `export_outputs(images)` method returning a dict of
            tensors.
        path: the directory to write, on the local file system; created with
            its parents. The SavedModel is written next to it first and moved
            into place only when complete. A path ending in `.keras`, `.h5`
            or `.hdf5` is refused: a Keras file is written by
            `model.save(path)`.
        image_size: int or `(height, width)`: the size images are resized to
            before the model. Required when neither the model's input shape
            (read from `model.inputs`, or else from the inputs of
            `model.encoder` or `model.student`, or of theirs) nor its
            evaluation transform fixes height and width; otherwise `None`
            or the same size.
        value_range: `(low, high)`, the pixel range the model expects;
            `[0, 255]` is mapped linearly onto it. The default `(0, 255)`
            feeds the pixel values unchanged, as `ResNet` expects (it
            rescales its input itself, from its own `value_range`). `None`
            also feeds them unchanged. With an evaluation transform that
            declares a `value_range` (the library's augmentation layers),
            it must be the same.
        import_modules: names of modules to import before the model is
            loaded in the subprocess, for objects registered by a module
            other than the one that defines them. Unused on the TensorFlow
            backend.
        overwrite: whether to replace an earlier SavedModel at `path`. If
            False, `path` must not exist or be an empty directory. If True,
            `path` may also be a SavedModel directory (`saved_model.pb`,
            `variables/`, `assets/`, `fingerprint.pb`, nothing else), which
            is replaced once the new export is complete; anything else
            (other files, a file, a link) is refused and never deleted.

    Returns:
        The absolute path of the SavedModel directory, as a string.

    Raises:
        ValueError: if an argument is invalid, naming it.
        RuntimeError: if the subprocess fails; the message ends with the end
            of its stderr.

    Example:

    ```python
    encoder = keras_simclr.models.ResNet(18, cifar_stem=True,
                                         input_shape=(32, 32, 3))
    ...  # pretrain on any backend
    keras_simclr.export_saved_model(pretrainer, "exported/simclr")
    # In any TensorFlow process:
    serving = tf.saved_model.load("exported/simclr").signatures[
        "serving_default"]
    outputs = serving(images=tf.zeros((8, 96, 96, 3), tf.uint8))
    outputs["features"], outputs["projection"], outputs["logits"]
    ```
    """
    _validate_model(model)
    path = _validate_path(path, overwrite)
    image_size, channels = _resolve_image_size(model, image_size)
    value_range = _validation.check_value_range(value_range, allow_none=True)
    _check_transform_value_range(model, value_range)
    import_modules = _validate_import_modules(import_modules)
    subprocess_needed = keras.backend.backend() != "tensorflow"

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        staged = os.path.join(staging, "saved_model")
        if subprocess_needed:
            _export_in_subprocess(
                model,
                staged,
                staging,
                image_size=image_size,
                channels=channels,
                value_range=value_range,
                import_modules=import_modules,
            )
        else:
            _write_saved_model(
                model,
                staged,
                image_size=image_size,
                channels=channels,
                value_range=value_range,
            )
        if os.path.lexists(path):
            # Checked again: the directory may have changed while exporting.
            _check_replaceable(path)
            shutil.rmtree(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _write_saved_model(model, path, image_size, channels, value_range):
    """Writes the SavedModel of `export_saved_model` in this process.

    Needs the TensorFlow backend. Arguments as validated by
    `export_saved_model`: `image_size` a `(height, width)` tuple, `channels`
    an int, `value_range` a `(low, high)` tuple or None.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "Writing a SavedModel in-process needs the TensorFlow backend; use "
            "export_saved_model, which runs it in a TensorFlow subprocess. "
            f"Received: backend={keras.backend.backend()}"
        )
    import tensorflow as tf

    compute_outputs = _output_function(model)
    transform = _transform_of(model)
    height, width = image_size
    if value_range is None or tuple(value_range) == PIXEL_RANGE:
        scale, offset = None, None
    else:
        low, high = value_range
        scale, offset = (high - low) / PIXEL_RANGE[1], low

    def serve(images):
        # A SavedModel's signature does not check the channels of the
        # images it is given: without this assertion a wrong count fails
        # inside the first convolution, with a message about filter depths.
        images = _checked_images(tf, images, channels)
        x = tf.cast(images, tf.float32)
        if transform is None:
            x = tf.image.resize(x, (height, width), method=RESIZE_METHOD)
        if scale is not None:
            x = x * scale + offset
        if transform is not None:
            # The model's own inference rule: at the view size unchanged,
            # else its evaluation transform.
            x = _evaluation_transform.apply(transform, x)
        outputs = compute_outputs(x)
        return {
            name: tf.cast(value, tf.float32) for name, value in outputs.items()
        }

    archive = keras.export.ExportArchive()
    endpoint = archive.add_endpoint(
        ENDPOINT_NAME,
        serve,
        input_signature=[
            tf.TensorSpec((None, None, None, channels), tf.uint8, name=INPUT_NAME)
        ],
    )
    # List the variables the endpoint reads, and only those (not the
    # optimizer, the augmentation's seeds, a momentum target or a teacher),
    # so that the loaded object exposes them, e.g. to fine-tune in
    # TensorFlow.
    concrete = endpoint.get_concrete_function()
    trainable = list(concrete.trainable_variables)
    trainable_ids = {id(variable) for variable in trainable}
    non_trainable = [
        variable
        for variable in concrete.variables
        if id(variable) not in trainable_ids
    ]
    archive.variables.extend(trainable + non_trainable)
    archive.trainable_variables.extend(trainable)
    archive.non_trainable_variables.extend(non_trainable)
    archive.write_out(path, verbose=False)


def _checked_images(tf, images, channels):
    """`images`, after a graph assertion that they have `channels`
    channels."""
    expected = f"(batch, height, width, {channels})"
    if channels == 3:
        remedy = (
            " Convert grayscale images with `tf.image.grayscale_to_rgb`; "
            "drop the alpha channel of RGBA images with `images[..., :3]`."
        )
    elif channels == 1:
        remedy = " Convert RGB images with `tf.image.rgb_to_grayscale`."
    else:
        remedy = ""
    plural = "" if channels == 1 else "s"
    shape = tf.shape(images)
    # The signature fixes the rank (a batch of another rank fails in the
    # resize, saying it must be 4-dimensional), but not the channels.
    has_channels = tf.debugging.Assert(
        tf.equal(shape[-1], channels),
        [
            f"`images` must have {channels} channel{plural}: the exported "
            f"model takes images of shape {expected}.{remedy} Received: "
            "images.shape=",
            shape,
        ],
        summarize=4,
    )
    with tf.control_dependencies([has_channels]):
        return tf.identity(images)


# === Outputs ===


def _transform_of(model):
    """The model's evaluation transform layer, or None."""
    transform = getattr(model, "evaluation_transform", None)
    if isinstance(transform, keras.layers.Layer):
        return transform
    return None


def _output_function(model):
    """`images -> dict of tensors` for the kinds of model that are exported."""
    export_outputs = getattr(model, "export_outputs", None)
    if callable(export_outputs):
        source = f"{type(model).__name__}.export_outputs"
        return lambda images: _check_outputs(export_outputs(images), source)

    def model_outputs(images):
        outputs = model(images, training=False)
        if isinstance(outputs, dict):
            return _check_outputs(outputs, f"{type(model).__name__}.call")
        if isinstance(outputs, (list, tuple)):
            raise ValueError(
                "The model returns several outputs; export names each one. "
                "Make it return a dict, or give it a method "
                "`export_outputs(images)` that returns one. Received: "
                f"{len(outputs)} outputs from a {type(model).__name__}"
            )
        return {"features": outputs}

    return model_outputs


def _check_outputs(outputs, source):
    if not isinstance(outputs, dict) or not outputs:
        raise ValueError(
            f"`{source}` must return a non-empty dict of tensors. Received: "
            f"{type(outputs).__name__}"
        )
    for name in outputs:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"`{source}` must return a dict with non-empty string keys. "
                f"Received: key {name!r}"
            )
    return outputs


# === Validation ===


def _validate_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: model={model!r}"
        )
    if not model.built:
        raise ValueError(
            "`model` must be built before export: call it on a batch of "
            f"images, or call `model.build(input_shape)`. Received: model "
            f"{model.name!r}, not built"
        )


def _validate_path(path, overwrite):
    overwrite = _validation.check_bool(overwrite, "overwrite")
    path = _validation.check_path(path)
    if "://" in path:
        raise ValueError(
            "`path` must be on the local file system; write there, then copy "
            f"the directory. Received: path={path!r}"
        )
    if os.path.normpath(path).lower().endswith(_KERAS_FILE_EXTENSIONS):
        raise ValueError(
            "`path` is the directory a SavedModel is written to, but it ends "
            "like a Keras file. To save a `.keras` file, use "
            "`model.save(path)`; for a SavedModel, give a directory name "
            f"without that extension. Received: path={path!r}"
        )
    path = os.path.abspath(path)
    if not os.path.lexists(path):
        return path
    if overwrite:
        _check_replaceable(path)
        return path
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(
            "`path` exists and is not a directory. Choose another path. "
            f"Received: path={path!r}"
        )
    if os.listdir(path):
        raise ValueError(
            "`path` is a directory that is not empty; pass overwrite=True to "
            "replace an earlier SavedModel there, or choose another path. "
            f"Received: path={path!r}"
        )
    return path


def _check_replaceable(path):
    """Refuses to let `overwrite=True` delete `path` unless it is an empty
    directory or a SavedModel directory: never what this function did not
    write."""
    if os.path.islink(path) or not os.path.isdir(path):
        kind = "a symbolic link" if os.path.islink(path) else "a file"
        raise ValueError(
            f"`path` is {kind}, not a SavedModel directory: overwrite=True "
            "replaces only an earlier SavedModel (or an empty directory), and "
            f"nothing else is deleted. Choose another path. Received: path={path!r}"
        )
    entries = sorted(os.listdir(path))
    if not entries:
        return
    others = [name for name in entries if name not in _SAVED_MODEL_ENTRIES]
    variables = os.path.join(path, "variables")
    if os.path.isdir(variables) and not os.path.islink(variables):
        others += [
            f"variables/{name}"
            for name in sorted(os.listdir(variables))
            if not name.startswith("variables.")
        ]
    if others or not any(name in entries for name in _SAVED_MODEL_GRAPHS):
        shown = others or entries
        listed = ", ".join(shown[:10]) + (
            f" and {len(shown) - 10} more" if len(shown) > 10 else ""
        )
        reason = (
            f"holds {listed}, which a SavedModel does not"
            if others
            else f"holds no saved_model.pb (it holds {listed})"
        )
        raise ValueError(
            f"`path` is not a SavedModel directory: it {reason}. "
            "overwrite=True replaces only an earlier SavedModel (or an empty "
            "directory), and nothing else is deleted. Choose another path, or "
            f"empty it yourself. Received: path={path!r}"
        )


def _static_image_shape(layer):
    """`(height, width, channels)` of the one image input of `layer`, any of
    them None when unknown, or None when `layer` has no symbolic input."""
    try:
        inputs = layer.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return None
    return tuple(inputs[0].shape[1:])


def _resolve_image_size(model, image_size):
    """The `(height, width)` images are resized to, and their channels."""
    model_shape = None
    # The model's own input, else that of the network it wraps: a
    # pretrainer's or classifier's encoder, a distiller's student (and its
    # encoder).
    candidates = [model]
    while candidates and model_shape is None:
        layer = candidates.pop(0)
        model_shape = _static_image_shape(layer)
        for attribute in _WRAPPED_NETWORK_ATTRIBUTES:
            wrapped = getattr(layer, attribute, None)
            if isinstance(wrapped, keras.layers.Layer):
                candidates.append(wrapped)
    height, width, channels = model_shape or (None, None, None)
    transform = _transform_of(model)
    view_size = _evaluation_transform.view_size(transform)
    if view_size is not None:
        for known, view in zip((height, width), view_size):
            if known is not None and known != view:
                raise ValueError(
                    "The model's evaluation transform makes images of size "
                    f"{view_size}, but its input takes {(height, width)}. "
                    f"Received: a {type(model).__name__} whose "
                    f"{type(transform).__name__} has the view size {view_size}"
                )
        height, width = view_size

    image_size = _validation.check_image_size(image_size, allow_none=True)
    if image_size is not None:
        for known, given in zip((height, width), image_size):
            if known is not None and known != given:
                raise ValueError(
                    f"`image_size` differs from the model's image size "
                    f"{(height, width)}; leave it None or give the same. "
                    f"Received: image_size={image_size}"
                )
    elif height is None or width is None:
        raise ValueError(
            "The model's input shape does not fix the image size, so "
            "`image_size` (an int or `(height, width)`) is required: the "
            "size images are resized to. Received: image_size=None and an "
            f"input shape of (batch, {height}, {width}, {channels})"
        )
    else:
        image_size = (int(height), int(width))
    return image_size, int(channels) if channels is not None else 3


def _check_transform_value_range(model, value_range):
    """Refuses a `value_range` other than the one the evaluation transform
    takes its images in: it clips to its own range."""
    transform = _transform_of(model)
    declared = getattr(transform, "value_range", None)
    if declared is None:
        return
    declared = tuple(float(bound) for bound in declared)
    fed = PIXEL_RANGE if value_range is None else tuple(value_range)
    if fed != declared:
        raise ValueError(
            "`value_range` must be the range the model's evaluation "
            f"transform ({type(transform).__name__}) takes images in, "
            f"{declared}: the signature maps [0, 255] onto `value_range` "
            f"before the transform. Received: value_range={value_range}"
        )


def _validate_import_modules(import_modules):
    if import_modules is None:
        return ()
    if isinstance(import_modules, str) or not isinstance(
        import_modules, (tuple, list)
    ):
        raise ValueError(
            "`import_modules` must be a list of module names or None. "
            f"Received: import_modules={import_modules!r}"
        )
    for name in import_modules:
        if not isinstance(name, str) or not _module_exists(name):
            raise ValueError(
                "Every entry of `import_modules` must name an importable "
                f"module. Received: {name!r} in import_modules={import_modules!r}"
            )
    return tuple(import_modules)


def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# === Subprocess ===


def _export_in_subprocess(
    model, path, staging, image_size, channels, value_range, import_modules
):
    model_path = os.path.join(staging, "model.keras")
    model.save(model_path)
    modules = _modules_in_saved_config(model_path) + list(import_modules)
    job = {
        "model_path": model_path,
        "export_path": path,
        "image_size": list(image_size),
        "channels": channels,
        "value_range": list(value_range) if value_range is not None else None,
        "import_modules": list(dict.fromkeys(modules)),
        "sys_path": _module_search_path(),
    }
    error, stderr_tail = _run_job(job)
    if error is not None or not os.path.isdir(path):
        raise RuntimeError(
            f"Exporting model {model.name!r} failed in the TensorFlow "
            f"subprocess: {error or 'no SavedModel was written'}. Its stderr "
            f"ends with:\n{stderr_tail}"
        )


class _Worker:
    """A Python process on the TensorFlow backend that writes SavedModels.

    It runs `keras_simclr._export_worker`, which reads one job (a JSON line)
    at a time on its stdin and answers each with one line on its stdout.
    Starting it costs the import of TensorFlow (seconds), so it is kept for
    the next export and closed after `_WORKER_IDLE_SECONDS` without one, or
    when this process exits.
    """

    def __init__(self):
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "tensorflow"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Tracing and saving need no accelerator, and TensorFlow would
        # otherwise claim the memory of GPUs that this process may use.
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        env["PYTHONPATH"] = os.pathsep.join(_module_search_path())
        # A file, not a pipe: nobody reads stderr until a job fails, and a
        # full pipe would block the worker.
        self._stderr = tempfile.TemporaryFile()
        # Where the stderr of the next job starts; from 0 for the first, so
        # that a failure to start is quoted too.
        self._stderr_start = 0
        self._process = subprocess.Popen(
            [sys.executable, "-m", "keras_simclr._export_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )

    def alive(self):
        return self._process.poll() is None

    def run(self, job):
        """Returns `(error, stderr_tail)`: error None on success, else a
        one-line description."""
        try:
            self._process.stdin.write(json.dumps(job) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass
        reply = None
        for line in self._process.stdout:
            if line.startswith(_REPLY_PREFIX):
                reply = json.loads(line[len(_REPLY_PREFIX) :])
                break
        if reply is None:
            self._process.wait()
            error = f"it exited with code {self._process.returncode}"
        else:
            error = reply.get("error")
        self._stderr.seek(self._stderr_start)
        output = self._stderr.read()
        self._stderr_start += len(output)
        tail = output.decode("utf-8", "replace")[-_STDERR_TAIL_CHARS:]
        return error, tail

    def close(self):
        if self.alive():
            try:
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._stderr.close()


_worker = None
_worker_timer = None
_worker_lock = threading.Lock()


def _run_job(job):
    global _worker, _worker_timer
    with _worker_lock:
        if _worker_timer is not None:
            _worker_timer.cancel()
            _worker_timer = None
        if _worker is not None and not _worker.alive():
            _worker.close()
            _worker = None
        if _worker is None:
            _worker = _Worker()
        try:
            return _worker.run(job)
        finally:
            if _worker.alive():
                _worker_timer = threading.Timer(_WORKER_IDLE_SECONDS, _close_worker)
                _worker_timer.daemon = True
                _worker_timer.start()
            else:
                _worker.close()
                _worker = None


def _close_worker():
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.close()
            _worker = None


atexit.register(_close_worker)


def _modules_in_saved_config(model_path):
    """Modules that define the objects of a `.keras` file, except Keras's
    own: importing them registers the custom objects."""
    with zipfile.ZipFile(model_path) as archive:
        config = json.loads(archive.read("config.json"))
    modules = []
    classes_in_main = []

    def visit(item):
        if isinstance(item, dict):
            if "class_name" in item and "module" in item:
                module = item["module"]
                # Keras writes no module for an object of `__main__`.
                if module is None:
                    classes_in_main.append(item["class_name"])
                elif module.split(".")[0] not in _BUILT_IN_PACKAGES:
                    modules.append(module)
            for value in item.values():
                visit(value)
        elif isinstance(item, list):
            for value in item:
                visit(value)

    visit(config)
    if classes_in_main:
        raise ValueError(
            "The model holds classes or functions defined in `__main__` (the "
            "script being run), which the export subprocess cannot import; "
            "define them in a module. Received: "
            f"{sorted(set(classes_in_main))}"
        )
    return list(dict.fromkeys(modules))


def _module_search_path():
    """This process's module search path, led by the directory this package
    was imported from when the path does not hold it (an editable install)."""
    entries = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if package_root not in entries:
        entries.insert(0, package_root)
    return list(dict.fromkeys(entries))
