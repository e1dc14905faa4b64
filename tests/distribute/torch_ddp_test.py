"""Two `torch.distributed` processes must train exactly like one process.

PyTorch backend only. tests/distribute/torch_ddp_worker.py runs the tiny pretrainers of
tests/distribute/distribute_worker.py (a convnet with batch norm in the encoder and the
heads, fixed views, 3 SGD steps on a global batch of 8) once in a single
process and once as two gloo processes on 127.0.0.1, each given the same
arrays and the global `batch_size`. Every objective is compared: the loss of
every step, and every weight and batch-norm statistic, on both processes.
Process 1 starts from other weights than process 0, so the equality also
needs `fit()`'s broadcast of process 0's weights. Removing, in turn, the
gather of negatives, the sum of the gradients over the processes and the
batch-norm sync must each break the equality. `evaluate()` with a last,
partial global batch and a weight that gets no gradient (a probe trained
without labels, with momentum and weight decay) must also match one
process. With shuffling on and a different global seed in each process,
as users seed them, every image must be trained exactly once per epoch,
from arrays (the images each process's steps saw) and from a full-image
pipeline whose views are made in parallel out of order (the batches
`fit()` takes in each process). With cached gradients
(`gradient_chunk_size`, 2 images per chunk in each process), two processes
train as one process with chunks of 4, and not without the gather.
"""

import hashlib
import os

import keras
import numpy as np
import pytest

from tests.distribute import processes
from tests.testing import free_port

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="torch.distributed runs on the PyTorch backend",
)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_ddp_worker.py")
OBJECTIVES = (
    "simclr", "supcon", "moco", "byol", "simsiam", "barlow_twins", "vicreg",
    "unigrad", "simclr_memory",
)
# float32 sums over two processes add up in another order: measured 1e-6
# relative on the losses and 1.2e-5 on weights of magnitude 8 (VICReg). The
# step losses are recovered from Keras's running means, so SimSiam's,
# near 0.01, carries an absolute error of about 1e-6.
LOSS_RTOL, LOSS_ATOL = 1e-5, 2e-6
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("torch_ddp")
    single = directory / "single.npz"
    processes.run(
        WORKER,
        ["--mode=single", f"--out={single}"],
        processes.environment("torch"),
        directory / "single.log",
    )
    port = str(free_port())
    ranks = [directory / f"rank_{rank}.npz" for rank in range(2)]
    logs = [out.with_suffix(".log") for out in ranks]
    processes.wait(
        [
            processes.start(
                WORKER,
                ["--mode=ddp", f"--out={out}"],
                processes.environment(
                    "torch", RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                    MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                ),
                log,
            )
            for rank, (out, log) in enumerate(zip(ranks, logs))
        ],
        logs,
    )
    return np.load(single), [np.load(out) for out in ranks]


def _weights(result, prefix):
    names = sorted(
        (k for k in result.files if k.startswith(f"{prefix}/weight_")),
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    return [result[name] for name in names]


def _digest(weights):
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _largest_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_processes_equal_one_process(runs, objective):
    single, ranks = runs
    expected = _weights(single, objective)
    assert len(expected) > 0
    for result in ranks:
        # The logs are averaged over the processes: the global batch's loss.
        np.testing.assert_allclose(
            result[f"{objective}/losses"], single[f"{objective}/losses"],
            rtol=LOSS_RTOL, atol=LOSS_ATOL,
        )
        got = _weights(result, objective)
        assert len(got) == len(expected)
        for index, (g, w) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(
                g, w, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"weight {index}"
            )


@pytest.mark.parametrize(
    "evaluation",
    ["evaluation", "evaluation_partial_arrays", "evaluation_partial_dataset"],
)
def test_evaluation_across_processes_equals_one_process(runs, evaluation):
    # The trained SimCLR model's loss and contrastive accuracy over all the
    # images, each process scoring its share against the gathered batch:
    # also with a last, partial global batch (24 images at batch 16, and a
    # dataset batched by 10), which one process scores whole.
    single, ranks = runs
    for result in ranks:
        np.testing.assert_allclose(
            result[evaluation], single[evaluation], rtol=LOSS_RTOL, atol=LOSS_ATOL
        )
    # The last batch counts: without it the figures are others.
    assert np.max(
        np.abs(single["evaluation_partial_arrays"] - single["evaluation"])
    ) > 1e-3


def test_a_weight_without_gradient_on_every_process_stays_untouched(runs):
    # A linear probe trained without labels: Keras skips its weights on
    # one process, so momentum and weight decay leave them where they were;
    # so must two processes, which train everything else as one does.
    single, ranks = runs
    initial = _weights(single, "probe_initial")
    assert len(initial) == 2
    for result in [single, *ranks]:
        for got, want in zip(_weights(result, "probe_trained"), initial):
            np.testing.assert_array_equal(got, want)
    expected = _weights(single, "no_gradient")
    for result in ranks:
        got = _weights(result, "no_gradient")
        assert len(got) == len(expected) > 0
        for index, (g, w) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(
                g, w, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"weight {index}"
            )


def _every_image_once_per_epoch(ranks, prefix, num_images, epochs):
    for epoch in range(epochs):
        parts = [result[f"{prefix}/epoch_{epoch}"] for result in ranks]
        # Every image, each in exactly one process, once.
        assert sorted(np.concatenate(parts).tolist()) == list(range(num_images))
        assert all(len(part) == num_images // len(ranks) for part in parts)
    # Shuffled, and shuffled anew each epoch.
    first = np.concatenate([ranks[0][f"{prefix}/epoch_{e}"] for e in range(epochs)])
    orders = first.reshape(epochs, -1)
    assert not np.array_equal(orders[0], np.sort(orders[0]))
    assert not np.array_equal(orders[0], orders[1])


def test_shuffled_arrays_train_every_image_once_per_epoch(runs):
    # fit(shuffle=True) on 64 arrays at batch 16 for 2 epochs, process r
    # seeded with keras.utils.set_random_seed(100 + r): the images each
    # process's steps trained on.
    _, ranks = runs
    _every_image_once_per_epoch(ranks, "shuffled", 64, 2)


def test_full_image_pipeline_gives_every_image_once_per_epoch(runs):
    # pretraining_dataset's shuffle (seed=5) and views made per image in
    # parallel with deterministic=False, each process with its own global
    # seed: the batches fit() takes in each process.
    _, ranks = runs
    _every_image_once_per_epoch(ranks, "full_image", 64, 2)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_processes_hold_identical_weights(runs, objective):
    # Checked, not assumed: the same summed gradients on every process.
    _, ranks = runs
    assert _digest(_weights(ranks[0], objective)) == _digest(
        _weights(ranks[1], objective)
    )


@pytest.mark.parametrize("ablation", ["no_gather", "no_gradient_sum", "no_sync_bn"])
def test_equality_needs_gather_gradient_sum_and_bn_sync(runs, ablation):
    single, ranks = runs
    expected = _weights(single, "simclr")
    assert _largest_difference(_weights(ranks[0], "simclr"), expected) < 1e-4
    assert _largest_difference(_weights(ranks[0], ablation), expected) > 1e-2


def test_models_without_the_distributed_step_refuse(runs):
    _, ranks = runs
    message = str(ranks[0]["classifier_error"])
    assert "SimCLRClassifier" in message and "2 processes" in message


@pytest.mark.parametrize("objective", ["simclr", "supcon", "barlow_twins"])
def test_cached_gradients_on_two_processes_equal_one_process(runs, objective):
    # gradient_chunk_size counts the images of a chunk in each process:
    # chunks of 2 in each of two processes (4 images each) hold what one
    # process's chunks of 4 of the 8 hold, and the statistics of a chunk
    # are synchronised across the processes. Losses of every step and
    # every weight after 3 steps, on both processes.
    single, ranks = runs
    prefix = f"chunked/{objective}"
    expected = _weights(single, f"{prefix}/single")
    assert len(expected) > 0
    for result in ranks:
        np.testing.assert_allclose(
            result[f"{prefix}/distributed/losses"], single[f"{prefix}/single/losses"],
            rtol=LOSS_RTOL, atol=LOSS_ATOL,
        )
        got = _weights(result, f"{prefix}/distributed")
        assert len(got) == len(expected)
        for index, (g, w) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(
                g, w, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"weight {index}"
            )
    # Without the gather, each process's cache holds the gradient of its
    # own loss: far off.
    no_gather = _weights(ranks[0], "chunked/simclr/no_gather")
    assert _largest_difference(no_gather, _weights(single, "chunked/simclr/single")) > 1e-2
