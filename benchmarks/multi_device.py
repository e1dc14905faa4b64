r"""Times a SimCLR pretraining step on 1, 2, ... devices, and its peak memory.

Two measurements, each configuration in its own process (the device setup and
the Keras backend are fixed at import):

1. `speed`: images per second of `SimCLRPretrainer.fit` (ResNet-18 with the
   CIFAR stem, 32x32 images, `SimCLRAugmentation` with the `cifar` preset
   inside the step, 2-layer projection head, SGD with momentum) at a fixed
   global batch, against the number of devices:
   - TensorFlow: no strategy at all, then `tf.distribute.MirroredStrategy`
     over 1, 2, ... logical CPU devices (cross-replica gather of the
     projections, synchronised batch norm, all-reduce of the gradients);
   - JAX: no distribution, then `keras.distribution.DataParallel` over 1, 2,
     ... XLA host devices (`--xla_force_host_platform_device_count`).
   The median of `--steps` steps after `--warmup` untimed ones (the first
   includes tracing and compilation) is reported, in wall time and in CPU
   time of the process (all threads), the latter being less disturbed by
   other processes on a shared machine.

   On one CPU, logical devices are a fiction: all of them share the same cores
   (and, on TensorFlow, the same thread pools). So this measures the cost of
   the replication machinery (gather, batch-norm sync, all-reduce, the split
   of the batch and the smaller per-replica convolutions), not a speed-up; a
   ratio near 1.0 to the no-distribution row means that machinery is cheap. A
   speed-up needs real accelerators.

2. `memory`: peak resident set size of the process (`ru_maxrss`) for global
   batches of 256, 512 and 1024 images on one device without a strategy, on
   TensorFlow (the fastest CPU backend, see docs/design.md, decision 6). Reported:
   the absolute peak, the baseline (peak after imports, data and model
   building) and their difference, the memory the training step itself added.

3. `processes`: the same step trained by several processes on one machine,
   each with its share of the cores (`cores // processes` threads, and its
   own cores by affinity), at the same global batch:
   - PyTorch: 1 process (no process group), then a gloo `torch.distributed`
     group on 127.0.0.1 (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`),
     each process given the same arrays and the global `batch_size`; the
     pretrainer's `fit()` takes each process's slice of every global batch
     and sums the gradients across the processes;
   - JAX: `keras.distribution.initialize` (CPU collectives through gloo)
     and `keras.distribution.DataParallel()` over the devices of all
     processes, with 1 and 2 processes, fed the same arrays (the
     pretrainer's `fit()` makes them a `tf.data` pipeline of global batches,
     which Keras shards per process).
   Images per second are the global batch over process 0's median step
   time. On PyTorch the collectives (`torch.distributed.all_reduce`,
   `all_gather`, `broadcast`) are timed inside the step by a wrapper, per
   caller (gradient sum, gather of the projections, batch-norm moments, the
   logs), and reported as a share of the step; a blocking gloo collective
   also holds the time a process waits for the slower one. Inside a
   compiled JAX step the collectives cannot be timed apart, so the share is
   derived, on both backends, from a reference row: one process alone with
   one process's share of the cores and of the global batch (the same work
   and threads as each process of the group, no collectives); the share is
   (group step - reference step) / group step. On PyTorch the timed and the
   derived shares check each other. The row of 1 process with all cores
   and the whole global batch gives the speed-up of processes over threads
   (`vs. 1 process`).

Images are synthetic random uint8 (the ResNet rescales 0..255 itself): the
speed of a step does not depend on the pixels.

    python benchmarks/multi_device.py                    # defaults, see below
    python benchmarks/multi_device.py --parts=speed --backends=tensorflow --devices=1,2,4
    python benchmarks/multi_device.py --parts=memory --memory_precisions=float32
    python benchmarks/multi_device.py --parts=processes --process_backends=torch,jax

Duration with the defaults on 2 shared cores (AMD EPYC, other jobs running):
about 18 min for `speed` (TensorFlow 1.5 min and JAX 3.5-5 min per
configuration) and 8 min for `memory`; `--memory_precisions=float32,
mixed_bfloat16` adds about 5 min. `processes` is not in the default parts:
it takes about 15 min (PyTorch about 5 min for its three rows, JAX about
10 min), estimated from runs at a global batch of 64. Keep `--warmup` at
2 or more: in the 1-process JAX rows the second step, too, took about four
times the CPU time of the later ones (a second compilation), where the
2-process rows compiled only in the first.

Prints Markdown tables and writes them with the raw numbers to `--output`
(a part that is run replaces that part of an existing file and keeps the
others) and to the same path with `.md`.
"""

# First, before anything loads TensorFlow, which reads its oneDNN setting
# once: importing keras_simclr turns oneDNN on (keras_simclr.cpu_defaults).
from keras_simclr import cpu_defaults  # noqa: F401, E402

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _report import machine_info  # noqa: E402
from _report import write_results  # noqa: E402

IMAGE_SIZE = 32
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy")

NOTE = (
    "Logical devices on one CPU share the same cores: the rows with several "
    "devices measure the overhead of the replication machinery (cross-replica "
    "gather, synchronised batch norm, gradient all-reduce, smaller "
    "per-replica ops), not a speed-up."
)


# === Child process ===


def rss_mib():
    """(current, peak) resident set size of this process in MiB."""
    current = None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    # Linux reports ru_maxrss in KiB.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def setup_devices(config):
    """Creates the logical devices; must run before the backend touches them."""
    devices = config["devices"]
    if config["backend"] == "tensorflow" and config["distribution"] != "none":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )
    # JAX: XLA_FLAGS is set by the parent before this process imports jax.


# Who calls a torch.distributed collective inside the library's step
# (`keras_simclr.distribute._torch`), as the timing reports it.
COLLECTIVE_CALLERS = {
    "sum_gradients": "gradients",
    "_AllGather.forward": "gather",
    "_AllGather.backward": "gather",
    "_AllReduceSum.forward": "batch_norm",
    "_AllReduceSum.backward": "batch_norm",
    "mean_of_logs": "logs",
}


def time_torch_collectives():
    """Wraps the torch.distributed collectives with a wall-time counter.

    Returns:
        A dict, caller category to seconds spent in collectives so far,
        updated in place (categories of `COLLECTIVE_CALLERS`, else the
        calling function's name).
    """
    import threading

    import torch.distributed as dist

    totals = {}
    lock = threading.Lock()

    def wrap(name):
        original = getattr(dist, name)

        def timed(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_qualname
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                key = COLLECTIVE_CALLERS.get(caller, caller)
                with lock:
                    totals[key] = totals.get(key, 0.0) + elapsed

        setattr(dist, name, timed)

    # The library calls them as `dist.<name>` at run time, so the module
    # attribute is what it finds.
    for name in ("all_reduce", "all_gather", "broadcast"):
        wrap(name)
    return totals


def join_processes(config):
    """Joins this process to its group (torch.distributed or JAX) and sets
    its threads; must run before the backend computes anything.

    Returns:
        The collective-time totals of `time_torch_collectives` (torch with
        several processes), else `None`.
    """
    processes = config["processes"]
    if config["backend"] == "torch":
        import torch

        torch.set_num_threads(config["threads"])
        if processes == 1:
            return None
        import torch.distributed as dist

        # RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the parent.
        dist.init_process_group("gloo")
        return time_torch_collectives()
    sys.path.insert(0, ROOT)
    from keras_simclr import distribute

    # gloo CPU collectives, then keras.distribution.initialize.
    distribute.initialize_jax_processes(
        f"127.0.0.1:{config['port']}", processes, config["rank"]
    )
    return None


def child(config):
    setup_devices(config)
    collective_totals = None
    if "processes" in config:
        collective_totals = join_processes(config)
    import keras
    import numpy as np

    sys.path.insert(0, ROOT)
    import keras_simclr

    if config["precision"] == "mixed_bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    batch = config["batch_size"]
    steps = config["warmup"] + config["steps"]
    rng = np.random.default_rng(0)
    images = rng.integers(
        0, 256, size=(batch * steps, IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8"
    )

    def build():
        encoder = keras_simclr.models.ResNet(
            18, cifar_stem=True, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)
        )
        model = keras_simclr.models.SimCLRPretrainer(
            encoder,
            augmentation=keras_simclr.layers.SimCLRAugmentation(
                IMAGE_SIZE, preset="cifar", seed=0
            ),
            projection_head=keras_simclr.layers.ProjectionHead(
                output_dim=128, num_layers=2
            ),
            objective=keras_simclr.objectives.SimCLR(temperature=0.5),
        )
        model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        return model

    info = {}
    distribution = config["distribution"]
    if distribution == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(config["devices"])]
        )
        info["replicas"] = int(strategy.num_replicas_in_sync)
        with strategy.scope():
            model = build()
    elif distribution == "data_parallel":
        devices = keras.distribution.list_devices("cpu")
        info["available_devices"] = len(devices)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices[: config["devices"]])
        )
        model = build()
        info["replicas"] = len(model.weights[0].value.sharding.device_set)
    elif distribution == "jax_processes":
        import jax

        info["global_devices"] = len(jax.devices())
        info["local_devices"] = len(jax.local_devices())
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        model = build()
        info["replicas"] = len(model.weights[0].value.sharding.device_set)
    else:
        model = build()
        info["replicas"] = 1
    baseline_current, baseline_peak = rss_mib()

    class Timer(keras.callbacks.Callback):
        # Not `async_safe`: Keras then waits for each step's logs before
        # calling on_train_batch_end, so JAX's async dispatch cannot hide
        # a step's time.
        def __init__(self):
            super().__init__()
            self.times = []
            self.cpu_times = []
            self.losses = []
            self.collective_times = []

        def on_train_batch_begin(self, batch, logs=None):
            if collective_totals is not None:
                self.collectives_start = dict(collective_totals)
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)
            if collective_totals is not None:
                spent = {
                    key: value - self.collectives_start.get(key, 0.0)
                    for key, value in collective_totals.items()
                }
                self.collective_times.append(
                    {key: value for key, value in spent.items() if value > 0}
                )
            self.losses.append(float(logs["contrastive_loss"]))

    timer = Timer()
    model.fit(
        images,
        batch_size=batch,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[timer],
        shuffle=False,
    )
    end_current, end_peak = rss_mib()
    info.update(
        times=timer.times[config["warmup"] :],
        warmup_times=timer.times[: config["warmup"]],
        cpu_times=timer.cpu_times[config["warmup"] :],
        warmup_cpu_times=timer.cpu_times[: config["warmup"]],
        running_loss=timer.losses[-1],
        baseline_rss_mib=baseline_current,
        baseline_peak_rss_mib=baseline_peak,
        end_rss_mib=end_current,
        peak_rss_mib=end_peak,
    )
    if "processes" in config:
        from keras_simclr import distribute

        info.update(
            process_count=distribute.process_count(),
            process_index=distribute.process_index(),
            torch_threads=_torch_threads(config),
        )
    if collective_totals is not None:
        info.update(
            collective_times=timer.collective_times[config["warmup"] :],
            warmup_collective_times=timer.collective_times[: config["warmup"]],
        )
        import torch.distributed as dist

        dist.destroy_process_group()
    return info


def _torch_threads(config):
    if config["backend"] != "torch":
        return None
    import torch

    return torch.get_num_threads()


# === Parent process ===


def run_child(config, timeout):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = config["backend"]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if config["backend"] == "jax" and config["distribution"] != "none":
        flag = f"--xla_force_host_platform_device_count={config['devices']}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    load = os.getloadavg()
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "load_average_before": load}
    wall = time.perf_counter() - start
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        out = {"error": (result.stderr or result.stdout)[-3000:]}
    else:
        out = summarise(dict(config, **json.loads(lines[-1][len("RESULT "):])))
    out["load_average_before"] = load
    out["process_wall_seconds"] = wall
    return out


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_processes(config, timeout):
    """Runs the `config["processes"]` processes of one configuration, each
    pinned to its own `cores // processes` cores.

    Returns:
        Process 0's row, with the other processes' raw times under
        `other_processes`.
    """
    processes = config["processes"]
    cpus = sorted(os.sched_getaffinity(0))
    threads = max(1, len(cpus) // processes)
    if config.get("reference_for"):
        # One process of a `reference_for`-process run, alone: its cores,
        # its batch, no collectives.
        threads = max(1, len(cpus) // config["reference_for"])
        cpus = cpus[:threads]
    port = free_port()
    load = os.getloadavg()
    children = []
    start = time.perf_counter()
    for rank in range(processes):
        env = dict(os.environ)
        env["KERAS_BACKEND"] = config["backend"]
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if config["backend"] == "torch" and processes > 1:
            env.update(
                RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(processes),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
            )
        mine = cpus if processes == 1 else cpus[rank * threads : (rank + 1) * threads]
        child_config = dict(config, rank=rank, port=port, threads=threads, cpus=mine)
        log = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child",
             json.dumps(child_config)],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            # Affinity before exec: every thread pool the process builds
            # (XLA's included, which has no thread-count option) sees only
            # these cores.
            preexec_fn=lambda cpus=mine: os.sched_setaffinity(0, cpus),
        )
        children.append((process, log))
    error = None
    deadline = time.monotonic() + timeout
    # A process that fails leaves the others waiting in a collective: stop
    # them all at the first failure.
    while any(p.poll() is None for p, _ in children):
        if any(p.returncode not in (None, 0) for p, _ in children):
            error = "a process failed"
            break
        if time.monotonic() > deadline:
            error = f"timed out after {timeout} s"
            break
        time.sleep(1)
    for process, _ in children:
        if process.poll() is None:
            process.kill()
            process.wait()
    wall = time.perf_counter() - start
    results, outputs = [], []
    for process, log in children:
        log.seek(0)
        output = log.read()
        log.close()
        outputs.append(output)
        lines = [l for l in output.splitlines() if l.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            error = error or f"process exit status {process.returncode}"
            results.append(None)
        else:
            results.append(json.loads(lines[-1][len("RESULT "):]))
    if error is not None or None in results:
        tails = "\n".join(
            f"--- process {rank} ---\n{output[-2000:]}"
            for rank, output in enumerate(outputs)
        )
        out = {"error": f"{error}\n{tails}"}
    else:
        out = dict(config, threads=threads, cpus=cpus, **results[0])
        out["other_processes"] = [
            {key: r.get(key) for key in (
                "process_index", "times", "cpu_times", "collective_times")}
            for r in results[1:]
        ]
        out = summarise(out)
    out["load_average_before"] = load
    out["process_wall_seconds"] = wall
    return out


def median(values):
    return sorted(values)[len(values) // 2]


def summarise(row):
    """Adds the derived numbers to a row with raw step times."""
    row["seconds_per_step"] = median(row["times"])
    row["images_per_second"] = row["batch_size"] / row["seconds_per_step"]
    if "cpu_times" in row:
        row["cpu_seconds_per_step"] = median(row["cpu_times"])
        # Near 1: the timed steps kept every core of the machine busy.
        row["cpu_share"] = sum(row["cpu_times"]) / (
            sum(row["times"]) * available_cpus()
        )
    row["step_peak_rss_mib"] = row["peak_rss_mib"] - row["baseline_peak_rss_mib"]
    if "threads" in row and "cpu_times" in row:
        # The process's own cores, not the machine's.
        row["cpu_share"] = sum(row["cpu_times"]) / (sum(row["times"]) * row["threads"])
    if row.get("collective_times"):
        totals = [sum(step.values()) for step in row["collective_times"]]
        row["collective_seconds_per_step"] = median(totals)
        row["collective_share"] = median(
            [total / step for total, step in zip(totals, row["times"])]
        )
        keys = sorted({key for step in row["collective_times"] for key in step})
        row["collective_seconds_per_step_by_caller"] = {
            key: median([step.get(key, 0.0) for step in row["collective_times"]])
            for key in keys
        }
    return row


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def fmt(value, spec, missing="failed"):
    return missing if value is None else format(value, spec)


def speed_table(rows):
    first = rows[0] if rows else {}
    lines = [
        f"SimCLR step, ResNet-18 (CIFAR stem), global batch "
        f"{first.get('batch_size')} images of "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} (2 views each, augmented in the step), "
        f"median of {first.get('steps')} steps after {first.get('warmup')} "
        "warm-up.",
        "",
        NOTE,
        "",
        "`vs. no distribution`: images/s over the no-distribution row's "
        "(above 1 is faster). `CPU s/step`: CPU time of the whole process "
        "(all threads) per step, less sensitive than wall time to other "
        "processes on a shared machine; its ratio above 1 means more work "
        "(or more spinning threads). `CPU share`: CPU time over wall time "
        "times the cores of the machine during the timed steps; well below 1 "
        "means the step waited (for other processes, or on itself). `load "
        "avg before`: 1-minute load average when the configuration started; "
        "it still holds about 2 from this benchmark's previous configuration.",
        "",
        "| backend | distribution | devices | precision | s/step | images/s "
        "| vs. no distribution | CPU s/step | CPU vs. no distribution "
        "| CPU share | peak RSS MiB | load avg before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference = {
        (r["backend"], r["precision"]): r
        for r in rows
        if r["distribution"] == "none" and "error" not in r
    }
    for r in rows:
        speed = r.get("images_per_second")
        base = reference.get((r["backend"], r["precision"]), {})
        ratio = cpu_ratio = "-"
        if speed and base:
            ratio = f"{speed / base['images_per_second']:.2f}x"
            if "cpu_seconds_per_step" in r and "cpu_seconds_per_step" in base:
                cpu_ratio = (
                    f"{r['cpu_seconds_per_step'] / base['cpu_seconds_per_step']:.2f}x"
                )
        lines.append(
            f"| {r['backend']} | {r['distribution']} | "
            f"{r['devices'] if r['distribution'] != 'none' else '1 (default)'} | "
            f"{r['precision']} | {fmt(r.get('seconds_per_step'), '.2f')} | "
            f"{fmt(speed, '.1f')} | {ratio} | "
            f"{fmt(r.get('cpu_seconds_per_step'), '.1f', '-')} | {cpu_ratio} | "
            f"{fmt(r.get('cpu_share'), '.2f', '-')} | "
            f"{fmt(r.get('peak_rss_mib'), '.0f')} | "
            f"{r['load_average_before'][0]:.2f} |"
        )
    return lines


def memory_table(rows):
    first = rows[0] if rows else {}
    lines = [
        "Peak resident memory of the whole process, one device, no strategy "
        f"(median s/step of {first.get('steps')} steps after "
        f"{first.get('warmup')} warm-up). Baseline: peak after imports, data "
        "and model building; step: peak minus baseline.",
        "",
        "| backend | precision | global batch | s/step | images/s | baseline MiB "
        "| peak MiB | step (peak - baseline) MiB | load avg before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r['batch_size']} | "
            f"{fmt(r.get('seconds_per_step'), '.2f')} | "
            f"{fmt(r.get('images_per_second'), '.1f')} | "
            f"{fmt(r.get('baseline_peak_rss_mib'), '.0f')} | "
            f"{fmt(r.get('peak_rss_mib'), '.0f')} | "
            f"{fmt(r.get('step_peak_rss_mib'), '.0f')} | "
            f"{r['load_average_before'][0]:.2f} |"
        )
    return lines


PROCESSES_NOTE = (
    "Several processes on one machine, each pinned to its own share of the "
    "cores: a speed-up here is real parallelism (processes against threads), "
    "and the collectives are loopback traffic."
)


def processes_table(rows):
    first = rows[0] if rows else {}
    lines = [
        f"SimCLR step, ResNet-18 (CIFAR stem), global batch "
        f"{first.get('batch_size')} images of {IMAGE_SIZE}x{IMAGE_SIZE} (2 "
        "views each, augmented in the step), split across processes; median "
        f"of process 0's {first.get('steps')} steps after {first.get('warmup')} "
        "warm-up.",
        "",
        PROCESSES_NOTE,
        "",
        "`images/s`: global images per second. `vs. 1 process`: images/s over "
        "the 1-process row's of the same backend and precision. "
        "`collectives`: on PyTorch, the wall time of process 0's "
        "torch.distributed collectives per step (median), timed around each "
        "call and split by caller (gradient sum, gather of the projections "
        "for the negatives, batch-norm moments, the logs), and its share of "
        "the step; a gloo collective returns only when every process has "
        "joined it, so this also holds the wait for the slower process. "
        "`reference` rows: one process alone with one group process's cores "
        "and batch (same work, no collectives). `derived share`: (group step "
        "- reference step) / group step, the time the group adds to each "
        "process's work (collectives, waiting, sharding); the only figure "
        "on JAX, whose collectives run inside the compiled step. `CPU "
        "share`: process 0's CPU time over wall time times its own cores.",
        "",
        "| backend | processes | threads/process | precision | global batch "
        "| batch/process | s/step | images/s | vs. 1 process | collectives "
        "s/step (timed) | collectives share (timed) | by caller s/step "
        "| derived share | CPU s/step | CPU share | peak RSS MiB (process 0) "
        "| load avg before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- | --- | --- | --- | --- |",
    ]
    whole = {
        (r["backend"], r["precision"]): r
        for r in rows
        if r["processes"] == 1 and not r.get("reference_for") and "error" not in r
    }
    references = {
        (r["backend"], r["precision"], r["reference_for"]): r
        for r in rows
        if r.get("reference_for") and "error" not in r
    }
    for r in rows:
        speed = r.get("images_per_second")
        key = (r["backend"], r["precision"])
        base = whole.get(key, {})
        reference = references.get(key + (r["processes"],), {})
        ratio = seconds = share = callers = derived = "-"
        if speed and base and not r.get("reference_for"):
            ratio = f"{speed / base['images_per_second']:.2f}x"
        if "collective_seconds_per_step" in r:
            seconds = f"{r['collective_seconds_per_step']:.2f}"
            share = f"{r['collective_share']:.1%}"
            callers = ", ".join(
                f"{name} {value:.2f}"
                for name, value in r["collective_seconds_per_step_by_caller"].items()
            )
        if speed and reference:
            step = r["seconds_per_step"]
            derived = f"{(step - reference['seconds_per_step']) / step:.1%}"
        processes = r["processes"]
        if r.get("reference_for"):
            processes = f"1 (reference for {r['reference_for']})"
        local_batch = r["batch_size"] // r["processes"]
        lines.append(
            f"| {r['backend']} | {processes} | {r.get('threads', '-')} | "
            f"{r['precision']} | {r['batch_size']} | {local_batch} | "
            f"{fmt(r.get('seconds_per_step'), '.2f')} | {fmt(speed, '.1f')} | "
            f"{ratio} | {seconds} | {share} | {callers} | {derived} | "
            f"{fmt(r.get('cpu_seconds_per_step'), '.1f', '-')} | "
            f"{fmt(r.get('cpu_share'), '.2f', '-')} | "
            f"{fmt(r.get('peak_rss_mib'), '.0f')} | "
            f"{r['load_average_before'][0]:.2f} |"
        )
    return lines


def keep_previous(results, part):
    """Moves an earlier run of `part` to `results["previous"]`: on a shared
    machine a rerun is a second sample, not a correction."""
    if part in results:
        old = dict(results.pop(part), part=part)
        results.setdefault("previous", []).append(old)


def csv(text, kind=str):
    return [kind(item) for item in text.split(",") if item]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--parts", default="speed,memory",
        help="comma-separated: speed, memory, processes",
    )
    parser.add_argument("--backends", default="tensorflow,jax", help="for the speed part")
    parser.add_argument(
        "--devices", default="1,2", help="logical device counts for the speed part"
    )
    parser.add_argument(
        "--no_distribution_baseline", default=True,
        action=argparse.BooleanOptionalAction,
        help="also time each backend with no strategy / distribution at all",
    )
    parser.add_argument(
        "--precisions", default="float32",
        help="dtype policies for the speed and processes parts: float32, "
        "mixed_bfloat16",
    )
    parser.add_argument(
        "--batch_size", type=int, default=256,
        help="global batch, images, for the speed and processes parts",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument(
        "--process_backends", default="torch,jax",
        help="for the processes part: torch (torch.distributed), jax",
    )
    parser.add_argument(
        "--processes", default="1,2", help="process counts for the processes part"
    )
    parser.add_argument(
        "--process_references", default=True,
        action=argparse.BooleanOptionalAction,
        help="also time, for each N > 1 of --processes, one process alone "
        "with 1/N of the cores and of the global batch (the reference of "
        "the derived collectives share)",
    )
    parser.add_argument("--memory_backends", default="tensorflow")
    parser.add_argument(
        "--memory_precisions", default="float32",
        help="dtype policies for the memory part",
    )
    parser.add_argument("--memory_batch_sizes", default="256,512,1024")
    parser.add_argument("--memory_warmup", type=int, default=1)
    parser.add_argument("--memory_steps", type=int, default=1)
    parser.add_argument(
        "--timeout", type=int, default=1200, help="seconds per configuration"
    )
    parser.add_argument(
        "--tables_only", action="store_true",
        help="only rewrite the tables of an existing --output from its rows",
    )
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "multi_device.json")
    )
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    results = {}
    if os.path.exists(args.output):
        with open(args.output) as f:
            results = json.load(f)
    results["note"] = NOTE
    if args.tables_only:
        parts = []
        tables = {
            "speed": speed_table, "memory": memory_table,
            "processes": processes_table,
        }
        for run in [results[p] for p in tables if p in results] + results.get(
            "previous", []
        ):
            for row in run["rows"]:
                if "error" not in row:
                    summarise(row)
        for part, table in tables.items():
            if part in results:
                results[part]["table"] = table(results[part]["rows"])
        for run in results.get("previous", []):
            run["table"] = tables[run["part"]](run["rows"])
    else:
        results["machine"] = machine_info(PACKAGES)
        parts = csv(args.parts)
    command = "python " + " ".join(
        [os.path.relpath(__file__, ROOT)] + sys.argv[1:]
    )
    print(f"{results['machine']['cpu_model']}, {results['machine']['cpu_count']} cores; "
          f"load average {os.getloadavg()}", flush=True)

    def run(config):
        if "processes" in config:
            row = dict(config, **run_processes(config, args.timeout))
            keys = (
                "backend", "distribution", "processes", "reference_for",
                "precision", "batch_size",
            )
        else:
            row = dict(config, **run_child(config, args.timeout))
            keys = ("backend", "distribution", "devices", "precision", "batch_size")
        label = " ".join(str(config[k]) for k in keys)
        if "error" in row:
            print(f"{label}: FAILED\n{row['error']}", flush=True)
        else:
            print(
                f"{label}: {row['seconds_per_step']:.2f} s/step, "
                f"{row['images_per_second']:.1f} images/s, peak RSS "
                f"{row['peak_rss_mib']:.0f} MiB (+{row['step_peak_rss_mib']:.0f}), "
                f"load before {row['load_average_before'][0]:.2f}, "
                f"process {row['process_wall_seconds']:.0f} s",
                flush=True,
            )
        return row

    if "speed" in parts:
        rows = []
        names = {"tensorflow": "mirrored", "jax": "data_parallel"}
        for backend in csv(args.backends):
            for precision in csv(args.precisions):
                layouts = [("none", 1)] if args.no_distribution_baseline else []
                layouts += [(names[backend], n) for n in csv(args.devices, int)]
                for distribution, devices in layouts:
                    rows.append(run({
                        "backend": backend, "distribution": distribution,
                        "devices": devices, "precision": precision,
                        "batch_size": args.batch_size,
                        "warmup": args.warmup, "steps": args.steps,
                    }))
        keep_previous(results, "speed")
        results["speed"] = {
            "command": command, "finished": machine_info(PACKAGES)["date"],
            "rows": rows, "table": speed_table(rows),
        }

    if "memory" in parts:
        rows = []
        for backend in csv(args.memory_backends):
            for precision in csv(args.memory_precisions):
                for batch in csv(args.memory_batch_sizes, int):
                    rows.append(run({
                        "backend": backend, "distribution": "none", "devices": 1,
                        "precision": precision, "batch_size": batch,
                        "warmup": args.memory_warmup, "steps": args.memory_steps,
                    }))
        keep_previous(results, "memory")
        results["memory"] = {
            "command": command, "finished": machine_info(PACKAGES)["date"],
            "rows": rows, "table": memory_table(rows),
        }

    if "processes" in parts:
        rows = []
        for backend in csv(args.process_backends):
            for precision in csv(args.precisions):
                counts = csv(args.processes, int)
                layouts = [(n, args.batch_size, None) for n in counts]
                if args.process_references:
                    layouts += [
                        (1, args.batch_size // n, n) for n in counts if n > 1
                    ]
                for processes, batch, reference_for in layouts:
                    if backend == "torch":
                        distribution = "torch_ddp" if processes > 1 else "none"
                    else:
                        distribution = "jax_processes"
                    rows.append(run({
                        "backend": backend, "distribution": distribution,
                        "processes": processes, "devices": 1,
                        "reference_for": reference_for,
                        "precision": precision, "batch_size": batch,
                        "warmup": args.warmup, "steps": args.steps,
                    }))
        keep_previous(results, "processes")
        results["processes"] = {
            "command": command, "finished": machine_info(PACKAGES)["date"],
            "rows": rows, "table": processes_table(rows),
        }

    markdown = [f"# Multi-device SimCLR step ({results['machine']['date']})", ""]
    machine = results["machine"]
    markdown.append(
        f"{machine['cpu_model']}, {machine['cpu_count']} cores; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    )
    for part in ("speed", "memory", "processes"):
        if part in results:
            markdown += ["", f"## {part}", "", f"`{results[part]['command']}`", ""]
            markdown += results[part]["table"]
    for run in results.get("previous", []):
        markdown += [
            "", f"## earlier run of {run['part']} (finished {run['finished']})",
            "", f"`{run['command']}`", "",
        ]
        markdown += run["table"]
    print("\n".join(markdown))
    write_results(args.output, results, markdown)


if __name__ == "__main__":
    main()
