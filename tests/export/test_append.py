"""Incremental export: N appends give the same folder, byte for byte, as one export."""
from __future__ import annotations

import json
import os
import shutil

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import ExportError, to_files
from dask_cumbatch.export.manifest import with_checksum
from reference import reference_ids
from conftest import TEXT, tree, manifest

pytestmark = pytest.mark.usefixtures("threaded")


def frames_for(sizes, seed=0, float_weights=False, ones=False):
    rng = np.random.default_rng(seed)
    out, pos = [], 0
    for n in sizes:
        if ones:
            w = np.ones(n, dtype="int64")
        elif float_weights:
            w = rng.integers(0, 200, n) / 8.0  # exact in float64: sums do not depend on grouping
        else:
            w = rng.integers(0, 30, n)
        out.append(pd.DataFrame({
            "w": w,
            "k": pd.array(np.where((np.arange(pos, pos + n) // 23) % 3 == 1, "b", "a"), dtype=TEXT),
            "pos": np.arange(pos, pos + n, dtype="int64"),
        }))
        pos += n
    return out


def append_vs_once(tmp, frames, limit, fmt="parquet", bpf=1, **opts):
    """Append the frames one file at a time into app/, then export all at once into one/."""
    inp = tmp / "in"
    for d in (inp, tmp / "app", tmp / "one"):
        shutil.rmtree(d, ignore_errors=True)
    inp.mkdir()
    for i, f in enumerate(frames):
        f.to_parquet(inp / f"f{i:03d}.parquet", index=False)
        res = to_files(str(inp), str(tmp / "app"), "w", limit, append=True, format=fmt,
                       batches_per_file=bpf, progress=False, **opts)
        assert res.rows + res.rejects == sum(len(x) for x in frames[: i + 1])
    to_files(str(inp), str(tmp / "one"), "w", limit, format=fmt, batches_per_file=bpf, progress=False, **opts)
    return tree(tmp / "app"), tree(tmp / "one")


def exported_ids(folder):
    files = list(dict.fromkeys(b["file"] for b in manifest(folder)["batches"]))
    fmt = manifest(folder)["settings"]["format"]
    read = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    df = pd.concat([read(os.path.join(folder, f)) for f in files], ignore_index=True)
    return df["batch"].tolist(), df["pos"].tolist()


SIZES = [40, 0, 1, 33, 90, 2, 1, 25]  # an empty input and single-row appends included

CASES = [
    dict(mode="greedy"),
    dict(mode="fill"),
    dict(mode="floor"),
    dict(mode="greedy", max_rows=6),
    dict(mode="greedy", by="k"),
    dict(mode="fill", by="k", max_rows=5),
    dict(mode="floor", by="k", max_rows=4),
    dict(mode="greedy", cost="padded"),
    dict(mode="fill", cost="padded", by="k"),
    dict(mode="greedy", multiple=4),
    dict(mode="greedy", multiple=3, max_rows=10, by="k"),
]


@pytest.mark.parametrize("opts", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_appends_equal_one_export(tmp_path, opts):
    frames = frames_for(SIZES, seed=len(str(opts)))
    app, one = append_vs_once(tmp_path, frames, 45, **opts)
    assert app == one
    all_rows = pd.concat(frames, ignore_index=True)
    keys = all_rows.k.tolist() if opts.get("by") else None
    ref_opts = {k: v for k, v in opts.items() if k != "by"}
    ids, pos = exported_ids(tmp_path / "app")
    assert pos == list(range(len(all_rows)))
    assert ids == reference_ids(all_rows.w.tolist(), 45, keys=keys, **ref_opts)


@pytest.mark.parametrize("fmt, bpf", [("parquet", 3), ("csv", 1), ("jsonl", 2)])
def test_appends_with_cut_backs_into_the_previous_run(tmp_path, fmt, bpf):
    # weights 1, limit 10, multiple 4: an open batch of 10 rows is cut back to 8 when the next
    # input arrives, so 2 rows of the previous run's last file move into a new batch
    sizes = [10, 1, 5, 10, 2, 0, 13, 1]
    frames = frames_for(sizes, ones=True)
    app, one = append_vs_once(tmp_path, frames, 10, fmt=fmt, bpf=bpf, multiple=4)
    assert app == one
    all_rows = pd.concat(frames, ignore_index=True)
    ids, _ = exported_ids(tmp_path / "app")
    assert ids == reference_ids(all_rows.w.tolist(), 10, multiple=4)


def test_float_weights_and_text_format(tmp_path):
    frames = frames_for([30, 7, 0, 41, 1], float_weights=True, seed=5)
    app, one = append_vs_once(tmp_path, frames, 60.5, fmt="csv", bpf=2, mode="fill")
    assert app == one


def test_earlier_files_stay_untouched(tmp_path):
    frames = frames_for([60, 30])
    inp = tmp_path / "in"
    inp.mkdir()
    frames[0].to_parquet(inp / "a.parquet", index=False)
    to_files(str(inp), str(tmp_path / "o"), "w", 40, progress=False, append=True)
    before = tree(tmp_path / "o")
    stats = {n: os.stat(tmp_path / "o" / n).st_mtime_ns for n in before}
    frames[1].to_parquet(inp / "b.parquet", index=False)
    res = to_files(str(inp), str(tmp_path / "o"), "w", 40, progress=False, append=True)
    after = tree(tmp_path / "o")
    last_old = manifest(tmp_path / "o")["batches"][0]["file"]
    n_old = len([n for n in before if n.startswith("part-")])
    for name in sorted(n for n in before if n.startswith("part-"))[:-1]:  # all but the open file
        assert after[name] == before[name]
        assert os.stat(tmp_path / "o" / name).st_mtime_ns == stats[name]  # not even rewritten
    assert res.appended and res.new_rows == 30
    assert res.files_written == res.files - n_old + 1 or res.files_written == res.files - n_old
    assert last_old in after


def test_nothing_new_is_up_to_date(tmp_path):
    frames = frames_for([20])
    inp = tmp_path / "in"
    inp.mkdir()
    frames[0].to_parquet(inp / "a.parquet", index=False)
    to_files(str(inp), str(tmp_path / "o"), "w", 40, progress=False, append=True)
    before = tree(tmp_path / "o")
    res = to_files(str(inp), str(tmp_path / "o"), "w", 40, progress=False, append=True)
    assert res.up_to_date and res.files_written == 0 and tree(tmp_path / "o") == before


def test_append_refusals_name_the_problem(tmp_path):
    frames = frames_for([20, 20, 20])
    inp = tmp_path / "in"
    inp.mkdir()
    frames[0].to_parquet(inp / "b.parquet", index=False)
    out = tmp_path / "o"
    to_files(str(inp), str(out), "w", 40, progress=False, append=True, max_rows=9)
    before = tree(out)
    frames[1].to_parquet(inp / "c.parquet", index=False)
    with pytest.raises(ExportError, match=r"max_rows=9 there, None now"):
        to_files(str(inp), str(out), "w", 40, progress=False, append=True)
    with pytest.raises(ExportError, match="other inputs.*append=True"):
        to_files(str(inp), str(out), "w", 40, progress=False, max_rows=9)
    frames[2].to_parquet(inp / "a.parquet", index=False)  # sorts before the exported b.parquet
    with pytest.raises(ExportError, match=r"a\.parquet sorts before the already exported .*b\.parquet"):
        to_files(str(inp), str(out), "w", 40, progress=False, append=True, max_rows=9)
    os.remove(inp / "a.parquet")
    os.remove(inp / "b.parquet")
    with pytest.raises(ExportError, match=r"b\.parquet was exported before but is missing"):
        to_files(str(inp), str(out), "w", 40, progress=False, append=True, max_rows=9)
    frames[0].iloc[:5].to_parquet(inp / "b.parquet", index=False)
    with pytest.raises(ExportError, match=r"b\.parquet changed since it was exported"):
        to_files(str(inp), str(out), "w", 40, progress=False, append=True, max_rows=9)
    assert tree(out) == before
    res = to_files(str(inp), str(out), "w", 40, progress=False, append=True, max_rows=9, overwrite=True)
    assert res.rows == 25 and not res.appended


def _tamper(out, fn):
    """Change the manifest and recompute its own checksum, as a careful tamperer would: the
    checks behind the checksum must still catch the change."""
    m = manifest(out)
    fn(m)
    (out / "_manifest.json").write_text(json.dumps(with_checksum(m)))


@pytest.mark.parametrize("how, pattern", [
    ("dotdot", "unsafe file name"),
    ("absolute", "unsafe file name"),
    ("wrong_name", "names file"),
    ("size", "has .* bytes, the manifest says"),
    ("checksum", "does not match its checksum"),
    ("symlink", "not a plain file"),
    ("garbage", "cannot read the manifest"),
])
def test_a_manifest_is_data_not_instructions(tmp_path, how, pattern):
    frames = frames_for([50, 10])
    inp = tmp_path / "in"
    inp.mkdir()
    frames[0].to_parquet(inp / "a.parquet", index=False)
    out = tmp_path / "o"
    to_files(str(inp), str(out), "w", 40, progress=False, append=True)
    last = manifest(out)["batches"][-1]["file"]
    outside = tmp_path / "outside.parquet"
    if how == "dotdot":
        _tamper(out, lambda m: m["batches"][-1].update(file="../outside.parquet"))
    elif how == "absolute":
        _tamper(out, lambda m: m["batches"][-1].update(file=str(outside)))
    elif how == "wrong_name":
        _tamper(out, lambda m: m["batches"][-1].update(file="part-00000000.parquet"))
    elif how == "size":
        _tamper(out, lambda m: m["batches"][-1].update(bytes=m["batches"][-1]["bytes"] + 1))
    elif how == "checksum":
        _tamper(out, lambda m: m["batches"][-1].update(sha256="0" * 64))
    elif how == "symlink":
        shutil.copy(out / last, outside)
        os.remove(out / last)
        os.symlink(outside, out / last)
    elif how == "garbage":
        (out / "_manifest.json").write_text("{not json")
    before = tree(out)
    frames[1].to_parquet(inp / "b.parquet", index=False)
    with pytest.raises(ExportError, match=pattern):
        to_files(str(inp), str(out), "w", 40, progress=False, append=True)
    assert tree(out) == before  # nothing written
    assert not (out / "_cumbatch" / "work").exists()


def test_dataframe_sources_append_in_order(tmp_path):
    frames = frames_for([25, 0, 1, 40])
    for i, f in enumerate(frames):
        res = to_files(dd.from_pandas(f, npartitions=2), str(tmp_path / "app"), "w", 30, append=True,
                       progress=False)
    # the same frame again is recognised as the last consumed input (its token), not appended twice
    again = to_files(dd.from_pandas(frames[-1], npartitions=2), str(tmp_path / "app"), "w", 30, append=True,
                     progress=False)
    assert again.up_to_date and again.rows == res.rows == 66
    whole = pd.concat(frames, ignore_index=True)
    to_files(dd.from_pandas(whole, npartitions=3), str(tmp_path / "one"), "w", 30, progress=False)
    a, b = manifest(tmp_path / "app"), manifest(tmp_path / "one")
    assert a["batches"] == b["batches"] and a["state"] == b["state"]
    assert len(a["inputs"]) == 4


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 25), min_size=1, max_size=5),
    mode=st.sampled_from(["greedy", "fill", "floor"]),
    max_rows=st.sampled_from([None, 3, 8]),
    by=st.booleans(),
    limit=st.sampled_from([1, 17, 50]),
    seed=st.integers(0, 1000),
)
def test_appends_equal_one_export_property(tmp_path_factory, sizes, mode, max_rows, by, limit, seed):
    tmp = tmp_path_factory.mktemp("prop")
    opts = dict(mode=mode, max_rows=max_rows, by="k" if by else None)
    frames = frames_for(sizes, seed=seed)
    app, one = append_vs_once(tmp, frames, limit, **opts)
    assert app == one


def test_rejects_are_appended_too(tmp_path):
    frames = frames_for([30, 12, 0, 25], float_weights=True, seed=11)
    for f in frames:
        if len(f):
            f.loc[f.index[::7], "w"] = np.nan
            f.loc[f.index[3::9], "w"] = -1.0
    app, one = append_vs_once(tmp_path, frames, 40.0, invalid="skip", max_skips=None)
    assert app == one
    rej = pd.read_parquet(tmp_path / "app" / "_cumbatch" / "rejects.pqt")
    whole = pd.concat(frames, ignore_index=True)
    bad = whole[~(whole.w >= 0)]
    assert rej["pos"].tolist() == bad["pos"].tolist()
    assert set(rej["reason"]) == {"NaN", "negative"}
    assert manifest(tmp_path / "app")["skipped"] == len(bad)
