"""`python -m benchmarks.dashboard_demo`: real searches on a real server, then a screenshot of
each dashboard page (the README's pictures, `docs/screenshots/`).

Not a measurement: it shows what a user sees. A fresh SQLite file (or ``--database``) and a real
server (``benchmarks.servers``, retraining on, so the pruner's versions are real); through the
SDK with 4 workers it runs DyESP on NAS-Bench-201's cell space (``nb201/cifar10``, 6 edges x 5
operations, tabular) and on an LCBench task with one report per epoch, early stopping on
(``lcbench/126025``, ONNX surrogate); then headless Chromium (Debian's, via Playwright) opens the
studies list, each study, its engine view, its architecture map and one trial, and saves them.
``--keep`` leaves the server running for a look in a browser.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.multifidelity.tasks import get_mf_task
from benchmarks.servers import start_server
from benchmarks.tasks import get_task

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def run_cells(client, trials: int) -> str:
    task = get_task("nb201/cifar10")
    study = client.create_study("nb201-cifar10-cells", space=task.space["params"],
                                direction=task.direction, load_if_exists=True)
    study.optimize(lambda trial: task.objective(trial.params), n_trials=trials, n_workers=4)
    return study.id


def run_epochs(client, trials: int) -> str:
    task = get_mf_task("lcbench/126025")
    study = client.create_study("lcbench-126025-epochs", space=task.space["params"],
                                direction=task.direction, load_if_exists=True,
                                fidelity={"name": "epoch", "min": task.fmin, "max": task.fmax})

    from dyesp_client import TrialStopped

    def objective(trial):
        value = None
        for step in task.steps:
            value = task.value(trial.params, step)
            if trial.report(step, value):
                raise TrialStopped()  # optimize tells it stopped: its curve is its result
        return value

    study.optimize(objective, n_trials=trials, n_workers=4)
    return study.id


def screenshots(base_url: str, pages: dict[str, str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    saved = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name, path in pages.items():
            page.goto(base_url + path)
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            page.wait_for_timeout(800)  # Plotly's transitions
            target = out / f"{name}.png"
            # the whole page only where the first screen shows too little; PNGs stay small
            page.screenshot(path=str(target), full_page=name in ("engine", "map"))
            saved.append(target)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--cells-trials", type=int, default=200)
    ap.add_argument("--epoch-trials", type=int, default=80)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", action="store_true", help="leave the server running at the end")
    args = ap.parse_args(argv)

    from dyesp_client import Client

    workdir = Path(tempfile.mkdtemp(prefix="dyesp-demo-"))
    url = args.database or f"sqlite:///{workdir / 'demo.db'}"
    server = start_server(url, retrain=True, log=workdir / "server.log")
    try:
        with Client(server.url) as client:
            started = time.monotonic()
            cells = run_cells(client, args.cells_trials)
            epochs = run_epochs(client, args.epoch_trials)
            print(f"searches done in {time.monotonic() - started:.0f} s: {server.url}/ui")
        args.out.mkdir(parents=True, exist_ok=True)
        saved = screenshots(server.url, {
            "studies": "/ui",
            "study": f"/ui/studies/{cells}",
            "engine": f"/ui/studies/{cells}/engine",
            "map": f"/ui/studies/{cells}/map",
            "trial": f"/ui/studies/{epochs}/trials/{best_epoch_trial(server.url, epochs)}",
            "study-epochs": f"/ui/studies/{epochs}",
        }, args.out)
        print("saved", ", ".join(str(p) for p in saved))
        if args.keep:
            print(f"server left running at {server.url}/ui (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
    finally:
        server.stop()
    return 0


def best_epoch_trial(base_url: str, study_id: str) -> int:
    """The id of the best complete trial of the epochs study (it has a full curve)."""
    import httpx

    return httpx.get(f"{base_url}/v1/studies/{study_id}/best", timeout=30).json()["id"]


if __name__ == "__main__":
    raise SystemExit(main())
