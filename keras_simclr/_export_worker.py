"""Writes the SavedModels of `keras_simclr.export_saved_model` from `.keras`
files, in a process that runs the TensorFlow backend.

Started by `export_saved_model` on the JAX and PyTorch backends, with
`KERAS_BACKEND=tensorflow` and the parent's module search path, as

    python -m keras_simclr._export_worker

It reads jobs from stdin, one JSON object a line, with the keys
`model_path`, `export_path`, `image_size`, `channels`, `value_range`,
`import_modules` (imported before loading, so that the model's registered
classes are known) and `sys_path` (the parent's module search path, added to
this one). It answers each job with one line on stdout, the prefix
`export._REPLY_PREFIX` followed by the JSON object `{"error": null}`, or the
error in one line after printing its traceback on stderr. It ends when stdin
closes. Anything else written to stdout, by this process or a library, goes
to stderr, so that the answers stay readable.
"""

import gc
import importlib
import json
import os
import sys
import traceback


def _run_job(job, keras, export):
    for entry in job["sys_path"]:
        if entry not in sys.path:
            sys.path.append(entry)
    importlib.invalidate_caches()
    for name in job["import_modules"]:
        importlib.import_module(name)
    # The file was written by the parent process from the model being
    # exported, so it is trusted (a Lambda layer needs safe_mode=False).
    model = keras.saving.load_model(job["model_path"], compile=False, safe_mode=False)
    value_range = job["value_range"]
    export._write_saved_model(
        model,
        job["export_path"],
        image_size=tuple(job["image_size"]),
        channels=job["channels"],
        value_range=tuple(value_range) if value_range is not None else None,
    )


def main():
    sys.stdout.flush()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import keras

    from keras_simclr import export

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "The export worker must run the TensorFlow backend; start it with "
            f"KERAS_BACKEND=tensorflow. Received: backend={keras.backend.backend()}"
        )
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            _run_job(json.loads(line), keras, export)
            error = None
        except Exception as exception:
            traceback.print_exc()
            message = str(exception).strip().splitlines()
            error = f"{type(exception).__name__}: {message[0] if message else ''}"
            error = error[:1000]
        finally:
            keras.backend.clear_session()
            gc.collect()
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(export._REPLY_PREFIX + json.dumps({"error": error}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
