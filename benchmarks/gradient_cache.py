r"""Memory and time of the cached-gradient step against the whole batch at once.

`SimCLRPretrainer(gradient_chunk_size=C)` trains on the whole batch's
objective while holding the activations of `C` images (`2C` views) at a
time. For each network and batch this measures, side by side in one run,
each in a fresh process:

- `whole batch`: the ordinary step at `--batch_size` (the memory the chunks
  save, the time they cost);
- `cached, chunks of C`: the same batch with `gradient_chunk_size=C`, for
  each `C` of `--chunks`;
- `one chunk`: the ordinary step at batch `C` (the memory the cached step
  should stay near).

Each process builds the pretrainer (ResNet, NT-Xent, the 2-layer head,
views given as a dict of random images, as a pipeline that augments in
`tf.data` gives them), compiles it with SGD, runs `--warmup` steps, then
times `--steps` steps of `train_on_batch`. Its peak resident set size is
read by the process that started it
(`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, one measuring process per
row). On a GPU, give `--device_memory` to read the peak device memory
instead (TensorFlow's `get_memory_info`, JAX's `memory_stats`, torch's
`max_memory_allocated`).

    python benchmarks/gradient_cache.py
    python benchmarks/gradient_cache.py --networks=resnet18_32 --batch_size=512 --chunks=64,128,256
    KERAS_BACKEND=jax python benchmarks/gradient_cache.py --networks=resnet50_224 --batch_size=64 --chunks=16,32

Writes `gradient_cache.json` and `.md` to `--output_dir`.
"""

# The measuring processes stay TensorFlow-free; the training child imports
# keras_simclr first (before TensorFlow loads, for its oneDNN setting).
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _report  # noqa: E402

NETWORKS = {
    # name: (depth, image size, CIFAR stem)
    "resnet18_32": (18, 32, True),
    "resnet50_224": (50, 224, False),
}


def child(config):
    """Trains `config`'s step; prints a JSON line of its timings."""
    sys.path.insert(0, ROOT)
    import keras_simclr  # first, before TensorFlow loads

    import keras
    import numpy as np

    depth, size, cifar_stem = NETWORKS[config["network"]]
    keras.utils.set_random_seed(0)
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        keras_simclr.models.ResNet(
            depth, cifar_stem=cifar_stem, input_shape=(size, size, 3),
            value_range=(0, 1),
        ),
        projection_head=keras_simclr.layers.ProjectionHead(output_dim=128),
        gradient_chunk_size=config["chunk"],
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    rng = np.random.default_rng(0)
    batch = config["batch_size"]
    views = {
        key: rng.uniform(size=(batch, size, size, 3)).astype("float32")
        for key in ("view_a", "view_b")
    }
    for _ in range(config["warmup"]):
        pretrainer.train_on_batch(views)
    start = time.perf_counter()
    for _ in range(config["steps"]):
        logs = pretrainer.train_on_batch(views, return_dict=True)
    seconds = (time.perf_counter() - start) / config["steps"]
    row = {
        "seconds_per_step": round(seconds, 3),
        "loss": float(logs["contrastive_loss"]),
    }
    if config["device_memory"]:
        row["device_peak_mib"] = device_peak_mib()
    print(json.dumps(row))


def device_peak_mib():
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    elif backend == "jax":
        import jax

        peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"]
    else:
        import torch

        peak = torch.cuda.max_memory_allocated()
    return round(peak / 2**20, 1)


def measure(config):
    """Runs the child; prints its row with its peak RSS."""
    _report.measure_child(__file__, config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "measure", "child"])
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--networks", default="resnet18_32",
        help=f"Comma-separated, of {sorted(NETWORKS)}.",
    )
    parser.add_argument("--batch_size", type=int, default=1024, help="Images per step.")
    parser.add_argument("--chunks", default="64,128,256", help="Chunk sizes, in images.")
    parser.add_argument("--steps", type=int, default=2, help="Timed steps per row.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first.")
    parser.add_argument(
        "--device_memory", action="store_true",
        help="Also read the peak device memory (on a GPU).",
    )
    parser.add_argument("--output_dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    if args.role == "child":
        return child(json.loads(args.config))
    if args.role == "measure":
        return measure(json.loads(args.config))

    import keras

    chunks = [int(c) for c in args.chunks.split(",")]
    rows = []
    for network in args.networks.split(","):
        if network not in NETWORKS:
            raise SystemExit(f"--networks: {network!r} is not one of {sorted(NETWORKS)}")
        base = {
            "network": network, "steps": args.steps, "warmup": args.warmup,
            "device_memory": args.device_memory,
        }
        plans = [("whole batch", args.batch_size, None)]
        for chunk in chunks:
            plans.append((f"cached, chunks of {chunk}", args.batch_size, chunk))
            plans.append((f"one chunk ({chunk})", chunk, None))
        for label, batch, chunk in plans:
            row = _report.measured_row(__file__, {**base, "batch_size": batch, "chunk": chunk})
            row.update(network=network, run=label, batch_size=batch, chunk=chunk)
            print(json.dumps(row), flush=True)
            rows.append(row)

    memory_key = "device_peak_mib" if args.device_memory else "peak_rss_mib"
    memory_name = "peak device memory" if args.device_memory else "peak RSS"
    machine = _report.machine_info(["keras", "tensorflow", "jax", "torch"])
    lines = [
        f"{keras.backend.backend()} backend, {machine['cpu_model']} "
        f"({machine['cpus_available']} cores), keras {machine['versions']['keras']}, "
        f"{args.steps} timed steps after {args.warmup}, float32.",
        "",
        f"| network | run | batch | {memory_name} | vs one chunk | s/step | vs whole batch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        whole = next(
            r for r in rows
            if r["network"] == row["network"] and r["run"] == "whole batch"
        )
        one = None
        if row["chunk"] is not None:
            one = next(
                r for r in rows
                if r["network"] == row["network"] and r["run"] == f"one chunk ({row['chunk']})"
            )
        memory_ratio = f"{row[memory_key] / one[memory_key]:.2f}x" if one else ""
        time_ratio = (
            f"{row['seconds_per_step'] / whole['seconds_per_step']:.2f}x"
            if row["chunk"] is not None else ""
        )
        lines.append(
            f"| {row['network']} | {row['run']} | {row['batch_size']} | "
            f"{row[memory_key]:.0f} MiB | {memory_ratio} | "
            f"{row['seconds_per_step']:.2f} | {time_ratio} |"
        )
    print("\n".join(lines))
    _report.write_results(
        os.path.join(args.output_dir, "gradient_cache.json"),
        {
            "command": "python " + " ".join(sys.argv),
            "backend": keras.backend.backend(),
            "machine": machine,
            "rows": rows,
        },
        lines,
    )


if __name__ == "__main__":
    main()
