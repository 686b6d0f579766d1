import os, sys, json, shutil
import numpy as np, pandas as pd, dask
import dask_cumbatch.export as ex
assert ex.__file__.startswith("/work/main"), ex.__file__
root = sys.argv[1]
os.makedirs(f"{root}/in", exist_ok=True)
rng = np.random.default_rng(7)
for i, name in enumerate(["a1", "a2", "a3", "b"]):
    w = rng.integers(1, 40, 30).astype(float)
    w[[5]] = [np.nan]
    pd.DataFrame({"w": w, "pos": np.arange(i * 30, (i + 1) * 30)}).to_parquet(f"{root}/in/{name}.parquet", index=False)
os.makedirs(f"{root}/only_a", exist_ok=True)
for n in ("a1", "a2", "a3"):
    shutil.copy(f"{root}/in/{n}.parquet", f"{root}/only_a/{n}.parquet")
# complete v1 parquet export of a, with rejects
ex.to_files(f"{root}/only_a", f"{root}/out-parquet", "w", 200, invalid="skip", max_skips=None, progress=False, batches_per_file=3)
# interrupted v1 csv export of a
real = ex._combine_group
calls = {"n": 0}
def flaky(*a, **k):
    calls["n"] += 1
    if calls["n"] == 3:
        raise RuntimeError("simulated")
    return real(*a, **k)
ex._combine_group = flaky
try:
    with dask.config.set(scheduler="sync"):
        ex.to_files(f"{root}/only_a", f"{root}/out-csv-interrupted", "w", 200, invalid="skip", max_skips=None, progress=False, format="csv", batches_per_file=3)
except RuntimeError as e:
    print("interrupted:", e)
print(ex.folder_status(f"{root}/out-csv-interrupted")["state"])
