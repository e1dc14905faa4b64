"""Every use of Keras's private API (and of TensorFlow's, for Keras's
TensorFlow backend), in one place.

The library needs a few things that Keras does not export. Each is reached
here alone, through one function or name, with the Keras version it was
checked on; the rest of the library calls these and never reads
`keras.src` or a private attribute of a Keras object itself. Two private
methods are overridden rather than called (`BackupAndRestore._save_model`,
`Optimizer._apply_weight_decay`): they are listed in `INTERNALS` too.

`INTERNALS` names each one, with the file that uses it, what for, and a
check that it is still there; `tests/keras_compat_test.py` runs the checks
and names the internal that a new Keras version removed or changed.

This module imports only `keras` (TensorFlow lazily), so that the test can
load it even when the package cannot be imported.
"""

import collections
import functools
import importlib
import inspect

import keras

# The Keras version every access below was checked on.
KERAS_VERSION_CHECKED = "3.15.1"

Internal = collections.namedtuple("Internal", "name used_by purpose check")


@functools.cache
def _keras_src(module, attribute, purpose):
    """`keras.src.<module>.<attribute>`, or an ImportError that names it."""
    name = f"keras.src.{module}.{attribute}"
    try:
        return getattr(importlib.import_module(f"keras.src.{module}"), attribute)
    except (ImportError, AttributeError) as error:
        raise ImportError(
            f"keras_simclr needs Keras's internal `{name}` ({purpose}), "
            f"checked on Keras {KERAS_VERSION_CHECKED}. Installed: "
            f"keras=={keras.__version__}, which lacks it. Install a supported "
            "version with `pip install 'keras>=3.15,<3.16'`."
        ) from error


# === Variables (models/_gradient_cache.py) ===


def autocast_off():
    """A context in which reading `variable.value` gives the variable's own
    dtype, also inside a mixed-precision layer's call (Keras's
    `AutocastScope(None)`). Checked on Keras 3.15.1."""
    return _keras_src(
        "backend.common.variables", "AutocastScope", "reading variables uncast"
    )(None)


# === Augmentation layers (layers/data_layer.py) ===


def data_layer_class():
    """Keras's `DataLayer`, the base of its image-augmentation layers: inside
    a `tf.data` graph its `__call__` switches `self.backend` to TensorFlow,
    so that the library's augmentation layers run in a `tf.data` pipeline on
    every backend. Checked on Keras 3.15.1."""
    return _keras_src(
        "layers.preprocessing.data_layer",
        "DataLayer",
        "the base class of the augmentation layers",
    )


def current_call_context():
    """Keras's layer call context (`global_state`'s `"current_call_ctx"`,
    whose `entry_layer` is the layer the user called), or `None` outside a
    call. Checked on Keras 3.15.1."""
    global_state = _keras_src(
        "backend.common", "global_state", "the layer call context"
    )
    return global_state.get_global_attribute("current_call_ctx")


def data_layer_seed(layer):
    """The seed a `DataLayer` draws from on the backend it runs on now
    (`DataLayer._get_seed_generator(self.backend._backend)`: TensorFlow's
    inside `tf.data`). Checked on Keras 3.15.1."""
    return layer._get_seed_generator(layer.backend._backend)


# === Names (objectives/base.py, models/_legacy_layout.py) ===


def to_snake_case(name):
    """Keras's snake case of a class name (`keras.src.utils.naming`): the
    default key of an objective, and the names Keras gives layers in a
    `.keras` file. Checked on Keras 3.15.1."""
    return _keras_src("utils.naming", "to_snake_case", "snake-case names")(name)


# === Layers and models ===


def flatten_layers(layer):
    """`layer` and every layer nested in it, sublayers held as attributes
    included (`Layer._flatten_layers`, which `Model.layers` does not match):
    the batch norms of global batch norm (distribute). Checked on Keras
    3.15.1."""
    return layer._flatten_layers(include_self=True, recursive=True)


def own_variables(layer):
    """The variables `layer` made itself (`Layer._trainable_variables +
    _non_trainable_variables`), not its sublayers': an objective's state in
    an old `.keras` file (models/_legacy_layout.py). Checked on Keras
    3.15.1."""
    return layer._trainable_variables + layer._non_trainable_variables


def is_functional(model):
    """Whether `model` keeps a functional graph (`keras.Model(inputs,
    outputs)`, its subclasses): it has `_operations` and
    `_run_through_graph` (layers/fast_layers.py). Checked on Keras 3.15.1."""
    return hasattr(model, "_operations") and hasattr(model, "_run_through_graph")


def batch_norm_reduction_axes(layer):
    """The axes a built `BatchNormalization` reduces over for its moments
    (`_reduction_axes`). Checked on Keras 3.15.1."""
    return layer._reduction_axes


def replace_batch_norm_moments(layer, moments):
    """Makes `layer` (a `BatchNormalization`) compute its batch moments with
    `moments(inputs, mask)`: its `call` reads `self._moments`, here set on
    the instance (global batch norm across torch processes, where Keras's
    `synchronized` is refused). Checked on Keras 3.15.1."""
    layer._moments = moments


def restore_batch_norm_moments(layer):
    """Undoes `replace_batch_norm_moments`."""
    del layer._moments


def batch_norm_moments_replaced(layer):
    """Whether `replace_batch_norm_moments` is in force on `layer`."""
    return "_moments" in vars(layer)


# === Keras's torch train and test steps (distribute/_torch.py) ===


def call_has_training_arg(model):
    """Whether `model.call` takes `training` (`Layer._call_has_training_arg`),
    as Keras's torch `train_step` asks. Checked on Keras 3.15.1."""
    return model._call_has_training_arg


def compute_loss(model, **kwargs):
    """`Trainer._compute_loss`, which Keras's steps call: `compute_loss`
    with the `training` flag passed when it takes one. Checked on Keras
    3.15.1."""
    return model._compute_loss(**kwargs)


def loss_tracker(model):
    """The `Mean` metric behind the `loss` log of a compiled model
    (`Trainer._loss_tracker`). Checked on Keras 3.15.1."""
    return model._loss_tracker


# === BackupAndRestore (callbacks/backup_and_restore.py) ===


def backup_paths(callback):
    """The files of a `keras.callbacks.BackupAndRestore`: `weights`,
    `previous_weights`, `metadata` and `previous_metadata` (its
    `_weights_path`, `_prev_weights_path`, `_training_metadata_path`,
    `_prev_training_metadata_path`). Checked on Keras 3.15.1."""
    return {
        "weights": callback._weights_path,
        "previous_weights": callback._prev_weights_path,
        "metadata": callback._training_metadata_path,
        "previous_metadata": callback._prev_training_metadata_path,
    }


# === Optimizers (optimizers/lars.py) ===


def variable_index(optimizer, variable):
    """The index of `variable` in the optimizer's slot lists
    (`BaseOptimizer._get_variable_index`). Checked on Keras 3.15.1."""
    return optimizer._get_variable_index(variable)


# === TensorFlow (distribute/, models/_pretrainer_inputs.py) ===


def tf_in_multi_worker_mode(strategy):
    """Whether a `tf.distribute` strategy trains across workers
    (`strategy.extended._in_multi_worker_mode()`; `False` where the
    strategy has none). Checked on TensorFlow 2.21 with Keras 3.15.1."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def tf_dataset_batch_size(dataset):
    """The batch size of a `tf.data.Dataset`, -1 where it cannot be told
    (`tensorflow.python.data.experimental.ops.distribute.compute_batch_size`,
    which Keras's own TF data adapter uses). Checked on TensorFlow 2.21."""
    from tensorflow.python.data.experimental.ops import distribute

    return int(distribute.compute_batch_size(dataset).numpy())


def per_replica_spec(spec):
    """The first replica's spec of a distributed dataset's `PerReplicaSpec`
    (`_value_specs`), or `spec` itself for any other spec. Checked on
    TensorFlow 2.21."""
    return getattr(spec, "_value_specs", [spec])[0]


# === Checks (tests/keras_compat_test.py) ===


def _check_data_layer():
    data_layer = data_layer_class()
    assert callable(getattr(data_layer, "_get_seed_generator", None)), (
        "DataLayer._get_seed_generator is gone"
    )
    layer = data_layer()
    assert isinstance(getattr(layer.backend, "_backend", None), str), (
        "DataLayer.backend._backend is gone"
    )


def _check_call_context():
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, inputs):
            seen.append(current_call_context())
            return inputs

    probe = Probe()
    assert current_call_context() is None, "a call context outside any call"
    probe(keras.ops.zeros((1, 1)))
    assert seen and seen[0].entry_layer is probe, (
        "the call context's entry_layer is not the called layer"
    )


def _check_model_internals():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert isinstance(call_has_training_arg(model), bool)
    assert "training" in inspect.signature(model._compute_loss).parameters
    assert isinstance(loss_tracker(model), keras.metrics.Mean)
    assert [id(x) for x in flatten_layers(model)][0] == id(model)
    dense = model.layers[0]
    assert len(own_variables(dense)) == 2


def _check_batch_norm():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 3))
    assert tuple(batch_norm_reduction_axes(layer)) == (0,)
    assert "self._moments(" in inspect.getsource(
        keras.layers.BatchNormalization.call
    ), "BatchNormalization.call no longer reads self._moments"
    replace_batch_norm_moments(layer, lambda inputs, mask: None)
    assert batch_norm_moments_replaced(layer)
    restore_batch_norm_moments(layer)
    assert not batch_norm_moments_replaced(layer)


def _check_functional():
    inputs = keras.Input((2,))
    assert is_functional(keras.Model(inputs, keras.layers.Dense(1)(inputs)))
    assert not is_functional(keras.layers.Dense(1))


def _check_backup_and_restore():
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        paths = backup_paths(keras.callbacks.BackupAndRestore(directory))
    assert all(isinstance(path, str) for path in paths.values())
    assert callable(getattr(keras.callbacks.BackupAndRestore, "_save_model", None))


def _check_optimizer():
    optimizer = keras.optimizers.SGD()
    variable = keras.Variable([1.0])
    optimizer.build([variable])
    assert variable_index(optimizer, variable) == 0
    assert callable(getattr(keras.optimizers.Optimizer, "_apply_weight_decay", None))


def _check_tensorflow():
    import tensorflow as tf

    assert not tf_in_multi_worker_mode(tf.distribute.get_strategy())
    from tensorflow.python.distribute import collective_all_reduce_strategy

    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    assert callable(getattr(extended, "_in_multi_worker_mode", None)), (
        "MultiWorkerMirroredStrategy.extended._in_multi_worker_mode is gone"
    )
    dataset = tf.data.Dataset.range(8).batch(4)
    assert tf_dataset_batch_size(dataset) == 4
    spec = tf.TensorSpec((4,))
    assert per_replica_spec(spec) is spec


def _check_autocast_off():
    variable = keras.Variable([1.0], dtype="float32")
    cast = _keras_src(
        "backend.common.variables", "AutocastScope", "reading variables uncast"
    )("bfloat16")
    with cast:
        assert keras.backend.standardize_dtype(variable.value.dtype) == "bfloat16"
        with autocast_off():
            assert keras.backend.standardize_dtype(variable.value.dtype) == "float32"


INTERNALS = (
    Internal(
        "keras.src.layers.preprocessing.data_layer.DataLayer, "
        "DataLayer._get_seed_generator, DataLayer.backend._backend",
        "layers/data_layer.py",
        "base of the augmentation layers, which run in tf.data on any "
        "backend; the seed of the backend in use",
        _check_data_layer,
    ),
    Internal(
        "keras.src.backend.common.variables.AutocastScope",
        "models/_gradient_cache.py",
        "the float32 values of the variables inside a mixed-precision call, "
        "which the cached gradient is taken with respect to",
        _check_autocast_off,
    ),
    Internal(
        "keras.src.backend.common.global_state 'current_call_ctx' "
        "(CallContext.entry_layer)",
        "layers/data_layer.py",
        "tell a layer called by the user (its inputs checked) from one "
        "called inside a model",
        _check_call_context,
    ),
    Internal(
        "keras.src.utils.naming.to_snake_case",
        "objectives/base.py, models/_legacy_layout.py",
        "an objective's default key; the names of layers in old .keras files",
        lambda: to_snake_case("SimCLRObjective"),
    ),
    Internal(
        "Layer._flatten_layers, Layer._trainable_variables, "
        "Layer._non_trainable_variables, Layer._call_has_training_arg, "
        "Trainer._compute_loss, Trainer._loss_tracker",
        "distribute/__init__.py, distribute/_torch.py, models/_legacy_layout.py",
        "nested batch norms of global batch norm; an objective's own state "
        "in old .keras files; the torch train and test steps across processes",
        _check_model_internals,
    ),
    Internal(
        "BatchNormalization._moments, BatchNormalization._reduction_axes",
        "distribute/_torch.py, distribute/__init__.py",
        "global batch norm across torch.distributed processes",
        _check_batch_norm,
    ),
    Internal(
        "Functional._operations, Functional._run_through_graph",
        "layers/fast_layers.py",
        "tell a functional model from a subclassed one",
        _check_functional,
    ),
    Internal(
        "BackupAndRestore._weights_path, _prev_weights_path, "
        "_training_metadata_path, _prev_training_metadata_path, _save_model",
        "callbacks/backup_and_restore.py",
        "fall back to the previous backup on the files alone (several "
        "processes); save the random state with each backup",
        _check_backup_and_restore,
    ),
    Internal(
        "BaseOptimizer._get_variable_index, BaseOptimizer._apply_weight_decay",
        "optimizers/lars.py",
        "LARS's slot variables; LARS adds weight decay to the gradient",
        _check_optimizer,
    ),
    Internal(
        "tf.distribute StrategyExtended._in_multi_worker_mode, "
        "tensorflow.python.data.experimental.ops.distribute.compute_batch_size, "
        "PerReplicaSpec._value_specs",
        "distribute/_tensorflow.py, distribute/_torch.py, "
        "models/_pretrainer_inputs.py",
        "multi-worker logs and shared batches; a dataset's global batch "
        "size; a distributed dataset's input shape",
        _check_tensorflow,
    ),
)
