"""The retraining child (torch, hundreds of MB) never outlives its server, however the server dies.

Real processes only: a uvicorn server with retraining on and no Redis trains in a spawned child;
the server is then killed with SIGKILL, which runs none of its shutdown code, and the child must go
too. The two mechanisms behind that (Linux's parent-death signal and the portable watchdog thread)
are also checked one at a time in plain processes. Processes are read from /proc (Linux only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from service.db.models import PrunerVersion as PrunerRow
from service.retraining import CHILD_NICENESS
from tests.conftest import MIXED_SPACE
from tests.system.servers import Server, make_key, start_server

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")]

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 30  # a dead parent's child gone within this: only a hang detector, not a latency bound
TRAINING_S = 180  # spawning, importing torch and training on two busy cores

# A process identity that survives pid reuse: (pid, start time in clock ticks since boot).
Proc = tuple[int, int]


# --- /proc -----------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid``, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def proc(pid: int) -> Proc:
    stat = _stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return pid, stat[2]


def alive(process: Proc) -> bool:
    """Running (a zombie awaiting its reaper counts as dead: it holds no memory)."""
    stat = _stat(process[0])
    return stat is not None and stat[2] == process[1] and stat[0] not in ("Z", "X")


def descendants(root: int) -> list[Proc]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if (stat := _stat(child)) is not None:
                found.append((child, stat[2]))
                todo.append(child)
    return found


def cmdline(process: Proc) -> str:
    try:
        return Path(f"/proc/{process[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def loaded_torch(process: Proc) -> bool:
    """Whether the child reached the training code (torch is imported nowhere before it)."""
    try:
        return "libtorch" in Path(f"/proc/{process[0]}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


def training_child(server: Server) -> Proc | None:
    """The spawned executor worker among the server's descendants (not the resource tracker)."""
    for process in descendants(server.process.pid):
        if "spawn_main" in cmdline(process) and alive(process):
            return process
    return None


def end(processes: Iterable[Proc]) -> None:
    """Clean up after a failed test: SIGKILL what this test started and is still running."""
    for process in processes:
        if alive(process):
            os.kill(process[0], signal.SIGKILL)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return result


# --- a real server that retrains in a child ---------------------------------------------------

class RetrainingServers:
    """Starts uvicorn servers with retraining on and no Redis (so they train in a spawned child),
    and remembers every process they started so that none outlives a failed test."""

    def __init__(self) -> None:
        self.started: list[Server] = []
        self.family: set[Proc] = set()

    def start(self, database_url: str) -> tuple[Server, str]:
        key = make_key(database_url, "retraining-child-test")
        server = start_server(database_url, retrain=True)
        self.started.append(server)
        threading.Thread(target=server.process.stderr.read, daemon=True).start()  # never blocks
        return server, key

    def kill_9_and_expect_no_survivor(self, server: Server) -> None:
        family = descendants(server.process.pid)
        self.family.update(family)
        assert any("spawn_main" in cmdline(p) for p in family), family
        server.kill()  # SIGKILL: no lifespan shutdown, no Retrainer.stop()
        wait_for(lambda: not any(alive(p) for p in family), HANG_S,
                 "every process the killed server started to die: "
                 + ", ".join(f"{p[0]} {cmdline(p)[:80]}" for p in family if alive(p)))

    def close(self) -> None:
        for server in self.started:
            self.family.update(descendants(server.process.pid))
            server.stop()
        end(self.family)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[RetrainingServers]:
    monkeypatch.delenv("DYESP_REDIS_URL", raising=False)
    monkeypatch.setenv("DYESP_RETRAIN_MIN_TRIALS", "10")  # due after the 12 results told below
    servers = RetrainingServers()
    yield servers
    servers.close()


def tell_results(server: Server, key: str, n: int) -> str:
    """A study with ``n`` results, enough for a retraining to be due."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                      timeout=30) as http:
        # Not deterministic: its asks would wait for each scheduled retraining, and a loaded
        # machine's spawned child (importing torch) can outlast that wait (a 503, not a test of
        # the child's lifecycle).
        study = http.post("/v1/studies", json={"name": "child", "space": MIXED_SPACE, "seed": 1,
                                                "deterministic": False})
        assert study.status_code == 201, study.text
        study_id = study.json()["id"]
        for _ in range(n):
            (trial,) = http.post(f"/v1/studies/{study_id}/ask").json()["trials"]
            loss = (trial["params"]["lr"] - 0.01) ** 2 + trial["params"]["depth"]
            told = http.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                             json={"value": loss})
            assert told.status_code == 200, told.text
    return study_id


def test_a_child_killed_mid_training_dies_with_its_server(postgres_url: str,
                                                          servers: RetrainingServers) -> None:
    server, key = servers.start(postgres_url)
    tell_results(server, key, 12)
    child = wait_for(lambda: training_child(server), TRAINING_S, "the retraining child")
    wait_for(lambda: loaded_torch(child), TRAINING_S, "the child to reach the training code")
    # Training yields the CPU to the server's requests: the server runs at this process's
    # niceness (inherited), its child CHILD_NICENESS above it.
    assert os.getpriority(os.PRIO_PROCESS, child[0]) == min(
        19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS)
    servers.kill_9_and_expect_no_survivor(server)


def test_an_idle_child_dies_with_its_server(sqlite_url: str, servers: RetrainingServers) -> None:
    """Done training, the child waits for the next job; without a parent it would wait forever
    (it holds its job queue's write end itself, so it never reads end-of-file)."""
    server, key = servers.start(sqlite_url)
    study_id = tell_results(server, key, 12)
    engine = create_engine(sqlite_url)
    try:
        def trained() -> bool:
            with engine.connect() as connection:
                return bool(connection.scalar(select(func.count()).select_from(PrunerRow)
                                              .where(PrunerRow.study_id == study_id)))

        wait_for(trained, TRAINING_S, "the child to store a pruner")
    finally:
        engine.dispose()
    assert training_child(server) is not None  # still there, idle
    servers.kill_9_and_expect_no_survivor(server)


# --- each mechanism alone, in plain processes -------------------------------------------------

# A middle process starts a grandchild running GRANDCHILD's code, prints the grandchild's pid once
# the grandchild reports it is armed, then sleeps until killed.
MIDDLE = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"armed"
    print(child.pid, flush=True)
    time.sleep(600)
""")
WATCHDOG_ONLY = textwrap.dedent("""
    import os, threading, time
    from service.retraining import _exit_when_orphaned
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(), 0.1), daemon=True).start()
    print("armed", flush=True)
    time.sleep(600)
""")
DEATH_SIGNAL_ONLY = textwrap.dedent("""
    import time
    from service.retraining import _arm_parent_death_signal
    assert _arm_parent_death_signal()
    print("armed", flush=True)
    time.sleep(600)
""")


def orphan_after_kill_9_of_its_parent(grandchild_code: str) -> Proc:
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, grandchild_code], cwd=ROOT,
                              stdout=subprocess.PIPE)
    try:
        line = middle.stdout.readline().strip()
        assert line.isdigit(), f"the middle process failed: {middle.wait(30)}"
        grandchild = proc(int(line))
    finally:
        middle.kill()
        middle.wait(timeout=30)
        middle.stdout.close()
    return grandchild


@pytest.mark.parametrize("code", [WATCHDOG_ONLY, DEATH_SIGNAL_ONLY],
                         ids=["watchdog thread", "parent-death signal"])
def test_each_mechanism_alone_ends_an_orphaned_child(code: str) -> None:
    if code is DEATH_SIGNAL_ONLY and not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux-only; the watchdog covers other systems")
    grandchild = orphan_after_kill_9_of_its_parent(code)
    try:
        wait_for(lambda: not alive(grandchild), HANG_S, "the orphaned child to exit")
    finally:
        end([grandchild])


def test_a_child_whose_parent_died_before_it_was_armed_exits_at_once() -> None:
    """The signal is armed only once the child runs Python: a server that died in between is
    seen by the changed parent pid, and the child exits instead of starting to train."""
    code = ("import sys; from service.retraining import _die_with_parent; "
            "_die_with_parent(int(sys.argv[1])); print('would train')")
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])  # a "server" that exited
    dead_parent.wait()
    orphan = subprocess.run([sys.executable, "-c", code, str(dead_parent.pid)], cwd=ROOT,
                            capture_output=True, text=True, timeout=HANG_S * 2)
    assert orphan.returncode == 1 and "would train" not in orphan.stdout, orphan.stderr
    adopted = subprocess.run([sys.executable, "-c", code, str(os.getpid())], cwd=ROOT,
                             capture_output=True, text=True, timeout=HANG_S * 2)
    assert adopted.returncode == 0 and "would train" in adopted.stdout, adopted.stderr
