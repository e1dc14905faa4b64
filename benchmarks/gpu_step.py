r"""Times the pretraining step of every backend on a GPU, in under 5 minutes.

The GPU counterpart of `speed.py`'s step section: the small CNN and ResNet-18
(CIFAR stem) of `pretrain_step.py`, batch 256 images of 32x32 (512 views),
`SimCLRPretrainer.fit` with the augmentation inside the step, on each Keras
backend in its fast GPU configuration (`mixed_bfloat16`; XLA on TensorFlow
and JAX, `jit_compile=True`; eager on torch, as Keras runs it), next to the
plain PyTorch loop in float32 and in bf16 autocast + channels_last. Each
configuration runs in its own process; median seconds per step of `--steps`
steps after `--warmup`.

    python benchmarks/gpu_step.py                 # on a machine with a GPU
    python benchmarks/gpu_step.py --networks=small_cnn --steps=3   # a quick try

Prints a Markdown table and writes it with the raw numbers, the GPU's name
and the versions to `--output` (JSON) and the same path with `.md`. On a
machine without a GPU it says so and stops, unless `--allow_cpu`.
"""

import argparse
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _report  # noqa: E402
import pretrain_step  # noqa: E402

# (label, backend, mode, precision, jit_compile)
ROWS = (
    ("keras_simclr, XLA", "tensorflow", "library", "mixed_bfloat16", True),
    ("keras_simclr, XLA", "jax", "library", "mixed_bfloat16", True),
    ("keras_simclr, eager", "torch", "library", "mixed_bfloat16", False),
    ("plain PyTorch loop", "pytorch", "torch_fp32", "float32", None),
    ("plain PyTorch loop", "pytorch", "torch_bf16", "bf16 autocast + channels_last", None),
)


def gpu_name():
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="small_cnn,resnet18")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--allow_cpu", action="store_true",
                        help="run without a GPU (to try the script)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "gpu_step.json"))
    args = parser.parse_args()
    gpu = gpu_name()
    if gpu is None and not args.allow_cpu:
        print("skipped: no GPU (nvidia-smi found none); --allow_cpu runs it on the CPU")
        return
    rows = []
    for network in args.networks.split(","):
        for label, backend, mode, precision, jit_compile in ROWS:
            config = {
                "backend": backend, "mode": mode, "precision": precision,
                "batch_size": args.batch_size, "image_size": 32,
                "steps": args.steps, "warmup": args.warmup, "batches": 2,
                "network": network, "jit_compile": jit_compile,
            }
            result = pretrain_step.run_child(config)
            row = dict(config, label=label)
            if "error" in result:
                row["error"] = result["error"]
                print(f"{network} {label} {backend}: FAILED\n{result['error']}", flush=True)
            else:
                times = sorted(result["times"])
                row["times"] = result["times"]
                row["seconds_per_step"] = times[len(times) // 2]
                print(f"{network:9s} {backend:10s} {label:22s} {precision:30s} "
                      f"{row['seconds_per_step'] * 1000:.1f} ms/step", flush=True)
            rows.append(row)
    reference = {
        (r["network"], r["mode"]): r.get("seconds_per_step") for r in rows if r["backend"] == "pytorch"
    }
    table = [
        f"Pretraining step on {gpu or 'the CPU (no GPU)'}, batch {args.batch_size} images of "
        f"32x32 (2 views each), median of {args.steps} steps after {args.warmup}\n",
        "| network | configuration | backend | precision | ms/step | images/s | "
        "vs PyTorch fp32 | vs PyTorch bf16 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        seconds = row.get("seconds_per_step")
        ratios = [
            f"{reference[(row['network'], mode)] / seconds:.2f}"
            if seconds and reference.get((row["network"], mode)) else "n/a"
            for mode in ("torch_fp32", "torch_bf16")
        ]
        table.append(
            f"| {row['network']} | {row['label']} | {row['backend']} | {row['precision']} | "
            + (f"{seconds * 1000:.1f} | {args.batch_size / seconds:.0f} | " if seconds else "failed | | ")
            + " | ".join(ratios) + " |"
        )
    print("\n".join(table))
    results = {
        "command": shlex.join([sys.executable] + sys.argv),
        "gpu": gpu,
        "machine": _report.machine_info(("keras", "tensorflow", "jax", "torch")),
        "rows": rows,
        "table": table,
    }
    _report.write_results(args.output, results, table)


if __name__ == "__main__":
    main()
