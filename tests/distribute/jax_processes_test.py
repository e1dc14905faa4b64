"""Two JAX processes must train exactly like one process on the global batch.

Two worker processes (tests/distribute/jax_processes_worker.py) join one
`jax.distributed` group on 127.0.0.1 through
`keras_simclr.distribute.initialize_jax_processes`, each with one CPU device
and gloo collectives, and train the tiny pretrainer of
tests/distribute/distribute_worker.py for 3 SGD steps under
`keras.distribution.DataParallel()` over the global device list: SimCLR,
BYOL (momentum target) and VICReg (statistics of the global batch), fed
global batches. A third process trains the same models alone on one
device. Each process's logged loss of every step and its weights
(batch-norm statistics included) must equal the reference's; so must a
backup of `keras_simclr.callbacks.BackupAndRestore` written after step 2
and the files process 0 saves alone. Handing both processes the same half
of each global batch must break the equality. With shuffling on and each
process seeded its own way, every image must reach exactly one process
once per epoch, from arrays and from a full-image pipeline.

The multi-process runs happen in subprocesses: `jax.distributed` can be
initialised once per process and must not leak into other tests.
"""

import os

import keras
import numpy as np
import pytest

import keras_simclr

from tests.distribute import processes
from tests.testing import free_port

WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "jax_processes_worker.py"
)
NUM_PROCESSES = 2
# float32 reductions split over two processes add up in another order.
LOSS_RTOL = 1e-5
# Relative and absolute, as in the torch DDP test: VICReg's weights grow to
# about 10, where float32 summation order alone moves them by ~1e-5.
WEIGHT_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
TIMEOUT = 300

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="jax.distributed runs on the JAX backend",
)


def _start(arguments, log_path):
    # One device per process: the devices of the group are the processes'.
    env = processes.environment("jax", JAX_PLATFORMS="cpu", XLA_FLAGS=None)
    return processes.start(WORKER, arguments, env, log_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jax_processes")
    backup_dir = directory / "backup"
    coordinator = f"127.0.0.1:{free_port()}"
    outs = [directory / f"process_{i}.npz" for i in range(NUM_PROCESSES)]
    logs = [directory / f"process_{i}.log" for i in range(NUM_PROCESSES)]
    workers = [
        _start(
            [
                "--role=process",
                f"--coordinator={coordinator}",
                f"--num_processes={NUM_PROCESSES}",
                f"--process_id={i}",
                f"--backup_dir={backup_dir}",
                f"--out={outs[i]}",
            ],
            logs[i],
        )
        for i in range(NUM_PROCESSES)
    ]
    processes.wait(workers, logs, TIMEOUT)
    # The reference reads back what the group saved.
    reference_log = directory / "reference.log"
    reference = _start(
        ["--role=reference", f"--backup_dir={backup_dir}",
         f"--out={directory / 'reference.npz'}"],
        reference_log,
    )
    processes.wait([reference], [reference_log], TIMEOUT)
    return [np.load(out) for out in outs], np.load(directory / "reference.npz")


def _weights(result, prefix):
    names = sorted(
        (k for k in result.files if k.startswith(f"{prefix}/weight_")),
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    return [result[name] for name in names]


def _assert_same_weights(got, want):
    assert len(got) == len(want) > 0
    for index, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(
            a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"weight {index}"
        )


def _largest_difference(got, want):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(got, want))


def test_every_process_lists_the_devices_of_the_whole_group(runs):
    group, _ = runs
    devices = [list(result["list_devices"]) for result in group]
    local = [list(result["local_devices"]) for result in group]
    assert devices[0] == devices[1]
    assert len(devices[0]) == NUM_PROCESSES
    # One device of its own per process, listed in process order.
    assert [len(own) for own in local] == [1, 1]
    assert devices[0] == local[0] + local[1]
    assert [int(result["process_index"]) for result in group] == [0, 1]


def test_processes_agree_on_initial_weights_without_a_seed(runs):
    # keras.distribution.initialize sums a random seed of every process:
    # unseeded layers start from the same weights everywhere.
    group, _ = runs
    np.testing.assert_array_equal(
        group[0]["unseeded_kernel"], group[1]["unseeded_kernel"]
    )


def test_variables_are_replicated_on_every_device(runs):
    group, _ = runs
    for result in group:
        assert np.all(result["devices_per_variable"] == NUM_PROCESSES)
        assert result["fully_replicated"].all()


@pytest.mark.parametrize("objective", ["simclr", "byol", "vicreg"])
def test_two_processes_equal_one_process(runs, objective):
    # Each process logs the loss of the global batch: Keras's logs come out
    # of the one program over both processes.
    group, reference = runs
    for result in group:
        np.testing.assert_allclose(
            result[f"{objective}/losses"],
            reference[f"{objective}/losses"],
            rtol=LOSS_RTOL,
        )
        _assert_same_weights(
            _weights(result, objective), _weights(reference, objective)
        )


def test_arrays_with_the_global_batch_size_equal_one_process(runs):
    group, reference = runs
    if "simclr_arrays/losses" not in group[0].files:
        pytest.skip("keras_simclr.distribute has no per_process_data")
    for result in group:
        np.testing.assert_allclose(
            result["simclr_arrays/losses"], reference["simclr/losses"],
            rtol=LOSS_RTOL,
        )
        _assert_same_weights(
            _weights(result, "simclr_arrays"), _weights(reference, "simclr")
        )


def test_equality_needs_each_process_to_train_on_its_own_slice(runs):
    # Both processes handed the same half of every global batch: the
    # weights after 3 steps are off by far more than the tolerance, relative
    # to how far training moved them.
    group, reference = runs
    trained = _weights(reference, "simclr")
    movement = _largest_difference(trained, _weights(reference, "simclr_initial"))
    for result in group:
        assert _largest_difference(_weights(result, "simclr"), trained) < (
            1e-4 * movement
        )
        assert _largest_difference(_weights(result, "simclr_same"), trained) > (
            1e-2 * movement
        )


@pytest.mark.parametrize("pipeline", ["shuffled", "full_image"])
def test_every_image_is_trained_once_per_epoch(runs, pipeline):
    # Shuffled arrays at batch 16 (per_process_data), and a full-image
    # pipeline (shuffled with seed=5, views made per image in parallel
    # with deterministic=False), each process seeded with
    # keras.utils.set_random_seed(100 + i): the batches Keras's
    # DataParallel gives each process, over 2 epochs of 64 images.
    group, _ = runs
    for epoch in range(2):
        parts = [result[f"{pipeline}/epoch_{epoch}"] for result in group]
        assert sorted(np.concatenate(parts).tolist()) == list(range(64))
        assert [len(part) for part in parts] == [32, 32]
    orders = [
        np.concatenate([result[f"{pipeline}/epoch_{e}"] for result in group])
        for e in range(2)
    ]
    assert not np.array_equal(orders[0], np.sort(orders[0]))
    assert not np.array_equal(orders[0], orders[1])


def test_per_process_batch_norm_is_refused(runs):
    group, _ = runs
    for result in group:
        assert "global_bn=False" in str(result["global_bn_false_error"])


def test_backup_after_step_2_holds_the_weights_of_step_2(runs):
    _, reference = runs
    backup = _weights(reference, "backup")
    _assert_same_weights(backup, _weights(reference, "simclr_2_steps"))
    assert _largest_difference(backup, _weights(reference, "simclr_initial")) > 1e-2


@pytest.mark.parametrize("saved", ["process_0_weights", "process_0_model"])
def test_process_0_saves_the_trained_weights_alone(runs, saved):
    _, reference = runs
    _assert_same_weights(_weights(reference, saved), _weights(reference, "simclr"))


# === Arguments, checked before anything starts ===


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("127.0.0.1", 2, 0), "coordinator_address"),
        ((1234, 2, 0), "coordinator_address"),
        (("127.0.0.1:1234", 0, 0), "num_processes"),
        (("127.0.0.1:1234", 2.0, 0), "num_processes"),
        (("127.0.0.1:1234", 2, 2), "process_id"),
        (("127.0.0.1:1234", 2, -1), "process_id"),
        (("127.0.0.1:1234", 2, True), "process_id"),
        (("a:1,b:2,c:3", 2, 0), "3 addresses"),
    ],
)
def test_initialize_jax_processes_checks_its_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        keras_simclr.distribute.initialize_jax_processes(*arguments)


def test_process_local_variables_changes_nothing_in_one_process():
    distribution = keras.distribution.distribution()
    with keras_simclr.distribute.process_local_variables():
        assert keras.distribution.distribution() is distribution
    assert keras.distribution.distribution() is distribution
