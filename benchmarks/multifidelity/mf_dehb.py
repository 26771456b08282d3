"""DEHB (`dehb==0.1.2`) in its own virtualenv, driven over JSON lines from the benchmark process.

dehb 0.1.2 pins numpy<2; the main environment has numpy 2.x (torch, onnxruntime, the engine), so
DEHB runs in `.venv-dehb/` (`python -m benchmarks.multifidelity --setup-dehb` creates it from
`benchmarks/REQUIREMENTS-dehb.txt`; `$DYESP_DEHB_PYTHON` names another interpreter). The child
(`dehb_worker.py`) asks and tells; this process evaluates the objective and charges the epochs,
so DEHB is charged by the same `Ledger` as everyone else: each job is trained from scratch at its
fidelity (DEHB does not resume), the fidelity mapped to the nearest available step. Defaults as
users get them (eta 3, DE's rand1_bin, mutation 0.5, crossover 0.5), one worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.multifidelity.ledger import Ledger
from benchmarks.multifidelity.tasks import MFTask

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-dehb"
REQUIREMENTS = ROOT / "benchmarks" / "REQUIREMENTS-dehb.txt"


def python() -> Path:
    return Path(os.environ.get("DYESP_DEHB_PYTHON") or VENV / "bin" / "python")


def available() -> bool:
    return python().exists()


def setup_venv(base_python: str = "python3.11") -> Path:
    """Create `.venv-dehb` and install the pinned DEHB requirements (idempotent)."""
    if not (VENV / "bin" / "python").exists():
        subprocess.run([base_python, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                    str(REQUIREMENTS)], check=True)
    return VENV


class DehbProcess:
    def __init__(self, space: dict, seed: int, fmin: int, fmax: int) -> None:
        if not available():
            raise RuntimeError(f"no DEHB interpreter at {python()}: run `python -m "
                               "benchmarks.multifidelity --setup-dehb` first")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [str(python()), "-m", "benchmarks.multifidelity.dehb_worker"], cwd=str(ROOT),
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
            bufsize=1)
        self._call({"space": space, "seed": seed, "fmin": fmin, "fmax": fmax, "eta": 3})

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the DEHB worker exited (code {self.proc.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"DEHB worker: {answer['error']}")
        return answer

    def ask(self) -> dict[str, Any]:
        return self._call({"cmd": "ask"})

    def tell(self, job_id: int, fitness: float, cost: float) -> None:
        self._call({"cmd": "tell", "id": job_id, "fitness": fitness, "cost": cost})

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def drive(task: MFTask, ledger: Ledger, seed: int) -> None:
    from benchmarks import space as sp

    params_list = sp.parse(task.space)
    dehb = DehbProcess(task.space, seed, task.fmin, task.fmax)
    try:
        while True:
            job = dehb.ask()
            params = sp.clean(params_list, job["config"])
            step = task.nearest_step(job["fidelity"])
            value = ledger.evaluate(params, step)
            dehb.tell(job["id"], task.sign * value, float(step))
    finally:
        dehb.close()
