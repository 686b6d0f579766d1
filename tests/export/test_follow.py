"""A followed export: ``cumbatch export --follow`` and
``dask_cumbatch.export.follow`` export each input file as it arrives; whenever the follower stops
(idle, a signal, kill -9 and a restart) the folder's data files are byte-identical to one export
of the same inputs; bad input stops it with one line and nothing lost."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from dask_cumbatch.export import ExportError, folder_status, follow, to_files
from s3_server import bucket, s3  # noqa: F401  (fixtures)

LIMIT = 700


def write_file(folder, i, rows=120, seed=None, name=None):
    """Input file number ``i``, written under a hidden name and renamed in (as a producer should)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(i if seed is None else seed)
    df = pd.DataFrame({
        "w": rng.integers(1, 90, rows),
        "k": rng.integers(0, 3, rows),
        "pos": np.arange(i * rows, (i + 1) * rows),
    })
    final = os.path.join(folder, name or f"in-{i:04d}.parquet")
    tmp = os.path.join(folder, f".{os.path.basename(final)}.writing")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return final


def data_files(folder) -> dict:
    """{name: bytes} of the files a reader takes as data (everything but ``_``/``.`` names)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith(("_", ".")):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def one_export(inp, out, **options):
    to_files(str(inp), str(out), "w", options.pop("limit", LIMIT), progress=False, **options)
    return data_files(out)


def cli(*args):
    return [sys.executable, "-m", "dask_cumbatch", "export", *map(str, args)]


def feed(folder, first, count, every):
    """A producer thread: ``count`` files from number ``first``, one each ``every`` seconds."""
    def run():
        for i in range(first, first + count):
            time.sleep(every)
            write_file(folder, i)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------------------ follow()

@pytest.mark.parametrize("options", [
    {},
    {"batches_per_file": 3},
    {"format": "csv", "by": "k"},
    {"max_rows": 7, "mode": "fill"},
    {"cost": "padded", "multiple": 2},
])
def test_files_arriving_while_following_equal_one_export(tmp_path, options):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    producer = feed(inp, 1, 4, 0.3)
    result = follow(str(inp), str(out), "w", LIMIT, poll=0.05, idle_exit=1.5, **options)
    producer.join()
    assert result.stopped_by == "idle"
    assert result.new_rows == 5 * 120 == result.rows
    assert result.appends >= 2  # the files came in more than one append
    assert folder_status(str(out))["state"] == "complete"
    assert data_files(out) == one_export(inp, tmp_path / "once", **options)


def test_temporary_and_hidden_names_are_not_inputs(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    for name in (".in-0001.parquet", "_in-0002.parquet", "in-0003.parquet.tmp", "in-0004.parquet.part"):
        write_file(inp, 9, name=name)
    result = follow(str(inp), str(out), "w", LIMIT, poll=0.05, idle_exit=0.2)
    assert result.rows == 120
    assert [os.path.basename(i["path"]) for i in folder_status(str(out))["inputs"]] == ["in-0000.parquet"]


def test_a_glob_input_ignores_hidden_names_too(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    write_file(inp, 1, name=".in-0001.parquet")
    assert follow(str(inp / "*.parquet"), str(out), "w", LIMIT, poll=0.05, idle_exit=0.2).rows == 120


def test_an_empty_input_folder_is_waited_on(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    os.makedirs(inp)
    producer = feed(inp, 0, 2, 0.4)
    result = follow(str(inp), str(out), "w", LIMIT, poll=0.05, idle_exit=1.2)
    producer.join()
    assert result.rows == 240
    assert data_files(out) == one_export(inp, tmp_path / "once")


def test_the_stop_event_ends_it_and_the_record_says_so(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    result = follow(str(inp), str(out), "w", LIMIT, poll=0.05, stop=stop)
    assert result.stopped_by == "stop" and time.monotonic() - t0 < 3
    followed = folder_status(str(out))["follow"]
    assert followed["stopped_by"] == "stop" and followed["alive"] is False and followed["appends"] == 1


def test_a_second_follower_of_the_folder_is_refused(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    stop = threading.Event()
    first = threading.Thread(target=follow, args=(str(inp), str(out), "w", LIMIT),
                             kwargs={"poll": 0.05, "stop": stop})
    first.start()
    try:
        deadline = time.monotonic() + 10
        while folder_status(str(out))["state"] != "complete" and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ExportError, match="is being written by another export"):
            follow(str(inp), str(out), "w", LIMIT, poll=0.05, idle_exit=0)
    finally:
        stop.set()
        first.join()


@pytest.mark.parametrize("keyword", ["overwrite", "append", "progress"])
def test_follow_refuses_the_arguments_it_sets_itself(tmp_path, keyword):
    with pytest.raises(TypeError, match=f"follow does not take '{keyword}'"):
        follow(str(tmp_path), str(tmp_path / "out"), "w", LIMIT, **{keyword: True})


def test_follow_needs_paths_and_sane_seconds(tmp_path):
    with pytest.raises(TypeError, match="needs input path"):
        follow(pd.DataFrame({"w": [1]}), str(tmp_path / "out"), "w", LIMIT)
    with pytest.raises(ValueError, match="poll must be"):
        follow(str(tmp_path), str(tmp_path / "out"), "w", LIMIT, poll=0)
    with pytest.raises(ValueError, match="idle_exit must be"):
        follow(str(tmp_path), str(tmp_path / "out"), "w", LIMIT, idle_exit=-1)


# ------------------------------------------------------------------------------ bad input

def run_follow(inp, out, *extra, timeout=60):
    return subprocess.run(cli(inp, out, "-w", "w", "-l", LIMIT, "--follow", "--poll", "0.05", "--idle-exit", "1",
                              *extra), capture_output=True, text=True, timeout=timeout)


def rewrite_file_1(inp):
    write_file(inp, 1, seed=99)  # rewritten in place: other rows


def add_an_earlier_file(inp):
    write_file(inp, 0)  # sorts before the consumed in-0001 and in-0002


def remove_file_1(inp):
    os.remove(inp / "in-0001.parquet")


@pytest.mark.parametrize("change", [rewrite_file_1, add_an_earlier_file, remove_file_1])
def test_a_bad_change_to_the_input_stops_it_with_one_line_naming_the_file(tmp_path, change):
    """A consumed file that changes or disappears, or a new file that sorts before the consumed
    ones: exit 1, one line naming the file, nothing written."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 1)
    write_file(inp, 2)
    assert run_follow(inp, out).returncode == 0
    before = data_files(out)
    change(inp)
    proc = run_follow(inp, out)
    named = "in-0000.parquet" if change is add_an_earlier_file else "in-0001.parquet"
    assert proc.returncode == 1 and named in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert data_files(out) == before


def test_an_unreadable_file_stops_it_and_a_restart_after_the_fix_continues(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    assert run_follow(inp, out).returncode == 0
    before = data_files(out)
    (inp / "in-0001.parquet").write_bytes(b"not parquet at all")
    proc = run_follow(inp, out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert data_files(out) == before
    write_file(inp, 1)  # fixed
    assert run_follow(inp, out).returncode == 0
    assert data_files(out) == one_export(inp, tmp_path / "once")


def test_a_folder_with_another_exports_settings_is_refused(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    to_files(str(inp), str(out), "w", 300, progress=False)
    before = data_files(out)
    proc = run_follow(inp, out)
    assert proc.returncode == 1 and "limit" in proc.stderr and proc.stderr.count("\n") == 1
    assert data_files(out) == before


def test_an_output_inside_the_input_is_refused(tmp_path):
    inp = tmp_path / "in"
    write_file(inp, 0)
    proc = run_follow(inp, inp / "out")
    assert proc.returncode == 1 and "inside" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (inp / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--follow", "--overwrite"], "cannot take --overwrite"),
    (["--idle-exit", "3"], "--idle-exit needs --follow"),
    (["--poll", "0.5"], "--poll needs --follow"),
    (["--follow", "--poll", "0"], "seconds must be"),
    (["--follow", "--idle-exit", "soon"], "is not a number of seconds"),
])
def test_usage_errors_exit_2(tmp_path, extra, message):
    proc = subprocess.run(cli(tmp_path, tmp_path / "out", "-w", "w", "-l", "5", *extra),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr


# ------------------------------------------------------------------------------ signals, status, kill -9

def start_follower(inp, out, *extra):
    return subprocess.Popen(cli(inp, out, "-w", "w", "-l", LIMIT, "--follow", "--poll", "0.05", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def rows_in(out) -> int:
    try:
        return folder_status(str(out)).get("rows", 0) if os.path.exists(os.path.join(out, "_SUCCESS")) else 0
    except ExportError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly_at_once(tmp_path, sig):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    proc = start_follower(inp, out)
    wait_for(lambda: rows_in(out) == 120 and "follow" in folder_status(str(out)))  # the record follows the append
    st = folder_status(str(out))
    assert st["follow"]["alive"] is True and st["follow"]["pid"] == proc.pid
    status = subprocess.run([sys.executable, "-m", "dask_cumbatch", "status", str(out)], capture_output=True,
                            text=True, timeout=60)
    assert f"followed  by pid {proc.pid}" in status.stdout
    t0 = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and stderr == "", stderr
    assert time.monotonic() - t0 < 5
    assert "stopped after a signal: 1 append(s) added 120 rows" in stdout
    assert folder_status(str(out))["state"] == "complete"
    assert folder_status(str(out))["follow"]["stopped_by"] == "stop"


def test_status_says_a_killed_follower_is_gone(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_file(inp, 0)
    proc = start_follower(inp, out)
    wait_for(lambda: rows_in(out) == 120 and "follow" in folder_status(str(out)))
    proc.kill()
    proc.wait()
    status = subprocess.run([sys.executable, "-m", "dask_cumbatch", "status", str(out)], capture_output=True,
                            text=True, timeout=60)
    assert "which is gone (killed?)" in status.stdout


@pytest.mark.slow
def test_kill9_at_random_moments_then_restart_loses_and_duplicates_nothing(tmp_path):
    """A producer adds files while the follower is killed with SIGKILL at random moments and
    started again; at the end the data files equal one export of all the inputs."""
    inp, out = tmp_path / "in", tmp_path / "out"
    rnd = random.Random(28)
    write_file(inp, 0)
    producer = feed(inp, 1, 24, 0.15)
    states = []
    work = out / "_cumbatch" / "work"
    files = 25

    def interrupted():
        return any(state.startswith("interrupted") for state in states)

    # on a loaded machine the producer may finish before a kill lands inside an append: then
    # a few more files, each followed by a kill as its append starts, until one does
    while producer.is_alive() or (not interrupted() and files < 33):
        if not producer.is_alive():
            write_file(inp, files)
            files += 1
        proc = start_follower(inp, out)
        if len(states) % 2 or not producer.is_alive():  # in the middle of an append: once its work folder appears
            deadline = time.monotonic() + 10
            while not work.exists() and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rnd.uniform(0, 0.05))
        else:  # anywhere (a start takes about 0.7 s, then appends and waits)
            time.sleep(rnd.uniform(0.8, 2.0))
        proc.kill()
        proc.communicate()
        states.append(folder_status(str(out))["state"] if os.path.exists(out) else "none")
    proc = start_follower(inp, out, "--idle-exit", "1")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    st = folder_status(str(out), verify=True)
    assert st["state"] == "complete" and st["rows"] == files * 120
    assert data_files(out) == one_export(inp, tmp_path / "once")
    pos = pd.read_parquet(out, columns=["pos"])["pos"].to_numpy()
    assert (pos == np.arange(files * 120)).all()  # each row once, in order
    # some kills cut a run short (an append, or the first export when starts are slow)
    assert interrupted(), states


# ------------------------------------------------------------------------------ object stores

def test_following_an_object_store_prefix_into_an_object_store(s3, bucket, tmp_path):
    """Input objects uploaded while a follower exports them from S3 into S3 (a local S3 API
    server): the data objects equal the files of one local export of the same inputs, and the
    following reader reads every closed batch back."""
    from dask_cumbatch.export import follow_batches

    local = tmp_path / "in"
    for i in range(4):
        write_file(local, i)

    def upload(i):
        name = f"in-{i:04d}.parquet"
        s3.client.put_object(Bucket=bucket, Key=f"in/{name}", Body=(local / name).read_bytes())

    upload(0)

    def later():
        for i in range(1, 4):
            time.sleep(0.4)
            upload(i)

    producer = threading.Thread(target=later)
    producer.start()
    options = {"endpoint_url": s3.endpoint}
    result = follow(f"s3://{bucket}/in", f"s3://{bucket}/out", "w", LIMIT, poll=0.1, idle_exit=1.5,
                    storage_options=options, scheduler="sync")
    producer.join()
    assert result.rows == 4 * 120 and result.appends >= 2
    objects = {k: v for k, v in s3.objects(bucket, "out/").items() if not k.startswith("_")}
    assert objects == one_export(local, tmp_path / "once")
    assert folder_status(f"s3://{bucket}/out", options, verify=True)["follow"]["stopped_by"] == "idle"
    read = [batch for _, batch in follow_batches(f"s3://{bucket}/out", idle_exit=0, final=True,
                                                 storage_options=options)]
    assert sum(len(b) for b in read) == 4 * 120
