"""Times Larq Compute Engine on a larq_zoo network, for ``bench model --lce-python PY``.

Run as a script by that interpreter, whose environment has larq-compute-engine, larq-zoo and
TensorFlow (a comparison, not a dependency of bnn_kernels: nothing here imports torch or
bnn_kernels). Builds ``larq_zoo.literature.<model>`` with random weights, converts it with
``larq_compute_engine.convert_keras_model`` and times ``larq_compute_engine.testing.Interpreter``
on a random NHWC float32 batch. LCE is timed at its best: each of its interpreter options
(XNNPACK for the float layers, the indirect binary GEMM) is tried on a few runs after a warm-up,
and the fastest gets the timed runs (on x86 the indirect BGEMM is several times faster than
the default). Prints one JSON line: the median and every run in ms, the options, the thread
count and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

OPTIONS = (
    {},
    {"use_xnnpack": True},
    {"use_indirect_bgemm": True},
    {"use_xnnpack": True, "use_indirect_bgemm": True},
)


def _runs(interpreter, x, n: int) -> list[float]:
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        interpreter.predict(x)
        runs.append((time.perf_counter() - t0) * 1e3)
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="larq_zoo.literature class, e.g. BiRealNet")
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # larq 0.14 and larq_zoo need Keras 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import larq_compute_engine as lce
    import larq_zoo as lqz
    import numpy as np

    model = getattr(lqz.literature, a.model)(weights=None, input_shape=(a.res, a.res, 3))
    flatbuffer = lce.convert_keras_model(model)
    x = np.random.default_rng(0).standard_normal((a.batch, a.res, a.res, 3)).astype(np.float32)
    trials = []
    for opts in OPTIONS:
        interpreter = lce.testing.Interpreter(flatbuffer, num_threads=a.threads, **opts)
        interpreter.predict(x)  # warm-up
        trials.append((min(_runs(interpreter, x, 2)), opts, interpreter))
    _, opts, interpreter = min(trials, key=lambda t: t[0])
    runs = _runs(interpreter, x, a.repeats)
    versions = {"larq_compute_engine": lce.__version__, "larq_zoo": getattr(lqz, "__version__", "?")}
    result = {"ms": statistics.median(runs), "runs": runs, "options": opts, "threads": a.threads, "versions": versions}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
