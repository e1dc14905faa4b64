"""Several replicas must train exactly like one device on the global batch.

The multi-device runs happen in subprocesses (tests/distribute/distribute_worker.py), so
that logical devices, XLA host devices and multi-worker clusters cannot leak
into other tests: TensorFlow MirroredStrategy over two logical CPU devices,
MultiWorkerMirroredStrategy over two worker processes on 127.0.0.1, and JAX
DataParallel over two host devices. Each trains a small convnet with batch
norm in the encoder and in the projection head for 3 SGD steps and is
compared with one device: the loss of every step and every weight
(batch-norm statistics included). The TensorFlow run also removes, in turn,
the cross-replica gather, the loss scaling and the batch-norm sync, and
checks that each removal breaks the equality.

Cached gradients (`gradient_chunk_size`) are compared the same way: on
each engine, two devices with chunks of 2 images each train exactly as one
device with chunks of 4 (the chunk size counts the images on each device),
for SimCLR, SupCon and Barlow Twins; under MirroredStrategy from a dataset
whose batches have no static size, and without the gather far off.
"""

import json
import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from keras_simclr import distribute

from tests.distribute import processes
from tests.testing import free_port

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distribute_worker.py")
BACKEND = keras.backend.backend()
# float32 reductions split over two devices add up in another order.
LOSS_RTOL = 1e-5
# Relative and absolute, as in the process tests: VICReg's weights grow to
# about 10, where float32 summation order alone moves them by ~1e-5.
WEIGHT_RTOL = 1e-5
WEIGHT_ATOL = 1e-5

tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.distribute runs on the TensorFlow backend"
)
jax_only = pytest.mark.skipif(
    BACKEND != "jax", reason="keras.distribution runs on the JAX backend"
)


def _run_worker(mode, out, backend, **env):
    processes.run(
        WORKER,
        [f"--mode={mode}", f"--out={out}"],
        processes.environment(backend, **env),
        out.with_suffix(".log"),
    )
    return np.load(out)


def _weights(result, prefix):
    names = sorted(
        (k for k in result.files if k.startswith(f"{prefix}/weight_")),
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    return [result[name] for name in names]


def _assert_same_training(
    result, prefix, reference, reference_prefix="single", weight_atol=WEIGHT_ATOL
):
    np.testing.assert_allclose(
        result[f"{prefix}/losses"], reference[f"{reference_prefix}/losses"],
        rtol=LOSS_RTOL,
    )
    weights = _weights(result, prefix)
    expected = _weights(reference, reference_prefix)
    assert len(weights) == len(expected) > 0
    for index, (got, want) in enumerate(zip(weights, expected)):
        np.testing.assert_allclose(
            got, want, rtol=WEIGHT_RTOL, atol=weight_atol, err_msg=f"weight {index}"
        )


def _largest_weight_difference(result, prefix):
    return max(
        float(np.max(np.abs(got - want)))
        for got, want in zip(_weights(result, prefix), _weights(result, "single"))
    )


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "result.npz"
    return _run_worker("mirrored", out, "tensorflow")


@tensorflow_only
def test_mirrored_two_replicas_equal_one_device(mirrored):
    _assert_same_training(mirrored, "distributed", mirrored)


@tensorflow_only
@pytest.mark.parametrize("ablation", ["no_gather", "no_scale", "no_sync_bn"])
def test_mirrored_equality_needs_gather_scaling_and_bn_sync(mirrored, ablation):
    # Without any one of the three, the weights after 3 steps are far off:
    # the equality above is not an accident of a too-small learning rate.
    assert _largest_weight_difference(mirrored, "distributed") < WEIGHT_ATOL
    assert _largest_weight_difference(mirrored, ablation) > 1e-2


@tensorflow_only
@pytest.mark.parametrize(
    "objective",
    [
        "supcon", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "unigrad",
        "simclr_memory",
    ],
)
def test_mirrored_two_replicas_equal_one_device_for_every_objective(
    mirrored, objective
):
    # Gathered negatives (supcon, moco's queue), global batch statistics
    # (barlow_twins, vicreg, unigrad's correlation), synchronised batch norm
    # in the prediction head and the momentum target (byol, simsiam, moco).
    # SimCLR v2's memory queue holds the momentum network's normalised
    # projections; the order of float32 reductions moves them in the fifth
    # decimal (1.2e-5 at most, measured), the losses still within 1e-5.
    _assert_same_training(
        mirrored, f"{objective}/distributed", mirrored, f"{objective}/single",
        weight_atol=5e-5 if objective == "simclr_memory" else WEIGHT_ATOL,
    )


CHUNKED_OBJECTIVES = ("simclr", "supcon", "barlow_twins")


@tensorflow_only
@pytest.mark.parametrize("objective", CHUNKED_OBJECTIVES)
def test_mirrored_cached_gradients_equal_one_device(mirrored, objective):
    # gradient_chunk_size counts the images of a chunk on each replica:
    # chunks of 2 on each of two replicas (4 images each) hold what one
    # device's chunks of 4 of the 8 hold, with synchronised statistics.
    _assert_same_training(
        mirrored, f"chunked/{objective}/distributed", mirrored,
        f"chunked/{objective}/single",
    )


@tensorflow_only
def test_mirrored_cached_gradients_need_the_gather(mirrored):
    # Without the gather each replica's cache holds the gradient of its own
    # loss, as plain accumulation would: far off.
    weights = _weights(mirrored, "chunked/simclr/no_gather")
    expected = _weights(mirrored, "chunked/simclr/single")
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights, expected)) > 1e-2


@tensorflow_only
def test_global_batch_norm_is_not_left_in_the_layers(mirrored):
    # `synchronized=True` is TensorFlow-only: a saved config holding it
    # would not load on JAX or PyTorch.
    flags = mirrored["synchronized_after_fit"]
    assert flags.size > 0 and not flags.any()


def _run_two_workers(mode, tmp_path):
    """Runs `mode` in two MultiWorkerMirroredStrategy workers on loopback,
    each writing `tmp_path / worker_<index>.npz`."""
    ports = [free_port(), free_port()]
    workers, logs = [], []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        out = tmp_path / f"worker_{index}.npz"
        logs.append(out.with_suffix(".log"))
        workers.append(
            processes.start(
                WORKER,
                [f"--mode={mode}", f"--out={out}"],
                processes.environment("tensorflow", TF_CONFIG=json.dumps(tf_config)),
                logs[-1],
            )
        )
    processes.wait(workers, logs, timeout=300)


@tensorflow_only
def test_multi_worker_two_processes_equal_one_device(mirrored, tmp_path):
    _run_two_workers("multi_worker", tmp_path)
    for index in range(2):
        result = np.load(tmp_path / f"worker_{index}.npz")
        _assert_same_training(result, "distributed", mirrored)


@tensorflow_only
def test_multi_worker_shuffled_pipeline_gives_every_image_once(tmp_path):
    # Two MultiWorkerMirroredStrategy workers, each seeded its own way
    # (keras.utils.set_random_seed(100 + index)), distribute a
    # pretraining_dataset of 64 images at batch 16, shuffled (seed=5) and
    # with views made per image in parallel (deterministic=False), as
    # Keras's fit() does: every image reaches one worker once per epoch.
    _run_two_workers("multi_worker_data", tmp_path)
    results = [np.load(tmp_path / f"worker_{index}.npz") for index in range(2)]
    orders = []
    for epoch in range(2):
        parts = [result[f"full_image/epoch_{epoch}"] for result in results]
        assert sorted(np.concatenate(parts).tolist()) == list(range(64))
        assert [len(part) for part in parts] == [32, 32]
        orders.append(np.concatenate(parts))
    assert not np.array_equal(orders[0], np.sort(orders[0]))
    assert not np.array_equal(orders[0], orders[1])


@jax_only
def test_jax_data_parallel_two_devices_equal_one_device(tmp_path):
    result = _run_worker(
        "data_parallel",
        tmp_path / "result.npz",
        "jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert np.all(result["devices_per_variable"] == 2)
    _assert_same_training(result, "distributed", result)
    _assert_same_training(result, "byol/distributed", result, "byol/single")
    assert "global_bn=False" in str(result["global_bn_false_error"])
    # Cached gradients: a chunk holds gradient_chunk_size images on each
    # device, so chunks of 2 on two devices are one device's chunks of 4.
    for objective in CHUNKED_OBJECTIVES:
        _assert_same_training(
            result, f"chunked/{objective}/distributed", result,
            f"chunked/{objective}/single",
        )


# === One device: the helpers change nothing ===


def test_helpers_are_identities_on_one_device():
    x = keras.random.normal((4, 3))
    assert distribute.num_replicas_in_sync() == 1
    assert distribute.num_data_parallel_devices() == 1
    assert distribute.replica_id() == 0
    np.testing.assert_array_equal(
        ops.convert_to_numpy(distribute.cross_replica_concat(x)),
        ops.convert_to_numpy(x),
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(distribute.scale_loss(ops.sum(x))),
        ops.convert_to_numpy(ops.sum(x)),
    )


def test_cross_replica_loss_equals_local_loss_on_one_device():
    z_a = keras.random.normal((6, 16), seed=1)
    z_b = keras.random.normal((6, 16), seed=2)
    local = keras_simclr.losses.contrastive_metrics(z_a, z_b, 0.2)
    gathered = keras_simclr.losses.contrastive_metrics(
        z_a, z_b, 0.2, cross_replica=True
    )
    for a, b in zip(local, gathered):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6
        )


def test_global_batch_norm_changes_nothing_on_one_device():
    head = keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=4)
    head.build((None, 8))
    with distribute.global_batch_norm(None, [head], enabled=True):
        flags = [
            layer.synchronized
            for layer in head._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
    assert flags and not any(flags)
    assert head.get_config() == keras_simclr.layers.ProjectionHead(
        hidden_dim=8, output_dim=4
    ).get_config() | {"name": head.name}


@pytest.mark.skipif(BACKEND != "torch", reason="the torch multi-process check")
@pytest.mark.parametrize("model", ["classifier", "distiller"])
def test_torch_multi_process_training_is_refused_without_the_distributed_step(
    monkeypatch, model
):
    # The pretrainer trains across processes (tests/distribute/torch_ddp_test.py); the
    # models without its distributed step refuse rather than train each
    # process alone.
    import torch.distributed as dist

    encoder = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()]
    )
    if model == "classifier":
        trained = keras_simclr.models.SimCLRClassifier(encoder, num_classes=2)
        name = "SimCLRClassifier"
    else:
        student = keras.Sequential(
            [keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
             keras.layers.Dense(2)]
        )
        teacher = keras.Sequential([encoder, keras.layers.Dense(2)])
        trained = keras_simclr.models.SimCLRDistiller(teacher=teacher, student=student)
        name = "SimCLRDistiller"
    trained.compile(optimizer="sgd")
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    with pytest.raises(RuntimeError, match=f"{name} .*process group of 2 processes"):
        trained.fit(np.zeros((4, 8, 8, 3), "float32"), np.zeros((4,)), batch_size=4)
