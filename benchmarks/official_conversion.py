r"""Time and peak memory to convert an official SimCLR file, the largest one
by default (ResNet-152 3x with selective kernels, 795M parameters).

The published files cannot be downloaded here, so the official TF2 code
(`../shared/oracles/google-research-simclr`, run with `tf-keras` by
tests/official/official_worker.py) first writes a checkpoint of the same
architecture with random weights; then `examples/convert_official.py`
converts it to a `.keras` file in a fresh process, which records its wall
time and peak resident set size in `convert.json`.

    python benchmarks/official_conversion.py
    python benchmarks/official_conversion.py --depth=50 --width=1 --sk_ratio=0.0625

Writes `official_conversion.json` and `.md` to `--output_dir`.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _report  # noqa: E402

ORACLE = os.path.join(os.path.dirname(ROOT), "shared", "oracles", "google-research-simclr")
WORKER = os.path.join(ROOT, "tests", "official", "official_worker.py")


def timed(arguments, failure, env):
    """`(seconds, standard output)` of `python <arguments>`."""
    start = time.perf_counter()
    output = _report.run_python(arguments, failure, env)
    return time.perf_counter() - start, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=152)
    parser.add_argument("--width", type=int, default=3)
    parser.add_argument("--sk_ratio", type=float, default=0.0625)
    parser.add_argument("--workdir", default=None, help="Where the files go (default: a temporary folder, removed).")
    parser.add_argument("--output_dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(ORACLE, "tf2", "model.py")):
        raise SystemExit(f"the official SimCLR code is absent: {ORACLE}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        spec = dict(
            name="official", resnet_depth=args.depth, width_multiplier=args.width,
            sk_ratio=args.sk_ratio, image_size=224, num_proj_layers=3,
            num_classes=1000, checkpoint_only=True,
        )
        written, _ = timed(
            [WORKER, f"--oracle={ORACLE}", f"--out={workdir}",
             f"--specs={json.dumps([spec])}"],
            "the official code failed to write the checkpoint",
            dict(os.environ, KERAS_BACKEND="tensorflow", TF_USE_LEGACY_KERAS="1"),
        )
        checkpoint = os.path.join(workdir, "official", "ckpt-1")
        size = sum(
            os.path.getsize(os.path.join(workdir, "official", name))
            for name in os.listdir(os.path.join(workdir, "official"))
        )
        output = os.path.join(workdir, "converted", "pretrainer.keras")
        seconds, stdout = timed(
            [os.path.join(ROOT, "examples", "convert_official.py"),
             f"--checkpoint={checkpoint}", f"--output={output}"],
            "the conversion failed",
            dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow")),
        )
        record = json.load(open(os.path.join(workdir, "converted", "convert.json")))
        keras_size = os.path.getsize(output)
    name = f"ResNet-{args.depth} {args.width}x{' SK' if args.sk_ratio else ''}"
    results = {
        "machine": _report.machine_info(["keras", "tensorflow", "jax", "torch", "tf-keras"]),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "network": name,
        "official_checkpoint_mib": round(size / 2**20),
        "official_write_seconds": round(written, 1),
        "keras_file_mib": round(keras_size / 2**20),
        "script_seconds": round(seconds, 1),
        "conversion": record,
        "printed": _report.last_line(stdout),
    }
    markdown = [
        f"Converting {name} ({record['encoder_parameters'] / 1e6:.1f}M encoder "
        f"parameters, {record['parameters'] / 1e6:.1f}M in all) on "
        f"{results['machine']['cpu_model']}, {results['machine']['cpus_available']} cores, "
        f"KERAS_BACKEND={results['backend']}:",
        "",
        "| official checkpoint | convert and save (in the script) | script wall time | peak RSS | .keras file |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {results['official_checkpoint_mib']} MiB | {record['seconds']} s | "
        f"{results['script_seconds']} s | {record['peak_rss_mib']} MiB | "
        f"{results['keras_file_mib']} MiB |",
    ]
    _report.write_results(os.path.join(args.output_dir, "official_conversion.json"), results, markdown)
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
