"""An export does not trust what it can check.

* A Dask frame that reads files appends only the files it has not exported (item 4).
* A hand-edited manifest cannot steer an append or pass ``status --verify``: the carried state is
  recomputed from the last batch's rows, a version downgrade is refused, and ``--verify``
  recomputes every batch from the data files against the recorded settings (item 7).
* An append into an export made with ``--verify-inputs`` checks the recorded sha256 (item 9).

Each test edits the manifest as a hostile user would (and recomputes its checksum, or drops it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import ExportError, folder_status, to_files
from dask_cumbatch.export.manifest import with_checksum
from conftest import manifest, tree

pytestmark = pytest.mark.usefixtures("threaded")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def edit_manifest(out, fn, checksum=True):
    """Change the manifest; recompute its checksum (``checksum``) or drop it."""
    m = manifest(out)
    fn(m)
    m.pop("checksum", None)
    (out / "_manifest.json").write_text(json.dumps(with_checksum(m) if checksum else m))


def write(folder, name, weights, start=0):
    folder.mkdir(exist_ok=True)
    pd.DataFrame({"w": weights, "pos": np.arange(start, start + len(weights))}).to_parquet(
        folder / name, index=False)


def exported(out):
    """Every exported row (ids and positions), in file order."""
    files = dict.fromkeys(b["file"] for b in manifest(out)["batches"])
    return pd.concat([pd.read_parquet(out / f) for f in files], ignore_index=True)


# ------------------------------------------------------------------ item 4: Dask-frame appends
def test_a_frame_append_exports_only_the_new_files(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4])
    to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    write(inp, "b.parquet", [2, 2, 2], start=4)
    res = to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    assert res.appended and res.rows == 7 and res.new_rows == 3
    assert exported(out)["pos"].tolist() == list(range(7))
    paths = [f["path"] for e in manifest(out)["inputs"] for f in e["files"]]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 2  # each file listed once
    to_files(dd.read_parquet(str(inp)), str(tmp_path / "one"), "w", 5, progress=False)
    assert manifest(out)["batches"] == manifest(tmp_path / "one")["batches"]
    # the same frame again: nothing new, nothing doubled
    before = tree(out)
    again = to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    assert again.up_to_date and again.rows == 7 and tree(out) == before


def test_a_projected_frame_append_keeps_its_projection(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4])

    def frame():
        f = dd.read_parquet(str(inp))
        return f.assign(w2=f.w * 2)[["w2", "pos"]]
    to_files(frame(), str(out), "w2", 6, append=True, progress=False)
    write(inp, "b.parquet", [3, 3], start=4)
    res = to_files(frame(), str(out), "w2", 6, append=True, progress=False)
    got = exported(out)
    assert res.rows == 6 and got["pos"].tolist() == list(range(6)) and got["w2"].tolist() == [2, 4, 6, 8, 6, 6]


def test_a_frame_append_refuses_a_changed_consumed_file(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4])
    to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    write(inp, "a.parquet", [1, 2, 3, 4, 5])
    write(inp, "b.parquet", [2], start=5)
    before = tree(out)
    with pytest.raises(ExportError, match=r"a\.parquet changed since it was exported"):
        to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    assert tree(out) == before


def test_a_frame_that_is_not_a_plain_read_is_refused_when_it_holds_consumed_files(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4])
    to_files(dd.read_parquet(str(inp)), str(out), "w", 5, append=True, progress=False)
    write(inp, "b.parquet", [2, 2], start=4)
    before = tree(out)
    sorted_frame = dd.read_parquet(str(inp)).sort_values("pos")  # a shuffle: rows are not per file
    with pytest.raises(ExportError, match=r"a\.parquet.*already exported"):
        to_files(sorted_frame, str(out), "w", 5, append=True, progress=False)
    assert tree(out) == before


def test_a_csv_frame_append_is_refused_when_it_reads_consumed_files(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    inp.mkdir()
    pd.DataFrame({"w": [1, 2, 3], "pos": [0, 1, 2]}).to_csv(inp / "a.csv", index=False)
    to_files(dd.read_csv(str(inp / "*.csv")), str(out), "w", 5, append=True, progress=False)
    before = tree(out)
    again = to_files(dd.read_csv(str(inp / "*.csv")), str(out), "w", 5, append=True, progress=False)
    assert again.up_to_date and tree(out) == before
    pd.DataFrame({"w": [4], "pos": [3]}).to_csv(inp / "b.csv", index=False)
    with pytest.raises(ExportError, match=r"a\.csv was already exported"):  # read_csv: no way to take b alone
        to_files(dd.read_csv(str(inp / "*.csv")), str(out), "w", 5, append=True, progress=False)
    assert tree(out) == before
    res = to_files(dd.read_csv(str(inp / "b.csv")), str(out), "w", 5, append=True, progress=False)
    assert res.rows == 4 and exported(out)["pos"].tolist() == [0, 1, 2, 3]


def test_a_frame_over_other_files_appends_whole(tmp_path):
    out = tmp_path / "o"
    write(tmp_path / "in1", "a.parquet", [1, 2, 3])
    write(tmp_path / "in2", "b.parquet", [4, 1], start=3)
    to_files(dd.read_parquet(str(tmp_path / "in1")), str(out), "w", 5, append=True, progress=False)
    res = to_files(dd.read_parquet(str(tmp_path / "in2")), str(out), "w", 5, append=True, progress=False)
    assert res.rows == 5 and exported(out)["pos"].tolist() == list(range(5))


# --------------------------------------------------------------- item 7: hand-edited manifests
def test_a_version_downgrade_is_refused(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4])
    assert cli("export", inp, out, "--weight", "w", "--limit", 5, "-q").returncode == 0
    edit_manifest(out, lambda m: m.update(version=1), checksum=False)
    write(inp, "b.parquet", [2], start=4)
    before = tree(out)
    run = cli("export", inp, out, "--weight", "w", "--limit", 5, "--append", "-q")
    assert run.returncode != 0 and "version 1" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    st = cli("status", out, "--verify")
    assert st.returncode != 0 and "version 1" in st.stderr
    assert tree(out) == before


def test_a_version_1_manifest_with_version_2_inputs_is_refused_even_with_no_fingerprints_left(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4, np.nan])
    to_files(str(inp), str(out), "w", 5, invalid="skip", max_skips=None, progress=False)

    def downgrade(m):  # strip what only version 2 writes from the inputs, too
        m["version"] = 1
        for f in m["inputs"]:
            f.pop("fp")
    edit_manifest(out, downgrade, checksum=False)
    with pytest.raises(ExportError, match="version 1"):  # its rejects live where version 2 keeps them
        folder_status(str(out))


def test_the_real_version_1_layout_still_migrates(tmp_path):
    data = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "v1-layout")
    out = tmp_path / "out"
    shutil.copytree(os.path.join(data, "out-parquet"), out)
    assert folder_status(str(out), verify=True)["state"] == "complete"
    only_a = tmp_path / "only_a"
    only_a.mkdir()
    for f in ("a1", "a2", "a3"):
        shutil.copy(os.path.join(data, "in", f + ".parquet"), only_a)
    m = manifest(out)  # the fixture names the folder it was made from: point it here
    for e in m["inputs"]:
        p = only_a / os.path.basename(e["path"])
        e["path"], e["size"], e["mtime"] = str(p), p.stat().st_size, p.stat().st_mtime_ns
    (out / "_manifest.json").write_text(json.dumps(m))
    res = to_files(str(only_a), str(out), "w", 200, invalid="skip", max_skips=None, progress=False,
                   batches_per_file=3)
    assert res.up_to_date and manifest(out)["version"] == 2


def test_an_edited_max_weight_cannot_make_a_padded_batch_over_the_limit(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [9, 9])
    args = ("--weight", "w", "--limit", 20, "--cost", "padded", "-q")
    assert cli("export", inp, out, *args).returncode == 0
    assert manifest(out)["state"]["mx"] == 9
    edit_manifest(out, lambda m: m["state"].update(mx=3))
    write(inp, "b.parquet", [3, 3], start=2)  # with mx 3 they would join: cost 9 * 4 = 36 > 20
    before = tree(out)
    run = cli("export", inp, out, *args, "--append")
    assert run.returncode != 0 and "mx" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert tree(out) == before
    edit_manifest(out, lambda m: m["state"].update(mx=9))  # put it back: the append is right
    assert cli("export", inp, out, *args, "--append").returncode == 0
    assert [b["rows"] for b in manifest(out)["batches"]] == [2, 2]
    assert cli("status", out, "--verify").returncode == 0


def test_an_edited_total_and_state_cannot_make_a_greedy_batch_over_the_limit(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [5])
    to_files(str(inp), str(out), "w", 10, progress=False)

    def hide_total(m):
        m["state"]["tot"] = 0
        m["batches"][-1]["total"] = 0
    edit_manifest(out, hide_total)
    write(inp, "b.parquet", [5, 5], start=1)  # with tot 0 both would join: 15 > 10
    before = tree(out)
    with pytest.raises(ExportError, match="tot"):
        to_files(str(inp), str(out), "w", 10, append=True, progress=False)
    assert tree(out) == before


@pytest.mark.parametrize("mode, multiple, by", [("greedy", 3, None), ("fill", None, "k"), ("greedy", None, "k")])
def test_appends_with_a_recomputed_state_equal_one_export(tmp_path, mode, multiple, by):
    rng = np.random.default_rng(3)
    inp, out = tmp_path / "in", tmp_path / "o"
    inp.mkdir()
    frames = []
    for i in range(3):
        w = rng.integers(0, 9, 17) / 4.0
        frames.append(pd.DataFrame({"w": w, "k": np.where(np.arange(17) < 9, "a", "b"),
                                    "pos": np.arange(17 * i, 17 * (i + 1))}))
    opts = dict(mode=mode, multiple=multiple, by=by, batches_per_file=2, format="csv", progress=False)
    for i, f in enumerate(frames):
        f.to_parquet(inp / f"f{i}.parquet", index=False)
        to_files(str(inp), str(out), "w", 5.5, append=True, **opts)
    to_files(str(inp), str(tmp_path / "one"), "w", 5.5, **opts)
    assert tree(out) == tree(tmp_path / "one")
    assert folder_status(str(out), verify=True)["verified"]


def test_an_export_of_no_rows_carries_the_empty_state(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [np.nan, np.nan])  # every row left out: no batch yet
    to_files(str(inp), str(out), "w", 5, invalid="skip", max_skips=None, progress=False)
    edit_manifest(out, lambda m: m["state"].update(tot=3, rows=1))
    write(inp, "b.parquet", [1, 2], start=2)
    with pytest.raises(ExportError, match="state.rows 1"):
        to_files(str(inp), str(out), "w", 5, invalid="skip", max_skips=None, append=True, progress=False)
    edit_manifest(out, lambda m: m["state"].update(tot=0, rows=0))
    res = to_files(str(inp), str(out), "w", 5, invalid="skip", max_skips=None, append=True, progress=False)
    assert res.rows == 2 and res.rejects == 2


@pytest.mark.parametrize("new_limit", [20, 5])
def test_an_edited_limit_fails_status_verify(tmp_path, new_limit):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [5] * 8)
    assert cli("export", inp, out, "--weight", "w", "--limit", 10, "-q").returncode == 0
    assert cli("status", out, "--verify").returncode == 0
    edit_manifest(out, lambda m: m["settings"].update(limit=new_limit))
    st = cli("status", out, "--verify")
    assert st.returncode != 0 and f"limit={new_limit}" in st.stderr, st.stderr


def test_an_edited_batch_total_fails_status_verify(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    write(inp, "a.parquet", [1, 2, 3, 4, 2, 2])
    to_files(str(inp), str(out), "w", 5, progress=False)
    edit_manifest(out, lambda m: m["batches"][0].update(total=4))
    with pytest.raises(ExportError, match="batch 0"):
        folder_status(str(out), verify=True)


def test_status_verify_checks_each_mode_rule(tmp_path):
    rng = np.random.default_rng(5)
    inp = tmp_path / "in"
    write(inp, "a.parquet", rng.integers(0, 7, 60))
    for i, opts in enumerate([dict(mode="fill"), dict(mode="floor"), dict(mode="greedy", cost="padded"),
                              dict(mode="greedy", max_rows=3), dict(mode="fill", cost="padded")]):
        out = tmp_path / f"o{i}"
        to_files(str(inp), str(out), "w", 10, progress=False, **opts)
        assert folder_status(str(out), verify=True)["verified"]
        edit_manifest(out, lambda m: m["settings"].update(limit=7))
        with pytest.raises(ExportError, match="limit=7"):
            folder_status(str(out), verify=True)


# ------------------------------------------------------------ item 9: recorded sha256 on append
def test_an_append_checks_the_recorded_sha256_without_the_flag(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "o"
    inp.mkdir()
    n = 30000  # > 128 KiB of CSV: a change in the middle escapes the cheap fingerprint
    pd.DataFrame({"w": np.full(n, 1), "pos": np.arange(n)}).to_csv(inp / "a.csv", index=False)
    args = ("--weight", "w", "--limit", 100, "-q")
    assert cli("export", inp, out, *args, "--verify-inputs").returncode == 0
    assert "sha256" in manifest(out)["inputs"][0]
    path = inp / "a.csv"
    st = path.stat()
    data = bytearray(path.read_bytes())
    middle = data.index(b"\n1,15000\n") + 1
    data[middle] = ord("2")  # same size, weight 1 -> 2
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    pd.DataFrame({"w": [1], "pos": [n]}).to_csv(inp / "b.csv", index=False)
    before = tree(out)
    run = cli("export", inp, out, *args, "--append")
    assert run.returncode != 0 and "a.csv changed" in run.stderr
    assert tree(out) == before
    path.write_bytes(bytes(data).replace(b"\n2,15000\n", b"\n1,15000\n"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cli("export", inp, out, *args, "--append").returncode == 0
    assert all("sha256" in f for f in manifest(out)["inputs"])  # the new input recorded as well


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(0, 12), min_size=1, max_size=60),
    float_weights=st.booleans(),
    mode=st.sampled_from(["greedy", "fill", "floor"]),
    cost=st.sampled_from(["sum", "padded"]),
    max_rows=st.sampled_from([None, 3]),
    by=st.booleans(),
    multiple=st.sampled_from([None, 2]),
    limit=st.sampled_from([7, 10, 25]),
    fmt=st.sampled_from(["parquet", "csv"]),
)
def test_status_verify_passes_every_genuine_export(tmp_path_factory, weights, float_weights, mode, cost, max_rows,
                                                   by, multiple, limit, fmt):
    if mode != "greedy":
        multiple = None
    if mode == "floor":
        cost = "sum"
    w = np.array(weights) / 4.0 if float_weights else np.array(weights)
    df = pd.DataFrame({"w": w, "k": np.where(np.arange(len(w)) % 13 < 6, "a", "b")})
    out = tmp_path_factory.mktemp("verify") / "o"
    to_files(dd.from_pandas(df, npartitions=3), str(out), "w", limit, mode=mode, cost=cost, max_rows=max_rows,
             by="k" if by else None, multiple=multiple, format=fmt, batches_per_file=2, progress=False)
    assert folder_status(str(out), verify=True)["verified"]
