"""What an export guarantees: one writer, durable and checked resumes, no links out,
changed inputs caught, tampered manifests refused, readable back by Dask/pandas/pyarrow,
status exit codes; and progress in notebooks."""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import types

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_cumbatch  # noqa: F401
from dask_cumbatch.export import ExportError, folder, folder_status, job, tasks, to_files
from dask_cumbatch.export.folder import Folder, WriterLock
from dask_cumbatch.export.manifest import with_checksum
from conftest import failing_on_call, manifest, tree

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "v1-layout")


def write_inputs(path, n_files=4, rows=300, seed=0, text=False):
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_files):
        df = pd.DataFrame({"w": rng.integers(1, 60, rows), "pos": np.arange(i * rows, (i + 1) * rows)})
        if text:
            df["txt"] = [f"row {j} " + "x" * 40 for j in range(len(df))]
        df.to_parquet(os.path.join(path, f"in-{i:03d}.parquet"), index=False)
    return str(path)


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kw)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cumbatch: error: "), stderr
    return lines[0]


def interrupt(inp, out, calls=3, limit=300, **kw):
    """Run an export that fails (as a crash would) at the ``calls``-th joined file group."""
    real = tasks.combine_group
    tasks.combine_group = failing_on_call(real, calls)
    try:
        with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="simulated"):
            to_files(inp, out, "w", limit, progress=False, **kw)
    finally:
        tasks.combine_group = real
    assert folder_status(out)["state"] == "interrupted export"


def parts_of(out):
    return sorted(n for n in os.listdir(out) if n.startswith("part-"))


# ------------------------------------------------------------------ 1. one writer per folder


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    inp = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with WriterLock(Folder(str(out))):
        for kw in ({}, {"append": True}):
            t0 = time.monotonic()
            with pytest.raises(ExportError, match=rf"{out} is being written by another export "
                                                  rf"\(pid {os.getpid()} on .* since "):
                to_files(inp, str(out), "w", 300, progress=False, **kw)
            assert time.monotonic() - t0 < 5  # at once, no waiting
        proc = cli("export", inp, out, "-w", "w", "-l", "300", "-q")  # the command line: one line, exit 1
        assert proc.returncode == 1
        assert f"pid {os.getpid()}" in one_line(proc.stderr) and str(out) in proc.stderr
    assert to_files(inp, str(out), "w", 300, progress=False).batches > 0  # free again


def test_a_killed_writer_never_leaves_the_lock_stuck(tmp_path):
    inp = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dask_cumbatch.export.folder import Folder, WriterLock\n"
         f"lock = WriterLock(Folder({str(out)!r})).acquire(); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = cli("export", inp, out, "-w", "w", "-l", "300", "-q")
        assert proc.returncode == 1 and f"pid {holder.pid}" in one_line(proc.stderr)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    proc = cli("export", inp, out, "-w", "w", "-l", "300", "-q")
    assert proc.returncode == 0, proc.stderr
    assert cli("status", out, "--verify").returncode == 0


def test_two_concurrent_exports_never_mix(tmp_path):
    """The issue's reproduction: two exports of different inputs into one folder."""
    a = write_inputs(tmp_path / "inA", n_files=6, rows=3000, seed=1)
    b = write_inputs(tmp_path / "inB", n_files=6, rows=3000, seed=2)
    out = tmp_path / "X"
    cmd = [sys.executable, "-m", "dask_cumbatch", "export"]
    first = subprocess.Popen(cmd + [a, str(out), "-w", "w", "-l", "300", "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.25)
    second = subprocess.run(cmd + [b, str(out), "-w", "w", "-l", "300", "-q"], capture_output=True, text=True,
                            timeout=300)
    first_err = first.communicate(timeout=300)[1]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 1], (first_err, second.stderr)
    failed = first_err if first.returncode else second.stderr
    assert "being written by another export" in failed or "other inputs" in failed
    assert cli("status", out, "--verify").returncode == 0
    m = manifest(out)
    assert len(parts_of(out)) == m["files"]
    assert len(pd.read_parquet(out)) == m["rows"] == 18000


# ------------------------------------------------------------------ 2. resume checks what it keeps


def test_resume_rewrites_a_damaged_kept_file(tmp_path):
    inp = write_inputs(tmp_path / "in")
    to_files(inp, str(tmp_path / "ref"), "w", 300, progress=False)
    out = str(tmp_path / "out")
    interrupt(inp, out)
    kept = parts_of(out)
    assert kept
    for name in kept:  # every file the interrupted run finished: truncated, as a power loss could leave it
        open(os.path.join(out, name), "wb").close()
    res = to_files(inp, out, "w", 300, progress=False)
    assert res.resumed
    assert tree(out) == tree(tmp_path / "ref")
    assert folder_status(out, verify=True)["verified"]


def test_resume_after_kill9_never_certifies_an_empty_file(tmp_path):
    inp = write_inputs(tmp_path / "in", n_files=8, rows=6000)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert cli("export", inp, ref, "-w", "w", "-l", "300", "-q").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dask_cumbatch", "export", inp, str(out), "-w", "w", "-l", "300",
                             "-q"], stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(parts_of(out) if out.exists() else []) < 200:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = max(parts_of(out), key=lambda n: os.stat(out / n).st_mtime_ns)
    open(out / newest, "wb").close()
    rerun = cli("export", inp, out, "-w", "w", "-l", "300", "-q")
    if (out / "_SUCCESS").exists() and folder_status(str(out))["state"] == "complete" and rerun.returncode:
        # it had finished before the kill: the damaged file is refused, never certified
        assert "bytes, the manifest says" in one_line(rerun.stderr)
    else:
        assert rerun.returncode == 0, rerun.stderr
        assert tree(out) == tree(ref)
        assert cli("status", out, "--verify").returncode == 0


def durability_log(out, monkeypatch):
    """Record every fsync (the path) and syncfs, each with whether ``_SUCCESS`` and the first data
    file existed at that moment."""
    events = []
    real_fsync, real_syncfs = os.fsync, folder._syncfs

    def state():
        return (out / "_SUCCESS").exists(), (out / "part-00000000.parquet").exists()

    def fsync(fd):
        events.append((os.readlink(f"/proc/self/fd/{fd}"), *state()))
        return real_fsync(fd)

    def syncfs(path):
        done = real_syncfs(path)
        events.append(("syncfs" if done else "no syncfs", *state()))
        return done

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(folder, "_syncfs", syncfs)
    return events


def failing_syncfs(err):
    """A stand-in for libc's syncfs that fails with ``err`` (as ctypes reports errno)."""
    import ctypes

    def syncfs(fd):
        ctypes.set_errno(err)
        return -1
    return syncfs


def test_a_file_system_without_syncfs_gets_an_fsync_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "_libc_syncfs", lambda: failing_syncfs(errno.EINVAL))
    out = tmp_path / "out"
    events = durability_log(out, monkeypatch)
    to_files(pd.DataFrame({"w": [3, 3, 3, 3, 5]}), str(out), "w", 6, progress=False)
    assert ("no syncfs", False, True) in events  # tried, refused by the file system
    assert any(p == str(out / "part-00000000.parquet") for p, _, _ in events)  # then fsynced


def test_a_write_error_from_syncfs_fails_the_export(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "_libc_syncfs", lambda: failing_syncfs(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):
        to_files(pd.DataFrame({"w": [3, 3, 3, 3, 5]}), str(tmp_path / "out"), "w", 6, progress=False)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


@pytest.mark.parametrize("has_syncfs", [True, False])
def test_files_are_durable_before_their_record_and_success(tmp_path, monkeypatch, has_syncfs):
    out = tmp_path / "out"
    if not has_syncfs:  # another OS: each file and folder is fsynced instead
        monkeypatch.setattr(folder, "_libc_syncfs", lambda: None)
    events = durability_log(out, monkeypatch)
    with dask.config.set(scheduler="sync"):  # one task at a time: each record follows its own files
        to_files(pd.DataFrame({"w": [3, 3, 3, 3, 5]}), str(out), "w", 6, progress=False)
    before_success = [(path, file_there) for path, done, file_there in events if not done]
    if has_syncfs:  # one syncfs once the task's files are in place, before its record
        assert ("syncfs", True) in before_success
    else:
        assert any(p == str(out / "part-00000000.parquet") for p, _ in before_success), events
    # each task record (partition p..., joined group g...) comes after its files were made durable
    records = [i for i, (p, _, _) in enumerate(events) if "/_cumbatch/tmp/" in p and ".json." in p
               and os.path.basename(p)[:1] in "pg" and os.path.basename(p)[1:2].isdigit()]
    assert len(records) >= 2, events  # the partition's and the joined group's
    for prev, at in zip([-1] + records, records):
        window = [p for p, _, _ in events[prev + 1:at]]
        made_durable = ("syncfs" in window) if has_syncfs else any(
            "/_cumbatch/tmp/" not in p and not os.path.isdir(p) for p in window)
        assert made_durable, (events[at], window)
    assert str(out) in [p for p, _ in before_success]  # the folder, before _SUCCESS
    assert any("_manifest.json" in p for p, _ in before_success)
    assert events[-1][:2] == (str(out), True)  # and once more after _SUCCESS


# ------------------------------------------------------------------ 3. no links followed


def test_links_in_the_folder_are_refused_never_followed(tmp_path):
    inp = write_inputs(tmp_path / "in")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for target in (victim, tmp_path / "dangling.txt"):
        out = tmp_path / f"out-{target.stem}"
        interrupt(inp, str(out))
        os.symlink(target, out / "_SUCCESS")
        with pytest.raises(ExportError, match="_SUCCESS .* is a symbolic link"):
            to_files(inp, str(out), "w", 300, progress=False)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "dangling.txt").exists()


def test_a_linked_work_folder_receives_nothing(tmp_path):
    inp = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    interrupt(inp, str(out))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "_cumbatch" / "work", elsewhere)
    os.symlink(elsewhere, out / "_cumbatch" / "work")
    before = tree(elsewhere)
    with pytest.raises(ExportError, match="work in .* is a symbolic link"):
        to_files(inp, str(out), "w", 300, progress=False)
    assert tree(elsewhere) == before


def test_a_task_record_naming_a_file_outside_is_not_followed(tmp_path, monkeypatch):
    inp = write_inputs(tmp_path / "in")
    to_files(inp, str(tmp_path / "ref"), "w", 300, progress=False)
    out = tmp_path / "out"
    interrupt(inp, str(out))
    victim = tmp_path / "victim.arrow"
    victim.write_bytes(b"not an arrow file")
    record = out / "_cumbatch" / "work" / "parts" / "p00000000.json"
    rec = json.loads(record.read_text())
    rec["frags"] = [[g, k, "../../../victim.arrow"] for g, k in rec["frags"]]
    rec["files"] = {"../../../victim.arrow": [victim.stat().st_size, "0" * 64], **rec["files"]}
    record.write_text(json.dumps(rec))
    opened = []
    real = Folder.read
    monkeypatch.setattr(Folder, "read", lambda self, name: opened.append(name) or real(self, name))
    to_files(inp, str(out), "w", 300, progress=False)
    assert not any("victim" in name for name in opened)
    assert tree(out) == tree(tmp_path / "ref")


# ------------------------------------------------------------------ 4. inputs changed during a run


@pytest.mark.parametrize("how, verify_inputs", [
    ("more rows", False),
    ("new values, same time", False),
    ("permuted, same size and time", True),  # the footer is the same: only the full hash sees it
])
def test_an_input_changed_during_the_run_fails_it(tmp_path, monkeypatch, how, verify_inputs):
    inp = write_inputs(tmp_path / "in", n_files=3)
    victim = os.path.join(inp, "in-002.parquet")
    real = tasks.export_partition
    done = {}

    def rewrite_then_export(df, k, entry, ctx):
        if not done:
            done["yes"] = True
            st = os.stat(victim)
            old = pd.read_parquet(victim)
            new = {"more rows": pd.concat([old, old]), "new values, same time": old.assign(w=old.w + 1),
                   "permuted, same size and time": old.assign(w=old.w[::-1].to_numpy())}[how]
            new.to_parquet(victim, index=False)
            if how != "more rows":
                os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        return real(df, k, entry, ctx)

    monkeypatch.setattr(tasks, "export_partition", rewrite_then_export)
    out = tmp_path / "out"
    with dask.config.set(scheduler="sync"), pytest.raises(ExportError, match=r"input .*in-002.parquet changed"):
        to_files(inp, str(out), "w", 300, progress=False, verify_inputs=verify_inputs)
    assert not (out / "_SUCCESS").exists() and not (out / "_manifest.json").exists()  # nothing certified


@pytest.mark.parametrize("phase", ["summary", "write"])
def test_a_read_error_from_an_input_being_rewritten_names_the_input(tmp_path, monkeypatch, phase):
    # a file caught mid-rewrite fails its reader with Arrow's own error (found by a hostile run:
    # "Parquet file size is 4 bytes"); the export says which input changed instead
    import pyarrow as pa

    from dask_cumbatch.dask import summaries

    inp = write_inputs(tmp_path / "in", n_files=3)
    victim = os.path.join(inp, "in-002.parquet")

    def rewrite_and_fail(*args, **kwargs):
        pd.read_parquet(victim).assign(w=lambda d: d.w + 1).to_parquet(victim, index=False)
        os.utime(victim, ns=(1, 1))
        raise pa.ArrowInvalid("Parquet file size is 4 bytes, smaller than the minimum file footer")

    target = (summaries, "plan_partitions") if phase == "summary" else (tasks, "export_partition")
    monkeypatch.setattr(*target, rewrite_and_fail)
    with dask.config.set(scheduler="sync"), pytest.raises(ExportError, match=r"input .*in-002.parquet changed"):
        to_files(inp, str(tmp_path / "out"), "w", 300, progress=False)


def test_a_read_error_of_an_unchanged_input_is_not_masked(tmp_path, monkeypatch):
    import pyarrow as pa

    inp = write_inputs(tmp_path / "in", n_files=3)
    monkeypatch.setattr(tasks, "export_partition", lambda *a: (_ for _ in ()).throw(pa.ArrowInvalid("bad page")))
    with dask.config.set(scheduler="sync"), pytest.raises(pa.ArrowInvalid, match="bad page"):
        to_files(inp, str(tmp_path / "out"), "w", 300, progress=False)


# ------------------------------------------------------------------ 7. output inside the input


def test_an_output_folder_inside_the_input_folder_is_refused(tmp_path):
    inp = write_inputs(tmp_path / "in")
    with pytest.raises(ExportError, match="inside the input folder"):
        to_files(inp, os.path.join(inp, "out"), "w", 300, progress=False)
    assert not os.path.exists(os.path.join(inp, "out"))
    proc = cli("export", inp, os.path.join(inp, "out"), "-w", "w", "-l", "300", "-q")
    assert proc.returncode == 1 and "inside the input folder" in one_line(proc.stderr)


# ------------------------------------------------------------------ 8. tampered manifests


@pytest.mark.parametrize("change, fix_checksum, pattern", [
    (lambda m: m["state"].update(tot=0), False, "checksum does not match"),
    (lambda m: m["state"].update(tot=0), True, "state .* differs from its last batch"),
    (lambda m: m.update(rows=10**30), True, "rows"),
    (lambda m: m["state"].update(batches=10**15), True, "counts 1000000000000000 batches"),
])
def test_a_tampered_manifest_is_refused_and_nothing_is_written(tmp_path, change, fix_checksum, pattern):
    inp = write_inputs(tmp_path / "in", n_files=2)
    out = tmp_path / "out"
    to_files(inp, str(out), "w", 300, progress=False)
    m = manifest(out)
    change(m)
    (out / "_manifest.json").write_text(json.dumps(with_checksum(m) if fix_checksum else m))
    write_inputs(tmp_path / "in", n_files=3)  # a new input to append
    before = tree(out)
    with pytest.raises(ExportError, match=pattern):
        to_files(inp, str(out), "w", 300, progress=False, append=True)
    with pytest.raises(ExportError, match=pattern):
        folder_status(str(out))
    assert tree(out) == before


def test_a_failed_append_leaves_the_folder_as_it_was(tmp_path):
    inp = write_inputs(tmp_path / "in", n_files=2)
    out = tmp_path / "out"
    to_files(inp, str(out), "w", 300, progress=False)
    before = tree(out)
    pd.DataFrame({"w": [1, -1], "pos": [0, 1]}).to_parquet(os.path.join(inp, "in-009.parquet"))
    with pytest.raises(Exception, match="invalid value"):
        to_files(inp, str(out), "w", 300, progress=False, append=True)
    assert tree(out) == before


# ------------------------------------------------------------------ 9. content fingerprints


def test_a_consumed_input_rewritten_with_same_size_and_time_is_noticed(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    pd.DataFrame({"w": [15, 25, 35] * 20}).to_csv(inp / "a.csv", index=False)
    out = tmp_path / "out"
    to_files(str(inp), str(out), "w", 100, progress=False)
    st = os.stat(inp / "a.csv")
    (inp / "a.csv").write_text((inp / "a.csv").read_text().replace("25", "26"))
    os.utime(inp / "a.csv", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(inp / "a.csv").st_size == st.st_size
    pd.DataFrame({"w": [5]}).to_csv(inp / "b.csv", index=False)
    with pytest.raises(ExportError, match=r"a\.csv changed since it was exported"):
        to_files(str(inp), str(out), "w", 100, progress=False, append=True)


def test_verify_inputs_hashes_whole_files(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    pd.DataFrame({"w": np.arange(1, 60_001) % 97 + 1}).to_csv(inp / "a.csv", index=False)
    out = tmp_path / "out"
    to_files(str(inp), str(out), "w", 1000, progress=False, verify_inputs=True)
    entry = manifest(out)["inputs"][0]
    assert len(entry["sha256"]) == 64 and len(entry["fp"]) == 64
    text = (inp / "a.csv").read_text()
    middle = len(text) // 2
    middle = text.index("\n1", middle) + 1  # change a digit in the middle, far from both ends
    st = os.stat(inp / "a.csv")
    (inp / "a.csv").write_text(text[:middle] + "2" + text[middle + 1:])
    os.utime(inp / "a.csv", ns=(st.st_atime_ns, st.st_mtime_ns))
    pd.DataFrame({"w": [5]}).to_csv(inp / "b.csv", index=False)
    with pytest.raises(ExportError, match=r"a\.csv changed since it was exported"):
        to_files(str(inp), str(out), "w", 1000, progress=False, append=True, verify_inputs=True)


# ------------------------------------------------------------------ 10. reading the export back


def test_readers_read_exactly_the_exported_rows_in_batch_order(tmp_path):
    import pyarrow.dataset as ds

    pdf = pd.DataFrame({"w": [1.0, np.nan, 2.0, -1.0, 3.0, 4.0, 5.0] * 30, "p": range(210)})
    out = tmp_path / "out"
    res = to_files(dd.from_pandas(pdf, npartitions=3), str(out), "w", 7, invalid="skip", max_skips=None,
                   progress=False)
    assert (out / "_cumbatch" / "rejects.pqt").exists() and res.rejects == 60
    good = pdf[pdf.w.notna() & (pdf.w >= 0)]
    for back in (dd.read_parquet(str(out)).compute(), pd.read_parquet(out),
                 ds.dataset(str(out), format="parquet").to_table().to_pandas()):
        assert back["p"].tolist() == good["p"].tolist()
        assert back["batch"].is_monotonic_increasing and back["batch"].iloc[-1] == res.batches - 1
    csv = tmp_path / "csv"
    to_files(pdf, str(csv), "w", 7, format="csv", invalid="skip", max_skips=None, progress=False)
    assert (csv / "_cumbatch" / "open.pqt").exists()
    assert dd.read_csv(f"{csv}/part-*.csv").compute()["p"].tolist() == good["p"].tolist()
    assert ds.dataset(str(csv), format="csv").to_table().column("p").to_pylist() == good["p"].tolist()
    with pytest.raises(ValueError, match="No files satisfy"):  # no Parquet file to read as data by mistake
        dd.read_parquet(str(csv))


def relocate_v1(tmp_path, name):
    """Copy a folder written by the version 1 code (tests/data/v1-layout, made by
    make_v1_layout.py) and point its recorded inputs at copies with the recorded times."""
    out = tmp_path / name
    shutil.copytree(os.path.join(DATA, name), out)
    (tmp_path / "only_a").mkdir(exist_ok=True)
    for record in (out / "_manifest.json", out / "_cumbatch_work" / "run.json"):
        if record.exists():
            doc = json.loads(record.read_text())
            for entry in doc["inputs"]:
                base = os.path.basename(entry["path"])
                entry["path"] = str(tmp_path / "only_a" / base)
                shutil.copy(os.path.join(DATA, "in", base), entry["path"])
                os.utime(entry["path"], ns=(entry["mtime"], entry["mtime"]))
            record.write_text(json.dumps(doc))
    return out


def written_here(path) -> bool:
    """Whether the Parquet file at ``path`` was written by the pyarrow and pandas running now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    pandas_meta = json.loads((meta.metadata or {}).get(b"pandas", b"{}"))
    return meta.created_by == f"parquet-cpp-arrow version {pa.__version__}" and \
        pandas_meta.get("pandas_version") == pd.__version__


def same_tables(a, b) -> bool:
    """Whether two folders hold the same files (the manifest aside) with equal Parquet tables."""
    import pyarrow.parquet as pq

    ta, tb = tree(a), tree(b)
    names = sorted(set(ta) - {"_manifest.json"})
    assert names == sorted(set(tb) - {"_manifest.json"})
    tables = [n for n in names if n.endswith((".parquet", ".pqt"))]
    assert all(ta[n] == tb[n] for n in names if n not in tables)
    return bool(tables) and all(pq.read_table(os.path.join(a, n)).equals(pq.read_table(os.path.join(b, n)))
                                for n in tables)


def test_a_version_1_folder_is_migrated_and_appended(tmp_path):
    out = relocate_v1(tmp_path, "out-parquet")
    assert folder_status(str(out))["state"] == "complete"  # read as it is
    opts = dict(invalid="skip", max_skips=None, batches_per_file=3, progress=False)
    shutil.copy(os.path.join(DATA, "in", "b.parquet"), tmp_path / "only_a" / "b.parquet")
    res = to_files(str(tmp_path / "only_a"), str(out), "w", 200, append=True, **opts)
    assert res.appended
    fresh_in = tmp_path / "fresh_in"
    shutil.copytree(tmp_path / "only_a", fresh_in, copy_function=shutil.copy2)
    ref = tmp_path / "ref"
    to_files([str(fresh_in / f"a{i}.parquet") for i in (1, 2, 3)], str(ref), "w", 200, **opts)
    to_files(str(fresh_in), str(ref), "w", 200, append=True, **opts)
    assert not (out / "_rejects.parquet").exists() and (out / "_cumbatch" / "rejects.pqt").exists()
    if written_here(os.path.join(DATA, "out-parquet", "part-00000000.parquet")):
        assert {k: v for k, v in tree(out).items() if k != "_manifest.json"} == \
            {k: v for k, v in tree(ref).items() if k != "_manifest.json"}
        assert [b["sha256"] for b in manifest(out)["batches"]] == [b["sha256"] for b in manifest(ref)["batches"]]
    else:  # an older pyarrow/pandas writes other bytes for the same tables (the lower-bounds run)
        assert same_tables(out, ref)
    assert folder_status(str(out), verify=True)["verified"]


def test_an_interrupted_version_1_export_is_completed(tmp_path):
    out = relocate_v1(tmp_path, "out-csv-interrupted")
    assert folder_status(str(out))["state"] == "interrupted export"
    opts = dict(invalid="skip", max_skips=None, batches_per_file=3, format="csv", progress=False)
    res = to_files(str(tmp_path / "only_a"), str(out), "w", 200, **opts)
    assert res.resumed and not (out / "_cumbatch_work").exists()
    ref = tmp_path / "ref"
    to_files(str(tmp_path / "only_a"), str(ref), "w", 200, **opts)
    assert tree(out) == tree(ref)


# ------------------------------------------------------------------ 11. clean-up, strays, full disks, status


def test_a_kill_during_clean_up_never_blocks_a_rerun(tmp_path, monkeypatch):
    inp = write_inputs(tmp_path / "in")
    ref = tmp_path / "ref"
    to_files(inp, str(ref), "w", 300, progress=False)
    out = tmp_path / "out"

    def killed(folder):
        raise KeyboardInterrupt("killed during clean-up (simulated)")

    monkeypatch.setattr(job, "retire_work", killed)
    with pytest.raises(KeyboardInterrupt):
        to_files(inp, str(out), "w", 300, progress=False)
    monkeypatch.undo()
    assert to_files(inp, str(out), "w", 300, progress=False).batches == manifest(ref)["n_batches"]
    assert tree(out) == tree(ref)
    # the states a kill further into the clean-up leaves: a work folder without its record, a retired one
    (out / "_cumbatch" / "work" / "parts").mkdir(parents=True)
    (out / "_cumbatch" / "work" / "parts" / "p00000000.json").write_text("{}")
    (out / "_cumbatch" / "retired-0123" / "frag").mkdir(parents=True)
    assert to_files(inp, str(out), "w", 300, progress=False).up_to_date
    assert tree(out) == tree(ref)


def test_a_stray_data_file_fails_verify_and_is_reported(tmp_path):
    inp = write_inputs(tmp_path / "in", n_files=2)
    out = tmp_path / "out"
    to_files(inp, str(out), "w", 300, progress=False)
    shutil.copy(out / "part-00000000.parquet", out / "part-99999999.parquet")
    assert folder_status(str(out))["stray"] == ["part-99999999.parquet"]
    with pytest.raises(ExportError, match="part-99999999.parquet"):
        folder_status(str(out), verify=True)
    proc = cli("status", out)
    assert proc.returncode == 0 and "part-99999999.parquet" in proc.stdout
    proc = cli("status", out, "--verify")
    assert proc.returncode == 3 and "part-99999999.parquet" in one_line(proc.stderr)


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    real = folder.write_all

    def full(fd, data):
        if "part-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(folder, "write_all", full)
    with pytest.raises(ExportError, match=r"cannot write .*out/part-[0-9]{8}\.parquet: No space left on device"):
        to_files(dd.from_pandas(pd.DataFrame({"w": [1, 2] * 20}), npartitions=1), str(tmp_path / "out"), "w", 5,
                 progress=False)


def test_file_too_large_names_the_file(tmp_path):
    inp = write_inputs(tmp_path / "in", n_files=2, rows=4000, text=True)
    out = tmp_path / "out"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    proc = cli("export", inp, out, "-w", "w", "-l", "10000000", "-q", preexec_fn=limit_file_size,
               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 1
    assert "File too large" in one_line(proc.stderr) and f"cannot write {out}/" in proc.stderr


def test_status_exit_codes(tmp_path):
    inp = write_inputs(tmp_path / "in", n_files=2)
    assert cli("status", tmp_path / "missing").returncode == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert cli("status", tmp_path / "other").returncode == 4
    out = tmp_path / "out"
    to_files(inp, str(out), "w", 300, progress=False)
    assert cli("status", out).returncode == 0
    assert cli("status", out, "--verify", "--json").returncode == 0
    part = out / "part-00000000.parquet"
    data = bytearray(part.read_bytes())
    data[10] ^= 1
    part.write_bytes(bytes(data))  # same size, different content: only --verify sees it
    assert cli("status", out).returncode == 0
    assert cli("status", out, "--verify").returncode == 3
    m = manifest(out)
    m["rows"] += 1
    (out / "_manifest.json").write_text(json.dumps(m))
    assert cli("status", out).returncode == 3
    interrupted = tmp_path / "interrupted"
    interrupt(inp, str(interrupted), calls=1)
    assert cli("status", interrupted).returncode == 1


# ------------------------------------------------------------------ progress


@pytest.fixture
def notebook(monkeypatch):
    """A fake Jupyter environment: IPython loaded, with a kernel attached."""
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


@pytest.fixture
def bars(monkeypatch):
    """Record every local progress bar shown (shown at once: minimum 0)."""
    import dask.diagnostics

    shown = []

    class Recording(dask.diagnostics.ProgressBar):
        def __init__(self, *args, **kw):
            kw["minimum"] = 0
            super().__init__(*args, **kw)

        def _start(self, dsk):
            shown.append(self)
            return super()._start(dsk)

    monkeypatch.setattr(dask.diagnostics, "ProgressBar", Recording)
    return shown


def test_progress_shows_in_a_notebook_by_default(tmp_path, notebook, bars, capsys):
    to_files(pd.DataFrame({"w": [1, 2, 3] * 10}), str(tmp_path / "a"), "w", 5)
    assert bars and "100%" in capsys.readouterr().err
    shown = len(bars)
    to_files(pd.DataFrame({"w": [1, 2, 3] * 10}), str(tmp_path / "b"), "w", 5, progress=False)
    assert len(bars) == shown and "100%" not in capsys.readouterr().err  # False: never


def test_progress_none_outside_a_terminal_or_notebook_is_silent_and_true_forces_it(tmp_path, bars, capsys):
    to_files(pd.DataFrame({"w": [1, 2, 3] * 10}), str(tmp_path / "a"), "w", 5)
    assert not bars
    to_files(pd.DataFrame({"w": [1, 2, 3] * 10}), str(tmp_path / "b"), "w", 5, progress=True)
    assert bars and "100%" in capsys.readouterr().err


def test_progress_uses_the_distributed_bar_with_a_client(tmp_path, notebook, monkeypatch):
    import distributed

    calls = []
    monkeypatch.setattr(distributed, "progress", lambda *a, **kw: calls.append(kw))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"):
        to_files(dd.from_pandas(pd.DataFrame({"w": [1, 2, 3] * 10}), npartitions=3), str(tmp_path / "a"), "w", 5)
    assert calls  # Dask's distributed progress (the widget when ipywidgets is installed)


def test_status_builds_the_manifest_file_table_once(tmp_path, monkeypatch):
    """``status`` looked each folder entry up in a file table built anew for that entry: time
    quadratic in the files (an export of 98,520 files had not answered after 16 minutes)."""
    import dask_cumbatch.export.status as status_module

    out = str(tmp_path / "out")
    to_files(pd.DataFrame({"w": np.ones(50, dtype=np.int64)}), out, "w", 1, progress=False)
    built = []
    real = status_module.manifest_files
    monkeypatch.setattr(status_module, "manifest_files", lambda *a, **k: built.append(a) or real(*a, **k))
    status = folder_status(out)
    assert status["complete"] and status["stray"] == [] and status["batches"] == 50
    assert len(built) == 1


def test_a_failed_threaded_export_returns_only_after_its_writers_stopped(tmp_path):
    """When one task fails, the threads writing other partitions must stop before ``to_files``
    raises: a writer left running would write into the folder the next run (a resume in the same
    notebook) is tidying or writing. Found by the resume recipe in docs/recipes.md."""
    src = write_inputs(tmp_path / "in", n_files=4, rows=300)
    out = str(tmp_path / "out")

    def slow_or_failing(part, partition_info=None):
        if folder_status(out)["state"] == "empty":  # the plan: no writer yet
            return part
        if partition_info["number"] == 0:
            raise RuntimeError("worker lost")
        time.sleep(1.0)  # still writing when partition 0 has failed
        return part

    ddf = dd.read_parquet(src)
    flaky = ddf.map_partitions(slow_or_failing, meta=ddf._meta)
    with dask.config.set(num_workers=4), pytest.raises(RuntimeError, match="worker lost"):
        to_files(flaky, out, "w", 500, progress=False, scheduler="threads")
    before = tree(out)
    time.sleep(2.0)
    assert tree(out) == before, "a writer of the failed export went on after to_files raised"
