"""A private, throwaway PostgreSQL cluster for tests that crash and restart the database.

The shared server on 5432 is never touched: ``private_cluster()`` runs ``initdb`` in a temporary
directory and a postmaster on a free port, listening on 127.0.0.1 with trust auth, and removes it
all on exit. ``initdb`` refuses to run as root, so under root every binary runs as the
``postgres`` OS user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.system.servers import free_port


class ClusterUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or an OS user to run them as) are missing here."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: DYESP_TEST_PG_BINDIR, the PATH, or the
    newest Debian-style /usr/lib/postgresql/<version>/bin."""
    candidates = [os.environ.get("DYESP_TEST_PG_BINDIR", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    for candidate in candidates:
        if candidate and all((Path(candidate) / name).is_file() for name in ("initdb", "pg_ctl")):
            return Path(candidate)
    raise ClusterUnavailable("no initdb/pg_ctl found (set DYESP_TEST_PG_BINDIR)")


@dataclass
class Cluster:
    port: int
    root: Path  # owned by the OS user running the cluster; holds the data, socket and log
    bindir: Path
    run_as: list[str]  # [] or ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        command = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stdout}{done.stderr}"
                               f"\n{self.log_tail()}")

    def start(self) -> None:
        """Start (after a crash-like stop this includes WAL recovery); waits until it accepts
        connections."""
        # fsync=off only spares the disk: the stop below kills processes, not the OS, so every
        # committed transaction is still in the page cache and survives recovery.
        options = (f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=60")
        self._pg_ctl("-l", str(self.root / "log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every server process quits at once, without a checkpoint (crash-like)."""
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.root / "log").read_text().splitlines()[-n:])
        except OSError:
            return ""


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A fresh started cluster on a free port; stopped and deleted on exit."""
    bindir = find_bindir()
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="dyesp-pg-"))  # short: the socket path has a size limit
    try:
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root and no `postgres` OS user") from None
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ClusterUnavailable("running as root and no `runuser` to drop privileges")
            shutil.chown(root, "postgres", "postgres")
            run_as = [runuser, "-u", "postgres", "--"]
        cluster = Cluster(free_port(), root, bindir, run_as)
        init = subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(cluster.data), "-A", "trust",
             "-U", "postgres", "--no-sync", "-E", "UTF8"],
            cwd=root, capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.is_running():
                # already gone or not stoppable: the directory is removed below regardless
                with contextlib.suppress(Exception):
                    cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
