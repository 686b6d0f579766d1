"""to_files: content, manifest, determinism, formats, rejects, refusals, resume, fsspec paths."""
from __future__ import annotations

import hashlib
import json
import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch import export as ex
from dask_cumbatch.export import tasks
from dask_cumbatch.export.manifest import with_checksum
from dask_cumbatch.export import ExportError, to_files
from reference import reference_ids
from conftest import tree, manifest

pytestmark = pytest.mark.usefixtures("threaded")


def read_back(folder, fmt="parquet") -> pd.DataFrame:
    """All exported rows in batch order (files as the manifest lists them)."""
    files = list(dict.fromkeys(b["file"] for b in manifest(folder)["batches"]))
    readers = {
        "parquet": pd.read_parquet,
        "csv": pd.read_csv,
        "jsonl": lambda p: pd.read_json(p, lines=True),
    }
    frames = [readers[fmt](os.path.join(folder, f)) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_inputs(folder, sizes, seed=0, weights=None, **extra_cols):
    """Parquet files f000.parquet... with columns w (int weights), pos (global row), k (key)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    pos = 0
    frames = []
    for i, n in enumerate(sizes):
        w = rng.integers(0, 40, n) if weights is None else np.asarray(weights[pos:pos + n])
        df = pd.DataFrame({"w": w, "pos": np.arange(pos, pos + n, dtype="int64"),
                           "k": (np.arange(pos, pos + n) // 17) % 3,
                           "s": pd.array([f"row{j}" for j in range(pos, pos + n)], dtype="str")})
        df.to_parquet(os.path.join(folder, f"f{i:03d}.parquet"), index=False)
        frames.append(df)
        pos += n
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def data(tmp_path):
    pdf = write_inputs(tmp_path / "in", [120, 0, 1, 300, 79])
    return tmp_path, pdf


def test_export_matches_reference_and_manifest(data):
    tmp, pdf = data
    out = tmp / "out"
    res = to_files(str(tmp / "in"), str(out), "w", 100, progress=False)
    ids = reference_ids(pdf.w.tolist(), 100)
    assert res.batches == max(ids) + 1 and res.rows == len(pdf)
    assert res.files == res.batches == res.files_written and res.files_skipped == 0
    back = read_back(out)
    assert back["batch"].tolist() == ids
    assert back["pos"].tolist() == pdf.pos.tolist()
    assert back.columns.tolist() == ["w", "pos", "k", "s", "batch"]
    m = manifest(out)
    assert m["settings"]["limit"] == 100 and m["settings"]["mode"] == "greedy"
    assert [b["batch"] for b in m["batches"]] == list(range(res.batches))
    names = sorted(os.listdir(out))
    assert names[:3] == ["_SUCCESS", "_cumbatch", "_manifest.json"]  # control files under _cumbatch/
    assert not (out / "_cumbatch" / "work").exists()
    for b in m["batches"]:
        rows = back[back.batch == b["batch"]]
        assert b["rows"] == len(rows) and b["total"] == int(rows.w.sum()) and b["total"] <= 100
        data_ = (out / b["file"]).read_bytes()
        assert b["bytes"] == len(data_) and b["sha256"] == hashlib.sha256(data_).hexdigest()
    assert [i["path"] for i in m["inputs"]] == [str(tmp / "in" / f"f{i:03d}.parquet") for i in range(5)]
    assert all(i["size"] > 0 and isinstance(i["mtime"], int) for i in m["inputs"])


def test_bytes_do_not_depend_on_partitioning_or_run(tmp_path):
    pdf = write_inputs(tmp_path / "in", [500])
    pdf = pdf.astype({"w": "float64"})
    pdf["w"] = pdf.w / 3.0
    folders = []
    for n in (1, 3, 7):
        ddf = dd.from_pandas(pdf, npartitions=n, sort=False)
        folders.append(tmp_path / f"o{n}")
        to_files(ddf, str(folders[-1]), "w", 20.5, progress=False)
    again = tmp_path / "again"
    to_files(dd.from_pandas(pdf, npartitions=3, sort=False), str(again), "w", 20.5, progress=False)
    assert tree(folders[1]) == tree(again)  # same input, same run: byte-identical folder
    data_files = [{k: v for k, v in tree(f).items() if k.startswith("part-")} for f in folders]
    assert data_files[0] == data_files[1] == data_files[2]
    batches = [manifest(f)["batches"] for f in folders]
    assert batches[0] == batches[1] == batches[2]  # float totals summed in row order, exactly
    assert read_back(folders[0])["batch"].tolist() == reference_ids(pdf.w.tolist(), 20.5)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_and_batches_per_file(data, fmt):
    tmp, pdf = data
    out = tmp / fmt
    res = to_files(str(tmp / "in"), str(out), "w", 60, format=fmt, batches_per_file=4,
                   mode="fill", max_rows=25, progress=False)
    ids = reference_ids(pdf.w.tolist(), 60, mode="fill", max_rows=25)
    back = read_back(out, fmt)
    assert back["batch"].tolist() == ids
    assert back["s"].tolist() == pdf.s.tolist()
    m = manifest(out)
    assert res.files == len({b["file"] for b in m["batches"]}) == -(-res.batches // 4)
    assert all(b["file"] == f"part-{b['batch'] // 4:08d}.{fmt}" for b in m["batches"])
    assert m["open"]["file"] == "_cumbatch/open.pqt"  # the last file's rows, kept for --append
    last = pd.read_parquet(out / "_cumbatch" / "open.pqt")
    assert last["batch"].tolist() == [i for i in ids if i // 4 == max(ids) // 4]


def test_by_key_and_accessor(data):
    tmp, pdf = data
    ddf = dd.read_parquet(str(tmp / "in"))
    res = ddf.cumbatch.to_files(str(tmp / "acc"), "w", 90, by="k", progress=False)
    back = read_back(tmp / "acc")
    assert back["batch"].tolist() == reference_ids(pdf.w.tolist(), 90, keys=pdf.k.tolist())
    assert res.batches == back["batch"].max() + 1
    # a file-backed frame is fingerprinted by its files: a re-run is "up to date"
    again = ddf.cumbatch.to_files(str(tmp / "acc"), "w", 90, by="k", progress=False)
    assert again.up_to_date and again.files_written == 0


def test_pandas_input_and_named_index(tmp_path):
    pdf = pd.DataFrame({"w": [5, 5, 5, 1, 9], "v": list("abcde")},
                       index=pd.Index([10, 20, 30, 40, 50], name="key"))
    res = to_files(pdf, str(tmp_path / "o"), "w", 10, progress=False)
    back = read_back(tmp_path / "o")
    assert back.columns.tolist() == ["key", "w", "v", "batch"]  # a named index is kept as a column
    assert back["key"].tolist() == [10, 20, 30, 40, 50] and back["batch"].tolist() == [0, 0, 1, 1, 2]
    assert res.batches == 3


def test_invalid_skip_writes_rejects_with_reasons(tmp_path):
    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0, -1.0, np.inf, 3.0, 4.0], "p": range(7)})
    res = to_files(dd.from_pandas(pdf, npartitions=3), str(tmp_path / "o"), "w", 5,
                   invalid="skip", max_skips=None, progress=False)
    assert res.rejects == 3 and res.rows == 4
    rej = pd.read_parquet(tmp_path / "o" / "_cumbatch" / "rejects.pqt")
    assert rej["p"].tolist() == [1, 3, 4]
    assert rej["reason"].tolist() == ["NaN", "negative", "infinite"]
    back = read_back(tmp_path / "o")
    assert back["p"].tolist() == [0, 2, 5, 6] and back["batch"].tolist() == [0, 0, 1, 2]
    m = manifest(tmp_path / "o")
    assert m["skipped"] == 3 and m["rejects"]["rows"] == 3


def test_skipping_must_be_allowed_explicitly(tmp_path):
    # max_skips defaults to 0, as a batch framework's skip limit: invalid="skip" alone aborts
    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0]})
    with pytest.raises(ExportError, match=r"1 row.*more than max_skips=0.*set max_skips="):
        to_files(pdf, str(tmp_path / "o"), "w", 5, invalid="skip", progress=False)
    assert not (tmp_path / "o" / "_SUCCESS").exists()
    assert to_files(pdf, str(tmp_path / "o"), "w", 5, invalid="skip", max_skips=None,
                    progress=False).rejects == 1


def test_max_skips_aborts_before_writing(tmp_path):
    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0, np.nan, 1.0]})
    with pytest.raises(ExportError, match="2 row.*more than max_skips=1"):
        to_files(pdf, str(tmp_path / "o"), "w", 5, invalid="skip", max_skips=1, progress=False)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    res = to_files(pdf, str(tmp_path / "o"), "w", 5, invalid="skip", max_skips=2, progress=False)
    assert res.rejects == 2 and (tmp_path / "o" / "_SUCCESS").exists()


def test_validation_happens_before_anything_is_written(tmp_path):
    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0], "t": ["a", "b", "c"]})
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="invalid value"):
        to_files(pdf, str(out), "w", 5, progress=False)
    with pytest.raises(KeyError, match="nope"):
        to_files(pdf, str(out), "nope", 5, progress=False)
    with pytest.raises(TypeError, match="numeric"):
        to_files(pdf, str(out), "t", 5, progress=False)
    with pytest.raises(ValueError, match="limit"):
        to_files(pdf, str(out), "w", 0, progress=False)
    with pytest.raises(ValueError, match="format"):
        to_files(pdf, str(out), "w", 5, format="xlsx", progress=False)
    with pytest.raises(ValueError, match="batches_per_file"):
        to_files(pdf, str(out), "w", 5, batches_per_file=0, progress=False)
    with pytest.raises(ValueError, match="name="):
        to_files(pdf, str(out), "w", 5, name="w", progress=False)
    assert not out.exists()


def test_refuses_other_options_inputs_and_foreign_folders(data):
    tmp, pdf = data
    out = tmp / "out"
    to_files(str(tmp / "in"), str(out), "w", 100, progress=False)
    before = tree(out)
    with pytest.raises(ExportError, match=r"other options \(limit=100 there, 50 now\)"):
        to_files(str(tmp / "in"), str(out), "w", 50, progress=False)
    with pytest.raises(ExportError, match="mode="):
        to_files(str(tmp / "in"), str(out), "w", 100, mode="fill", progress=False)
    write_inputs(tmp / "in2", [10])
    with pytest.raises(ExportError, match="other inputs"):
        to_files(str(tmp / "in2"), str(out), "w", 100, progress=False)
    assert tree(out) == before
    res = to_files(str(tmp / "in"), str(out), "w", 50, overwrite=True, progress=False)
    assert manifest(out)["settings"]["limit"] == 50 and res.files_written == res.files
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        to_files(str(tmp / "in"), str(foreign), "w", 100, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    to_files(str(tmp / "in"), str(foreign), "w", 100, overwrite=True, progress=False)
    assert not (foreign / "notes.txt").exists()


def test_overwrite_never_deletes_the_input(tmp_path):
    write_inputs(tmp_path / "in", [10])
    with pytest.raises(ExportError, match="would delete the input"):
        to_files(str(tmp_path / "in"), str(tmp_path), "w", 10, overwrite=True, progress=False)
    assert (tmp_path / "in" / "f000.parquet").exists()


def test_interrupted_run_resumes_to_the_same_bytes(data, monkeypatch):
    tmp, pdf = data
    to_files(str(tmp / "in"), str(tmp / "ref"), "w", 30, progress=False)
    calls = {"n": 0}
    real = tasks.combine_group

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full (simulated)")
        return real(*args, **kw)

    monkeypatch.setattr(tasks, "combine_group", flaky)
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="simulated"):
        to_files(str(tmp / "in"), str(tmp / "out"), "w", 30, progress=False)
    monkeypatch.setattr(tasks, "combine_group", real)
    assert not (tmp / "out" / "_SUCCESS").exists()
    assert ex.folder_status(str(tmp / "out"))["state"] == "interrupted export"
    with pytest.raises(ExportError, match="interrupted"):
        to_files(str(tmp / "in"), str(tmp / "out"), "w", 30, resume=False, progress=False)
    with pytest.raises(ExportError, match="interrupted export made with other options"):
        to_files(str(tmp / "in"), str(tmp / "out"), "w", 31, progress=False)
    res = to_files(str(tmp / "in"), str(tmp / "out"), "w", 30, progress=False)
    assert res.resumed and res.files_skipped > 0
    assert tree(tmp / "out") == tree(tmp / "ref")


def test_a_crash_inside_a_task_of_several_groups_resumes_to_the_same_bytes(data, monkeypatch):
    # groups joined three to a task: a crash inside a task leaves the files of the groups it
    # joined before written but not recorded (a task's files are made durable, then
    # recorded, together); the resume rewrites them
    from dask_cumbatch.export import job
    from dask_cumbatch.export.folder import file_name

    tmp, _ = data
    to_files(str(tmp / "in"), str(tmp / "ref"), "w", 30, progress=False)
    monkeypatch.setattr(job, "groups_per_task", lambda n: 3)
    calls, joined, real = {"n": 0}, [], tasks.combine_group

    def flaky(group, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full (simulated)")
        joined.append(group)
        return real(group, *args, **kw)

    tasks_run, real_task = [], tasks.combine_groups

    def task(items, ctx):
        tasks_run.append({g for g, *_ in items})
        return real_task(items, ctx)

    monkeypatch.setattr(tasks, "combine_group", flaky)
    monkeypatch.setattr(tasks, "combine_groups", task)
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="simulated"):
        to_files(str(tmp / "in"), str(tmp / "out"), "w", 30, progress=False)
    recorded = {int(n[1:11]) for n in os.listdir(tmp / "out" / "_cumbatch" / "work" / "groups")}
    assert len(tasks_run) == 2 and recorded == tasks_run[0]  # the task that finished, whole
    unrecorded = [g for g in joined if g not in recorded]  # the crashed task's, before the crash
    assert unrecorded and all((tmp / "out" / file_name(g, "parquet")).exists() for g in unrecorded)
    monkeypatch.setattr(tasks, "combine_group", real)
    res = to_files(str(tmp / "in"), str(tmp / "out"), "w", 30, progress=False)
    assert res.resumed
    assert tree(tmp / "out") == tree(tmp / "ref")


def test_fsspec_memory_filesystem(tmp_path):
    pdf = pd.DataFrame({"w": np.arange(50) % 7, "v": np.arange(50)})
    url = "memory://cumbatch-test/out"
    try:
        res = to_files(dd.from_pandas(pdf, npartitions=4), url, "w", 12, progress=False)
        import fsspec

        fs = fsspec.filesystem("memory")
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/cumbatch-test/out", detail=False))
        names = [n for n in names if n != "_cumbatch"]  # control folder (temporary names)
        assert names[:2] == ["_SUCCESS", "_manifest.json"] and len(names) == res.files + 2
        m = json.loads(fs.cat_file("/cumbatch-test/out/_manifest.json"))
        back = pd.concat([pd.read_parquet(fs.open(f"/cumbatch-test/out/{b['file']}"))
                          for b in m["batches"]])
        assert back["batch"].tolist() == reference_ids(pdf.w.tolist(), 12)
        assert ex.folder_status(url, verify=True)["verified"]
    finally:
        import fsspec

        fsspec.filesystem("memory").rm("/cumbatch-test", recursive=True)


def test_status_and_verify(data):
    tmp, _ = data
    out = tmp / "out"
    assert ex.folder_status(str(out))["state"] == "empty"
    to_files(str(tmp / "in"), str(out), "w", 100, progress=False)
    st = ex.folder_status(str(out), verify=True)
    assert st["state"] == "complete" and st["verified"] and st["rows"] == 500
    assert st["open_batch"]["batch"] == st["batches"] - 1
    target = out / manifest(out)["batches"][0]["file"]
    data_ = bytearray(target.read_bytes())
    data_[-20] ^= 1  # same size, other bytes
    target.write_bytes(bytes(data_))
    with pytest.raises(ExportError, match="checksum"):
        ex.folder_status(str(out), verify=True)


def test_input_listing_and_reading_errors(tmp_path):
    with pytest.raises(ExportError, match="input not found"):
        to_files(str(tmp_path / "missing"), str(tmp_path / "o"), "w", 5, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no Parquet or CSV files"):
        to_files(str(tmp_path / "empty"), str(tmp_path / "o"), "w", 5, progress=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ExportError, match="cannot read the input"):
        to_files(str(tmp_path / "bad.parquet"), str(tmp_path / "o"), "w", 5, progress=False)
    pd.DataFrame({"w": [1, 2, 3]}).to_csv(tmp_path / "a.csv", index=False)
    res = to_files(str(tmp_path / "a.csv"), str(tmp_path / "o"), "w", 3, progress=False)
    assert res.batches == 2
    kind, files = ex.list_inputs(str(tmp_path / "*.csv"))
    assert kind == "csv" and [os.path.basename(f["path"]) for f in files] == ["a.csv"]


def test_natural_order_of_input_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in (1, 2, 10):
        pd.DataFrame({"w": [i]}).to_parquet(folder / f"part.{i}.parquet")
    (folder / "_hidden.parquet").write_bytes(b"x")
    _, files = ex.list_inputs(str(folder))
    assert [os.path.basename(f["path"]) for f in files] == ["part.1.parquet", "part.2.parquet", "part.10.parquet"]


def test_manifest_records_every_option_that_changes_the_result():
    """SETTING_KEYS comes from the option spec: every batching option but ``device`` (which gives
    the same ids on every device), between the export's own weight/limit and format/files."""
    from dask_cumbatch.export.manifest import SETTING_KEYS, export_settings
    from dask_cumbatch.options import OPTIONS, BatchOptions

    assert set(SETTING_KEYS) == set(OPTIONS) - {"device"} | {"weight", "limit", "format", "batches_per_file"}
    assert tuple(export_settings(BatchOptions.make("w", 5), "csv", 1)) == SETTING_KEYS


def test_manifest_validation_rejects_unsafe_names(data):
    tmp, _ = data
    out = tmp / "out"
    to_files(str(tmp / "in"), str(out), "w", 100, progress=False)
    m = manifest(out)
    for bad in ("../evil.parquet", "/etc/passwd", "sub/part-00000000.parquet", "part-00000009.parquet"):
        m2 = json.loads(json.dumps(m))
        m2["batches"][0]["file"] = bad
        with pytest.raises(ExportError, match="unsafe|names file"):
            ex.validate_manifest(with_checksum(m2))  # a tamperer who fixes the checksum
    m2 = json.loads(json.dumps(m))
    m2["batches"][1]["batch"] = 7
    with pytest.raises(ExportError, match="not batch 1"):
        ex.validate_manifest(with_checksum(m2))
    m2 = json.loads(json.dumps(m))
    m2["state"] = {"x": 1}
    with pytest.raises(ExportError, match="bad state"):
        ex.validate_manifest(with_checksum(m2))
    with pytest.raises(ExportError, match="checksum does not match"):
        ex.validate_manifest(m2)
