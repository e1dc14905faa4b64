"""Kills one of two `torchrun` processes of examples/pretrain.py mid-epoch and
checks that the restarted pair resumes from the last backup and ends at the
planned step count.

`torchrun --max_restarts=1` runs the script as two gloo processes
(`--strategy=torch_ddp`); the test SIGKILLs process 1 once a backup from
inside the second epoch exists, and torchrun stops process 0 and restarts
both, as it does after a failure on a cluster. Both attempts run under the
probe of tests/examples/resume_test.py, one state folder per attempt and
process: the restarted processes must start from bit-identical weights,
optimizer variables and batch-norm statistics, equal to those process 0
had after the step the backup holds, and each process from its own
augmentation random state of that step.

Two training processes twice: PyTorch backend only (about 1.5 minutes on 2
CPU cores).
"""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from tests.examples.resume_test import (
    EPOCHS,
    PROBE,
    ROOT,
    STEPS_PER_EPOCH,
    environment,
    load_state,
    read_backup_position,
    script_arguments,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="starts torchrun processes: run once, on the PyTorch backend",
)

# The probe of resume_test.py, with a state folder per attempt and process
# (torchrun numbers its restarts), and this process's id written there.
RANKED_PROBE = r"""
import faulthandler
import os
import sys

# A process that waits for a dead peer fails the test instead of hanging it.
faulthandler.dump_traceback_later(240, exit=True)

sys.argv[1] = os.path.join(
    sys.argv[1],
    f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    f"_rank{os.environ['RANK']}",
)
os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "pid"), "w") as f:
    f.write(str(os.getpid()))
""" + PROBE


def command(probe_path, state_dir, model_dir):
    script = os.path.join(ROOT, "examples", "pretrain.py")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", "--max_restarts=1", "--monitor_interval=0.1",
        str(probe_path), str(state_dir), script, "--strategy=torch_ddp",
        *script_arguments(model_dir), "--knn_every=0", "--noplots",
    ]


def test_killed_process_restarts_with_its_peer_from_the_last_backup(tmp_path):
    probe_path = tmp_path / "probe.py"
    probe_path.write_text(RANKED_PROBE)
    model_dir, state_dir = tmp_path / "run", tmp_path / "states"
    env = dict(environment(), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    log_path = tmp_path / "torchrun.log"
    with open(log_path, "w") as log:
        run = subprocess.Popen(
            command(probe_path, state_dir, model_dir), env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert run.poll() is None, log_path.read_text()[-3000:]
            position = read_backup_position(model_dir / "backup")
            if position and position[0] >= 1 and position[1] < STEPS_PER_EPOCH - 1:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("no backup from inside epoch 2 appeared in time")
        victim = int((state_dir / "attempt0_rank1" / "pid").read_text())
        os.kill(victim, signal.SIGKILL)
        returncode = run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert returncode == 0, log_path.read_text()[-3000:]
    epoch, batch = position
    backed_up_steps = epoch * STEPS_PER_EPOCH + batch + 1

    # The second attempt of both processes started from the backup, inside
    # epoch 2, with the same weights, equal to process 0's at that step.
    planned = STEPS_PER_EPOCH * EPOCHS
    starts = [load_state(state_dir / f"attempt1_rank{rank}" / "start.json") for rank in (0, 1)]
    step = starts[0]["step"]
    assert starts[1]["step"] == step
    assert backed_up_steps <= step < planned
    for rank, start in enumerate(starts):
        backed_up = load_state(state_dir / f"attempt0_rank{rank}" / f"step_{step}.json")
        different = [
            entry["path"]
            for key, entry in backed_up["variables"].items()
            if entry["group"] != "metrics"
            and start["variables"][key]["sha256"] != entry["sha256"]
        ]
        assert not different, f"process {rank} not restored: {different}"
    shared = [
        key for key, entry in starts[0]["variables"].items()
        if entry["group"] in ("trainable", "non_trainable", "optimizer")
    ]
    assert shared and all(
        starts[0]["variables"][key]["sha256"] == starts[1]["variables"][key]["sha256"]
        for key in shared
    )
    # The processes draw their own views: their random states differ.
    assert any(
        entry["group"] == "other"
        and starts[1]["variables"][key]["sha256"] != entry["sha256"]
        for key, entry in starts[0]["variables"].items()
    )

    # Exactly the planned steps in all; process 0 wrote the results.
    results = json.loads((model_dir / "results.json").read_text())
    assert results["processes"] == 2
    assert results["steps"] == results["optimizer_steps"] == planned
    assert results["resumed_from_step"] == step
    assert results["epochs_run"][-1] == EPOCHS
    assert not os.path.exists(model_dir / "backup")
