"""What the benchmark scripts share: the machine they ran on, and writing
their results as JSON beside a Markdown copy of the tables."""

import datetime
import importlib.metadata
import json
import os
import platform


def cpu_model_and_flags():
    """The CPU's model name (None if unknown) and its instruction-set flags,
    from /proc/cpuinfo."""
    model, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return model, flags


def machine_info(packages):
    """CPU, cores, platform, Python, the installed versions of `packages`
    (None when absent) and the date."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": cpu_model_and_flags()[0],
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_results(json_path, results, markdown):
    """Writes `results` to `json_path` and the `markdown` lines to the same
    path with `.md`, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.splitext(json_path)[0] + ".md", "w") as f:
        f.write("\n".join(markdown) + "\n")
