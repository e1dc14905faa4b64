r"""Every objective on the same data, network, optimizer and budget.

Runs examples/pretrain.py once per objective on scikit-learn's bundled digits
(real images, offline): ResNet-18 with the CIFAR stem on 16x16 views, batch
128, the same epochs, optimizer, learning-rate schedule, augmentation and seed;
only `--objective` changes. Reports the linear-probe top-1 of the frozen
encoder on the held-out digits, the last objective loss, the positive
similarity and the wall time, as JSON and as a Markdown table.

    KERAS_BACKEND=tensorflow python benchmarks/objectives_digits.py

A small-data, short-budget comparison: it shows that every objective trains
on the shared pipeline and how far each gets in the same few minutes, not how
they rank after hundreds of epochs on ImageNet.
"""

# First, before anything loads TensorFlow, which reads its oneDNN setting
# once: importing keras_simclr turns oneDNN on (keras_simclr.cpu_defaults).
from keras_simclr import cpu_defaults  # noqa: F401, E402

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "objectives",
    "simclr,supcon,moco,byol,simsiam,barlow_twins,vicreg,unigrad",
    "Objectives to run.",
)
flags.DEFINE_integer("epochs", 10, "Epochs of every run.")
flags.DEFINE_string(
    "extra_flags",
    "--optimizer=sgd --weight_decay=5e-4",
    "Flags given to every run of examples/pretrain.py.",
)
flags.DEFINE_string("work_dir", "runs/objectives_digits", "Where the runs write.")
flags.DEFINE_string(
    "output", "benchmarks/results/objectives_digits", "Results path, without suffix."
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    del argv
    rows = []
    for objective in FLAGS.objectives:
        model_dir = os.path.join(FLAGS.work_dir, objective)
        command = [
            sys.executable,
            os.path.join(ROOT, "examples", "pretrain.py"),
            f"--objective={objective}",
            f"--epochs={FLAGS.epochs}",
            f"--model_dir={model_dir}",
            "--overwrite",  # a rerun replaces the previous results
            "--verbose=0",
            *FLAGS.extra_flags.split(),
            # MoCo's queue; pretrain.py refuses the flag for the others.
            *(["--queue_size=4096"] if objective == "moco" else []),
        ]
        start = time.time()
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            print(result.stderr[-3000:])
            raise SystemExit(f"{objective} failed")
        with open(os.path.join(model_dir, "results.json")) as f:
            results = json.load(f)
        history = results["history"]
        row = {
            "objective": objective,
            "linear_probe_top1": results["linear_probe_accuracy"]["pretrained"],
            "random_init_top1": results["linear_probe_accuracy"]["random_init"],
            "final_objective_loss": results["final_objective_loss"],
            "positive_similarity": (
                history["positive_similarity"][-1]
                if "positive_similarity" in history
                else None
            ),
            "pretraining_seconds": results["pretraining_seconds"],
            "run_seconds": round(time.time() - start, 1),
            "command": " ".join(command[1:]),
        }
        rows.append(row)
        print(json.dumps(row))
    info = {
        "backend": results["backend"],
        "dataset": results["dataset"],
        "epochs": FLAGS.epochs,
        "steps": results["steps"],
        "extra_flags": FLAGS.extra_flags,
        "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output + ".json", "w") as f:
        json.dump(info, f, indent=2)
    lines = [
        "| objective | linear-probe top-1 | final loss | positive similarity | pretraining s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        similarity = row["positive_similarity"]
        lines.append(
            f"| {row['objective']} | {100 * row['linear_probe_top1']:.1f}% | "
            f"{row['final_objective_loss']:.3f} | "
            f"{'' if similarity is None else f'{similarity:.3f}'} | "
            f"{row['pretraining_seconds']:.0f} |"
        )
    lines.append(
        f"| (random init) | {100 * rows[0]['random_init_top1']:.1f}% | | | |"
    )
    with open(FLAGS.output + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
