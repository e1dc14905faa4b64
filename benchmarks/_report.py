"""What the benchmark scripts share: the machine they ran on, and writing
their results as JSON beside a Markdown copy of the tables."""

import datetime
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys


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


def run_python(arguments, failure, env=None):
    """Runs `python <arguments>` in a new process, TensorFlow's C++ logs
    off, with `env` (default: this process's environment); returns its
    standard output. If it fails, writes the end of its standard error and
    exits with the message `failure`."""
    result = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True, text=True,
        env=dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if result.returncode:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(failure)
    return result.stdout


def last_line(output):
    """The last line of a process's output."""
    return output.strip().splitlines()[-1]


def run_role(script, role, config):
    """Runs `script --role=<role> --config=<config as JSON>` in a new
    process; returns its last line of output, a JSON row, as a dict."""
    output = run_python(
        [os.path.abspath(script), f"--role={role}", f"--config={json.dumps(config)}"],
        f"the {role} process failed for {config}",
    )
    return json.loads(last_line(output))


def measure_child(script, config):
    """Runs `script`'s child role on `config` and prints its row with the
    child's peak resident set size added as `peak_rss_mib`
    (`RUSAGE_CHILDREN`: call it from a process that starts no other child,
    one per measurement (`measured_row`), so that no peak hides another)."""
    row = run_role(script, "child", config)
    # Linux reports ru_maxrss in KiB.
    row["peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
    )
    print(json.dumps(row))


def measured_row(script, config):
    """The row of `script`'s child on `config` with its peak RSS, measured
    in a process of its own (`script`'s measure role calls
    `measure_child`)."""
    return run_role(script, "measure", config)
