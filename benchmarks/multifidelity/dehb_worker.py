"""DEHB 0.1.2 behind a pipe: run by `.venv-dehb/bin/python` (numpy<2), never by the main venv.

Protocol, one JSON object per line. The parent writes
`{"space": <DyESP space>, "seed": s, "fmin": a, "fmax": b, "eta": 3}` and then, repeatedly,
`{"cmd": "ask"}` (answer: `{"id": n, "config": {...}, "fidelity": f}`) or
`{"cmd": "tell", "id": n, "fitness": loss, "cost": epochs}` (answer: `{"ok": true}`).
EOF ends the worker. Errors are answered as `{"error": "..."}`. Everything DEHB (loguru) prints
goes to stderr; stdout carries only the protocol. The ConfigSpace mapping is the SMAC adapter's
(`benchmarks.optimizers.smac_hpo.config_space`), imported from the repository root.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    from dehb import DEHB
    from loguru import logger

    from benchmarks import space as sp
    from benchmarks.optimizers.smac_hpo import config_space

    logger.remove()  # DEHB logs every step at INFO; keep warnings only
    logger.add(sys.stderr, level="WARNING")
    header = json.loads(sys.stdin.readline())
    params = sp.parse(header["space"])
    cs = config_space(params, int(header["seed"]))
    dehb = DEHB(cs=cs, dimensions=len(list(cs.values())), min_fidelity=header["fmin"],
                max_fidelity=header["fmax"], eta=int(header.get("eta", 3)), n_workers=1,
                seed=int(header["seed"]), output_path=tempfile.mkdtemp(prefix="dehb-mf-"),
                save_freq="end")
    send({"ready": True})
    jobs: dict[int, dict] = {}
    counter = 0
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "ask":
                job = dehb.ask()
                config = job["config"]  # 0.1.2 already hands a ConfigSpace Configuration
                counter += 1
                jobs[counter] = job
                send({"id": counter, "fidelity": float(job["fidelity"]),
                      "config": {k: sp.to_builtin(v) for k, v in dict(config).items()}})
            elif msg["cmd"] == "tell":
                dehb.tell(jobs.pop(msg["id"]), {"fitness": float(msg["fitness"]),
                                                "cost": float(msg["cost"])})
                send({"ok": True})
            else:
                send({"error": f"unknown cmd {msg['cmd']!r}"})
        except Exception as exc:  # the parent decides; the worker stays up
            send({"error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
