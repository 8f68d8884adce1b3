"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, start it on a
free TCP port of 127.0.0.1 (trust authentication, no fsync: its data lives as long as the test
session), stop and remove it afterwards. initdb refuses to run as root: as root, the server runs
as the user ``nobody`` (``runuser``).

``.ci/run`` starts its own the same way (in bash, before the virtualenv exists) and hands it
over in ``LVPLAN_TEST_POSTGRES``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ports import free_port


def find_bin(name: str) -> str | None:
    """``name`` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    hit = shutil.which(name)
    if hit:
        return hit
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    return None


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server; yield the URL of its ``postgres`` database."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("initdb/pg_ctl not found")
    root = Path(tempfile.mkdtemp(prefix="lvplan-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(root, "nobody")
    os.chmod(root, 0o700)
    port = free_port()
    env = dict(os.environ, LC_ALL="C")

    def run(cmd: list[str]) -> None:
        done = subprocess.run(
            [*as_user, *cmd], env=env, capture_output=True, text=True, cwd=root, timeout=120
        )
        if done.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {(done.stderr or done.stdout)[-1500:]}")

    try:
        run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        opts = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB"
        )
        run(
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def wait_until_up(url: str, seconds: float = 10.0) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
