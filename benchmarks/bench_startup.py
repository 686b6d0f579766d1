"""Process start: ``cumbatch export`` of a 10-row input and ``cumbatch status`` against
``python -c "import dask.dataframe"`` (issue 14: within 1.5x).

Each command runs in a fresh process, ``--repeat`` times in turn (best time kept), so file
caches are warm for all of them alike. Tiny inputs run the kernels as plain Python, so these
commands load no numba (``benchmarks/bench_startup.py --check-numba`` asserts it).

    python benchmarks/bench_startup.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

_NUMBA_LOADED = r"""
import sys
from dask_cumbatch.cli import main
code = main(sys.argv[1:])
print("numba loaded:", "numba" in sys.modules, file=sys.stderr)
raise SystemExit(code)
"""


def best_time(cmd, repeat, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if done.returncode not in (0,):
            raise SystemExit(f"{cmd} failed ({done.returncode}):\n{done.stderr}")
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd

    root = tempfile.mkdtemp(prefix="cumbatch-startup-")
    inp, out = os.path.join(root, "in.parquet"), os.path.join(root, "out")
    pd.DataFrame({"tokens": np.arange(10, dtype=np.int64) % 4 + 1}).to_parquet(inp)
    export = [sys.executable, "-m", "dask_cumbatch", "export", inp, out, "-w", "tokens", "-l", "5", "--quiet"]
    status = [sys.executable, "-m", "dask_cumbatch", "status", out]
    clear = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731
    subprocess.run(export, capture_output=True)  # warm file caches
    results = {
        'python -c "import dask.dataframe"': best_time([sys.executable, "-c", "import dask.dataframe"], args.repeat),
        "cumbatch export (10 rows)": best_time(export, args.repeat, before=clear),
        "cumbatch status": best_time(status, args.repeat),
    }
    clear()
    loaded = subprocess.run([sys.executable, "-c", _NUMBA_LOADED, *export[3:]], capture_output=True, text=True)
    base = results['python -c "import dask.dataframe"']
    print(f"# bench_startup: {os.cpu_count()} cores, best of {args.repeat}\n")
    print("| command | seconds | / import dask.dataframe |")
    print("| --- | ---: | ---: |")
    for name, sec in results.items():
        print(f"| {name} | {sec:.3f} | {sec / base:.2f}x |")
    print(f"\n- target: within 1.5x; {loaded.stderr.strip().splitlines()[-1] if loaded.stderr else ''} (10-row export)")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
