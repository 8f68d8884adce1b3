"""One lvplan run per output folder (lvplan/io/folder_lock.py): a second run on a folder another
run holds exits 2 with one line and touches nothing; a killed run blocks no one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lvplan.errors import InputError
from lvplan.io.folder_lock import LOCK_NAME, locked_folder

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def _snapshot(folder) -> dict:
    """Every file and folder under ``folder`` with its size, mtime and inode."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), folder)] = (
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
            )
    return out


def _lvplan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvplan.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_second_run_on_a_held_folder_exits_2_and_touches_nothing(
    hand_json, hand_csv, urban, tmp_path, capsys
):
    """``lvplan hosting --out DIR`` holds DIR (stopped with SIGSTOP once it holds it, so that
    nothing it writes can move the folder): ``lvplan plan --out DIR`` and another ``lvplan
    hosting --out DIR`` on other inputs exit 2 with one line naming DIR and the holder, and
    leave every file of DIR as it was; once the holder is SIGKILLed, the plan runs there.

    The holder maps the urban district (it holds DIR for seconds, where sz-futian's map ends
    0.4 s after taking the lock), read from a pandapower JSON file of it: it takes the lock
    3 s after it starts, not the 9 s ``simbench-urban`` takes (converted from SimBench)."""
    import pandapower as pp

    from lvplan.cli import main

    district = tmp_path / "simbench-urban.json"
    pp.to_json(urban.pp, str(district))
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-m", "lvplan.cli", "hosting", str(district), "--no-maps",
         "--out", str(out)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lock = out / LOCK_NAME
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and holder.poll() is None:
            if lock.is_file() and lock.read_text().strip() == str(holder.pid):
                break
            time.sleep(0.01)
        assert holder.poll() is None, "the hosting run ended before the test could stop it"
        holder.send_signal(signal.SIGSTOP)
        before = _snapshot(out)
        assert LOCK_NAME in before
        for args in (
            ["plan", str(hand_json), "--demand", str(hand_csv), "--method", "greedy"],
            ["hosting", "sz-futian", "--no-maps"],
        ):
            res = _lvplan(*args, "--out", str(out))
            assert res.returncode == 2, res.stderr
            err = res.stderr.strip()
            assert "\n" not in err and "Traceback" not in err
            assert err == (
                f"lvplan: error: --out {out}: another lvplan run holds this folder "
                f"(pid {holder.pid}); wait for it to end or choose another folder"
            )
            assert _snapshot(out) == before  # nothing touched
        holder.kill()  # SIGKILL: the kernel releases its lock
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # (in this process: the kernel released the killed holder's lock)
    rc = main(["plan", str(hand_json), "--demand", str(hand_csv), "--method", "greedy",
               "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (out / "summary.json").is_file() and (out / "plan.csv").is_file()
    assert not lock.exists()  # removed by the run that ended


def test_the_lock_in_one_process(tmp_path):
    """Two holders in one process conflict as two processes do (flock is per open file); the
    lock file goes with its run, and a folder the refused or finished run created for itself
    and left empty is removed again."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "plan.csv").write_text("old", encoding="utf-8")
    with locked_folder(kept) as d:
        assert (d / LOCK_NAME).read_text().strip() == str(os.getpid())
        held = r"--resume .*kept: another lvplan run holds this folder \(pid"
        with pytest.raises(InputError, match=held), locked_folder(kept, flag="--resume"):
            pass
        (d / "summary.json").write_text("{}", encoding="utf-8")
    assert sorted(p.name for p in kept.iterdir()) == ["plan.csv", "summary.json"]
    fresh = tmp_path / "a" / "new"
    with locked_folder(fresh):
        assert fresh.is_dir()
    assert not fresh.exists()  # created here and left empty: gone again
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="exists and is not a folder"), locked_folder(blocker):
        pass


def test_a_link_or_a_pipe_named_like_the_lock_is_refused_and_its_target_kept(tmp_path):
    """``--out`` holding a symbolic link named ``.lvplan.lock``: one line naming it, and the
    file it points at keeps its content (before, the lock was opened through the link,
    truncated and written: the target held the pid); a FIFO of that name is refused too."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious data\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    link = r"\.lvplan\.lock there is a symbolic link"
    with pytest.raises(InputError, match=link), locked_folder(out):
        pass
    assert precious.read_text(encoding="utf-8") == "precious data\n"
    (out / LOCK_NAME).unlink()
    os.mkfifo(out / LOCK_NAME)
    with pytest.raises(InputError, match=r"\.lvplan\.lock there is not a file"), locked_folder(out):
        pass
