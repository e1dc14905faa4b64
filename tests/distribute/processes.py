"""One harness for the tests that start processes: the environment of a
worker script, starting it with its output in a log file, and waiting for
a group of them.

If one process of a group fails, the others are stopped at once (a process
whose peer died can wait for it in a collective until its own timeout) and
the test fails with the end of every process's log.
"""

import os
import re
import subprocess
import sys
import time

import keras_simclr

TIMEOUT = 600


def environment(backend=None, **extra):
    """The environment of a worker: this one, with the backend, quieter
    TensorFlow logs, the keras_simclr under test on `PYTHONPATH`, and
    `extra` (a value of None removes the variable)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_simclr.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start(script, arguments, env, log_path):
    """Starts `python script *arguments`, its output going to `log_path`."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, script, *arguments],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def log_tail(path):
    """The end of a log, without the info lines that TensorFlow and XLA
    print before their log level is read."""
    with open(path) as f:
        lines = [line for line in f if not re.match(r"[IW]\d{4} ", line)]
    return "".join(lines)[-3000:]


def wait(processes, logs, timeout=TIMEOUT):
    """Waits for every process; fails, with their logs, unless all exit 0."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes):
            failed = any(p.poll() not in (None, 0) for p in processes)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    report = "\n".join(
        f"--- process {i} (exit {p.returncode}) ---\n{log_tail(log)}"
        for i, (p, log) in enumerate(zip(processes, logs))
    )
    assert all(p.returncode == 0 for p in processes), report


def run(script, arguments, env, log_path, timeout=TIMEOUT):
    """Starts one process and waits for it."""
    wait([start(script, arguments, env, log_path)], [log_path], timeout)
