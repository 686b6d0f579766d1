"""Exports to an object store keep the local folder's promises, against a real S3 API
server on localhost (moto's ThreadedMotoServer, see tests/s3_server.py): a commit is one PUT under
the final name, a kill -9 leaves only complete objects and a resume finishes byte-identically,
appends equal one export, one writer at a time by a lock object with a lease, changed input
objects (ETag) refused, and bad input gets one line with nothing written."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dask_cumbatch.export import ExportError, folder_status, list_inputs, to_files
from dask_cumbatch.export.folder import LOCK, Folder, StoreWarning, WriterLock
from reference import reference_ids
from s3_server import bucket, free_port, s3  # noqa: F401  (fixtures)

LIMIT = 300


def write_inputs(folder, n_files, rows, first=0, seed=0):
    """Parquet inputs ``in-000.parquet``...: int weights ``w``, a running ``pos``, a string."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed + first)
    for i in range(first, first + n_files):
        pos = i * rows
        pd.DataFrame({
            "w": np.clip(rng.lognormal(3.0, 1.0, rows).astype("int64"), 1, None),
            "pos": np.arange(pos, pos + rows, dtype="int64"),
            "txt": [f"doc {j}" for j in range(pos, pos + rows)],
        }).to_parquet(os.path.join(folder, f"in-{i:03d}.parquet"), index=False)


def upload(s3, bucket, local_folder, prefix):
    for name in sorted(os.listdir(local_folder)):
        with open(os.path.join(local_folder, name), "rb") as f:
            s3.client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=f.read())


def cli(*args, env=None, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "dask_cumbatch", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def export_cmd(inp, out, *extra):
    return ["export", inp, out, "-w", "w", "-l", LIMIT, "--quiet", *extra]


def one_line_error(code, err, pattern, exit_code=1):
    import re

    assert code == exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cumbatch: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def data(s3, bucket, prefix):
    """The objects under ``prefix`` outside ``_cumbatch/``."""
    return {k: v for k, v in s3.objects(bucket, prefix).items() if not k.startswith("_cumbatch/")}


def export_threaded(*args, **kwargs):
    with dask.config.set(scheduler="threads"):
        return to_files(*args, progress=False, **kwargs)


# ------------------------------------------------------------------------------ export, read back


def test_cli_export_to_s3_reads_back_exactly(s3, bucket, tmp_path):
    inp = tmp_path / "in"
    write_inputs(inp, n_files=3, rows=200)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}  # the flag gives the endpoint
    url = f"s3://{bucket}/out"
    code, out, err = cli(*export_cmd(inp, url, "--storage-option", f"endpoint_url={s3.endpoint}"), env=env)
    assert code == 0 and err == "", err
    # the same objects, byte for byte, as a local export of the same input (the lock aside)
    export_threaded(str(inp), str(tmp_path / "local"), "w", LIMIT)
    local = {os.path.relpath(os.path.join(r, f), tmp_path / "local"): open(os.path.join(r, f), "rb").read()
             for r, _, files in os.walk(tmp_path / "local") for f in files}
    local = {k: v for k, v in local.items() if not k.startswith("_cumbatch")}
    assert s3.objects(bucket, "out/") == local
    back = dd.read_parquet(url, storage_options={"endpoint_url": s3.endpoint}).compute()
    source = pd.read_parquet(inp)
    assert back["pos"].tolist() == source["pos"].tolist()
    assert back["batch"].tolist() == reference_ids(source["w"].tolist(), LIMIT)
    code, out, err = cli("status", url, "--verify")
    assert code == 0 and "complete (checksums verified)" in out, err


def test_python_export_from_s3_inputs_status_verify(s3, bucket, tmp_path):
    write_inputs(tmp_path / "in", n_files=2, rows=150)
    upload(s3, bucket, tmp_path / "in", "in")
    options = {"endpoint_url": s3.endpoint}
    res = export_threaded(f"s3://{bucket}/in", f"s3://{bucket}/out", "w", LIMIT, storage_options=options)
    assert res.files_written == res.files > 1
    st = folder_status(f"s3://{bucket}/out", options, verify=True)
    assert st["state"] == "complete" and st["verified"] and st["rows"] == 300
    assert all(i["etag"] for i in st["inputs"])  # inputs fingerprinted by ETag
    # tampering with one object: same size, other bytes
    name = json.loads(s3.objects(bucket, "out/")["_manifest.json"])["batches"][0]["file"]
    body = bytearray(s3.objects(bucket, f"out/{name}")[""])
    body[-20] ^= 1
    s3.client.put_object(Bucket=bucket, Key=f"out/{name}", Body=bytes(body))
    code, _, err = cli("status", f"s3://{bucket}/out", "--verify")
    one_line_error(code, err, "does not match its checksum", exit_code=3)
    assert folder_status(f"s3://{bucket}/out")["state"] == "complete"
    assert not s3.keys(bucket, "out/_cumbatch/")  # no lock left, no work folder


# ------------------------------------------------------------------------------ kill -9, resume, append


def kill_at(s3, bucket, cmd, env, target):
    """Run ``cmd``, kill -9 it once ``target`` data objects are under ``out/``; returns its pid
    if it was killed (None if it finished first), after its lock's lease has ended."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if sum(k.startswith("part-") for k in s3.keys(bucket, "out/")) >= target:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    if proc.wait() != -signal.SIGKILL:
        return None
    lock = json.loads(s3.objects(bucket, f"out/{LOCK}")[""])  # the dead holder's lock, until its lease ends
    assert lock["pid"] == proc.pid
    time.sleep(max(0.0, lock["expires"] - time.time()) + 0.1)
    return proc.pid


def test_kill9_then_resume_gives_the_objects_of_a_clean_export(s3, bucket, tmp_path):
    inp = tmp_path / "in"
    write_inputs(inp, n_files=12, rows=120)
    export_threaded(str(inp), f"s3://{bucket}/ref", "w", LIMIT)
    ref = s3.objects(bucket, "ref/")
    total = sum(k.startswith("part-") for k in ref)
    assert total > 100
    env = dict(os.environ, CUMBATCH_LOCK_LEASE="3")  # renewed every second
    cmd = [sys.executable, "-m", "dask_cumbatch", *map(str, export_cmd(inp, f"s3://{bucket}/out"))]
    rnd, killed = random.Random(3), 0
    for target in sorted(int(rnd.uniform(0.1, 0.8) * total) for _ in range(2)):
        if kill_at(s3, bucket, cmd, env, target) is None:
            continue
        killed += 1
        # what a killed run leaves: complete objects under their final names, each the very object
        # a clean export writes there; the manifest and _SUCCESS are not written yet
        assert all(k.startswith("part-") and ref[k] == v for k, v in data(s3, bucket, "out/").items())
        assert folder_status(f"s3://{bucket}/out")["state"] == "interrupted export"
    assert killed >= 1
    code, _, err = cli(*export_cmd(inp, f"s3://{bucket}/out"), env=env)  # takes the expired lock over
    assert code == 0 and err == "", err
    assert s3.objects(bucket, "out/") == ref


def test_append_killed_then_resumed_equals_one_export(s3, bucket, tmp_path):
    inp = tmp_path / "in"
    write_inputs(inp, n_files=3, rows=120)
    export_threaded(str(inp), f"s3://{bucket}/out", "w", LIMIT, append=True)
    before = data(s3, bucket, "out/")
    write_inputs(inp, n_files=8, rows=120, first=3)
    export_threaded(str(inp), f"s3://{bucket}/ref", "w", LIMIT)
    ref = s3.objects(bucket, "ref/")
    env = dict(os.environ, CUMBATCH_LOCK_LEASE="3")
    cmd = [sys.executable, "-m", "dask_cumbatch", *map(str, export_cmd(inp, f"s3://{bucket}/out", "--append"))]
    n_before, n_ref = sum(k.startswith("part-") for k in before), sum(k.startswith("part-") for k in ref)
    assert kill_at(s3, bucket, cmd, env, random.Random(5).randint(n_before + 5, (n_before + n_ref) // 2))
    # the old manifest still certifies the old files; each data object is the old or the new one
    assert folder_status(f"s3://{bucket}/out")["state"] == "interrupted append"
    now = data(s3, bucket, "out/")
    assert now["_manifest.json"] == before["_manifest.json"]
    assert all(v in (before.get(k), ref.get(k)) for k, v in now.items() if k.startswith("part-"))
    code, _, err = cli(*export_cmd(inp, f"s3://{bucket}/out", "--append"), env=env)
    assert code == 0 and err == "", err
    assert s3.objects(bucket, "out/") == ref


def test_changed_input_object_is_refused(s3, bucket, tmp_path):
    # the same size and Parquet footer, written again at once: only the ETag tells them apart
    def put(values):
        table = pd.DataFrame({"w": np.array(values, dtype="int64")})
        path = tmp_path / "a.parquet"
        table.to_parquet(path, index=False, compression=None, use_dictionary=False, write_statistics=False)
        s3.client.put_object(Bucket=bucket, Key="in/a.parquet", Body=path.read_bytes())

    put([5, 1, 7, 3])
    before = list_inputs(f"s3://{bucket}/in")[1][0]
    export_threaded(f"s3://{bucket}/in", f"s3://{bucket}/out", "w", 8)
    objects = s3.objects(bucket, "out/")
    put([7, 3, 5, 1])
    after = list_inputs(f"s3://{bucket}/in")[1][0]
    assert (after["size"], after["fp"]) == (before["size"], before["fp"]) and after["etag"] != before["etag"]
    code, _, err = cli("export", f"s3://{bucket}/in", f"s3://{bucket}/out", "-w", "w", "-l", "8", "--append")
    one_line_error(code, err, r"in/a\.parquet changed since it was exported")
    assert s3.objects(bucket, "out/") == objects


# ------------------------------------------------------------------------------ one writer at a time


def test_second_writer_refused_while_the_lease_is_renewed(s3, bucket, tmp_path, monkeypatch):
    write_inputs(tmp_path / "in", n_files=1, rows=50)
    url = f"s3://{bucket}/out"
    monkeypatch.setenv("CUMBATCH_LOCK_LEASE", "1")
    holder = WriterLock(Folder(url)).acquire()
    try:
        time.sleep(2.5)  # over twice the lease: the holder's renewals keep it
        with pytest.raises(ExportError, match=rf"{url} is being written by another export \(pid {os.getpid()} "):
            export_threaded(str(tmp_path / "in"), url, "w", LIMIT)
        code, _, err = cli(*export_cmd(tmp_path / "in", url))
        one_line_error(code, err, rf"is being written by another export \(pid {os.getpid()} on .* lease until")
    finally:
        holder.release()
    assert s3.keys(bucket, "out/") == []  # the refused runs wrote nothing, the release deleted the lock
    assert export_threaded(str(tmp_path / "in"), url, "w", LIMIT).files_written > 0
    assert "_cumbatch/lock" not in s3.keys(bucket, "out/")


def test_expired_lock_of_a_dead_holder_is_taken_over(s3, bucket, tmp_path):
    write_inputs(tmp_path / "in", n_files=1, rows=50)
    dead = {"pid": 1, "host": "gone", "started": "2026-01-01T00:00:00+00:00", "token": "x", "lease_s": 60,
            "expires": time.time() - 1}
    s3.client.put_object(Bucket=bucket, Key=f"out/{LOCK}", Body=json.dumps(dead).encode())
    res = export_threaded(str(tmp_path / "in"), f"s3://{bucket}/out", "w", LIMIT)
    assert res.files_written > 0 and "_cumbatch/lock" not in s3.keys(bucket, "out/")
    # a live one is not
    s3.client.put_object(Bucket=bucket, Key=f"out/{LOCK}", Body=json.dumps(dict(dead, expires=time.time() + 60)))
    with pytest.raises(ExportError, match=r"being written by another export \(pid 1 on gone"):
        export_threaded(str(tmp_path / "in"), f"s3://{bucket}/out", "w", LIMIT, overwrite=True)


def test_expired_lock_taken_over_without_conditional_put_and_a_bad_lease(monkeypatch):
    import fsspec

    fs, url = fsspec.filesystem("memory"), "memory://cumbatch-lease/out"
    try:  # memory://: no If-Match, so the takeover deletes the expired lock and creates its own
        fs.pipe_file(f"/cumbatch-lease/out/{LOCK}", json.dumps({"pid": 1, "host": "gone", "token": "x",
                                                                 "expires": time.time() - 1}).encode())
        assert export_threaded(pd.DataFrame({"w": [3, 3, 3]}), url, "w", 6).files == 2
        assert not fs.exists(f"/cumbatch-lease/out/{LOCK}")
        monkeypatch.setenv("CUMBATCH_LOCK_LEASE", "soon")
        with pytest.raises(ExportError, match="CUMBATCH_LOCK_LEASE='soon' is not a number of seconds > 0"):
            export_threaded(pd.DataFrame({"w": [3, 3, 3]}), url, "w", 6)
    finally:
        fs.rm("/cumbatch-lease", recursive=True)


def test_a_writer_whose_lock_was_replaced_certifies_nothing(s3, bucket, monkeypatch):
    monkeypatch.setenv("CUMBATCH_LOCK_LEASE", "2")
    holder = WriterLock(Folder(f"s3://{bucket}/out")).acquire()
    try:
        holder.remote.check_held()  # its own, with time left
        other = {"pid": 2, "host": "h", "started": "s", "token": "other", "expires": time.time() + 60}
        s3.client.put_object(Bucket=bucket, Key=f"out/{LOCK}", Body=json.dumps(other).encode())
        time.sleep(1.5)  # the renewal (every lease / 3), conditional on the holder's ETag, is refused
        assert holder.remote.lost
        with pytest.raises(ExportError, match="this export lost the lock of .*nothing was certified"):
            holder.remote.check_held()
    finally:
        holder.release()
    assert json.loads(s3.objects(bucket, f"out/{LOCK}")[""])["token"] == "other"  # not deleted by the release


def test_store_without_conditional_create_warns_and_exports(tmp_path, capsys):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from dask_cumbatch.cli import main

    class PlainStore(MemoryFileSystem):  # a store that offers no conditional create
        protocol = "plainstore"
        store, pseudo_dirs = {}, [""]

    fsspec.register_implementation("plainstore", PlainStore, clobber=True)
    try:
        with pytest.warns(StoreWarning, match="offers no conditional create, so this export takes no lock"):
            res = export_threaded(pd.DataFrame({"w": [3, 3, 3]}), "plainstore://b/out", "w", 6)
        assert res.files == 2 and folder_status("plainstore://b/out", verify=True)["verified"]
        pd.DataFrame({"w": [3, 3, 3]}).to_parquet(tmp_path / "in.parquet")
        assert main(["export", str(tmp_path / "in.parquet"), "plainstore://b/cli", "-w", "w", "-l", "6", "-q"]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cumbatch: warning: plainstore://b/cli: the plainstore:// store "
                                                   "offers no conditional create, so this export takes no lock")
    finally:
        PlainStore.store.clear()


# ------------------------------------------------------------------------------ bad input: one line, nothing written


def test_missing_bucket(s3, tmp_path):
    write_inputs(tmp_path / "in", n_files=1, rows=20)
    code, _, err = cli(*export_cmd(tmp_path / "in", "s3://no-such-bucket-cb/out"))
    one_line_error(code, err, r"s3://no-such-bucket-cb/out: The specified bucket does not exist")
    assert "no-such-bucket-cb" not in [b["Name"] for b in s3.client.list_buckets()["Buckets"]]


def test_refused_credentials(s3, bucket, tmp_path):
    write_inputs(tmp_path / "in", n_files=1, rows=20)
    s3.set_auth(True)
    try:
        code, _, err = cli(*export_cmd(tmp_path / "in", f"s3://{bucket}/out"))
    finally:
        s3.set_auth(False)
    one_line_error(code, err, r"cannot write to s3://.*/out: .*(Access Key|credentials|denied)")
    assert s3.keys(bucket) == []


def test_unreachable_endpoint_fails_fast(s3, bucket, tmp_path):
    write_inputs(tmp_path / "in", n_files=1, rows=20)
    closed = f"http://127.0.0.1:{free_port()}"
    fast = ["--storage-option", f"endpoint_url={closed}",
            "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2}']
    t0 = time.perf_counter()
    code, _, err = cli(*export_cmd(tmp_path / "in", f"s3://{bucket}/out", *fast))
    assert time.perf_counter() - t0 < 60
    one_line_error(code, err, r"Could not connect to the endpoint URL")
    options = {"endpoint_url": closed, "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    with pytest.raises(Exception, match="Could not connect to the endpoint URL"):  # an unreachable input
        to_files(f"s3://{bucket}/in", str(tmp_path / "out"), "w", LIMIT, storage_options=options)
    assert not (tmp_path / "out").exists() and s3.keys(bucket) == []


def test_malformed_storage_option_is_a_usage_error(tmp_path, capsys):
    from dask_cumbatch.cli import main

    code = main(["export", str(tmp_path), str(tmp_path / "out"), "-w", "w", "-l", "5", "--storage-option", "anon"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "expected KEY=VALUE, got 'anon'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_refused_export_leaves_a_non_export_folder_as_it_was(s3, bucket, tmp_path, where):
    write_inputs(tmp_path / "in", n_files=1, rows=20)
    if where == "local":
        out = tmp_path / "out"
        (out / "sub").mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
        (out / "sub" / "data.csv").write_text("a\n1\n")

        def snapshot():  # every file with its bytes, and every folder
            entries = {}
            for root, dirs, files in os.walk(out):
                entries.update({os.path.relpath(os.path.join(root, d), out): None for d in dirs})
                entries.update({os.path.relpath(os.path.join(root, f), out): open(os.path.join(root, f), "rb").read()
                                for f in files})
            return entries
    else:
        out = f"s3://{bucket}/out"
        s3.client.put_object(Bucket=bucket, Key="out/notes.txt", Body=b"mine")
        s3.client.put_object(Bucket=bucket, Key="out/sub/data.csv", Body=b"a\n1\n")

        def snapshot():
            return s3.objects(bucket, "out/")
    before = snapshot()
    code, _, err = cli(*export_cmd(tmp_path / "in", out))
    one_line_error(code, err, r"is not empty and holds no finished cumbatch export")
    with pytest.raises(ExportError, match="is not empty"):
        export_threaded(str(tmp_path / "in"), str(out), "w", LIMIT)
    assert snapshot() == before
