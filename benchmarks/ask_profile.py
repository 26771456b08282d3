"""Where an ask's time goes: a py-spy profile of the engine's proposal, summarised as tables
(`python -m benchmarks.ask_profile`).

Runs `engine.propose` for one configuration ``--asks`` times on the HAS-like space of
`benchmarks.ask_time` with a history of ``--trials`` finished trials, under `py-spy record`
(sampling, ``--rate`` per second; the bench extra installs py-spy), then keeps only the samples
taken inside `propose` and writes, as markdown, the functions with the most samples on top of the
stack (self) and anywhere on it (inclusive), as shares of the samples. ``--code`` profiles another
checkout of the engine (e.g. a worktree of the commit before a change), so a before/after pair
comes from one command line each on the same machine:

    python -m benchmarks.ask_profile --label before --code ../before-worktree
    python -m benchmarks.ask_profile --label after

Writes benchmarks/results/profiles/ask_<label>.md (small: the tables, not the raw stacks).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "profiles"
ROOT = Path(__file__).resolve().parents[1]
ENTRY = "propose (service/engine/propose.py"  # a py-spy frame label starts with the function

WORKLOAD = """
import os, sys
os.environ["OPENBLAS_NUM_THREADS"] = "1"
from benchmarks.retraining import HAS_SPACE, history_of
from service.engine.propose import propose
from service.engine.space import SearchSpace
space = SearchSpace.from_dict(HAS_SPACE)
history = history_of(space, int(sys.argv[1]))
propose(space, history, 1, seed=0)
for i in range(int(sys.argv[2])):
    propose(space, history, 1, seed=i)
"""


def record(code: Path, trials: int, asks: int, rate: int) -> list[tuple[list[str], int]]:
    """py-spy's collapsed stacks (frames outermost first, sample count) of the workload."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory() as tmp:
        script, raw = Path(tmp) / "workload.py", Path(tmp) / "stacks.txt"
        script.write_text(WORKLOAD)
        env = {**os.environ, "PYTHONPATH": str(code)}
        subprocess.run([spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--",
                        sys.executable, str(script), str(trials), str(asks)],
                       cwd=code, env=env, check=True, capture_output=True)
        stacks = []
        for line in raw.read_text().splitlines():
            frames, _, count = line.rpartition(" ")
            if frames and count.isdigit():
                stacks.append((frames.split(";"), int(count)))
    return stacks


def _label(frame: str) -> str:
    """``function (path:line)`` -> ``function (path)``, the path relative to the checkout."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "/site-packages/" in path:  # a library: from its package on
        path = path.split("/site-packages/", 1)[1]
    for marker in ("/service/", "/benchmarks/"):  # this project: from its top-level package on
        if marker in path:
            path = path[path.index(marker) + 1:]
            break
    return f"{name} ({path})"


def summarise(stacks: list[tuple[list[str], int]], top: int) -> tuple[int, list, list]:
    """Samples inside ``propose``; the ``top`` functions by self and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks:
        start = next((i for i, f in enumerate(frames) if f.startswith(ENTRY)), None)
        if start is None:
            continue
        inside = [_label(f) for f in frames[start:]]
        total += count
        own[inside[-1]] += count
        for name in set(inside):
            inclusive[name] += count
    return total, own.most_common(top), inclusive.most_common(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after", help="names the output file")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose engine is profiled (default: this one)")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stacks = record(args.code.resolve(), args.trials, args.asks, args.rate)
    total, own, inclusive = summarise(stacks, args.top)
    if not total:
        print("no samples inside propose: is py-spy allowed to trace here?", file=sys.stderr)
        return 1
    commit = subprocess.run(["git", "-C", str(args.code), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(args.code), "status", "--porcelain", "service"],
                           capture_output=True, text=True).stdout.strip()
    lines = [f"# Engine ask profile: {args.label}", "",
             f"py-spy, {args.rate} samples/s, {args.asks} asks of `engine.propose` (one "
             f"configuration) on a {args.trials:,}-trial history of the HAS-like space; "
             f"engine at `{commit}`{' + uncommitted changes' if dirty else ''}. "
             f"{total:,} samples inside `propose` ({total / args.rate / args.asks * 1000:.1f} "
             f"ms of samples per ask). Command: `python -m benchmarks.ask_profile --label "
             f"{args.label}{' --code <checkout>' if args.code.resolve() != ROOT else ''}`.", ""]
    for title, rows in (("Self (top of the stack)", own), ("Inclusive", inclusive)):
        lines += [f"## {title}", "", "| share | samples | function |", "|---:|---:|---|"]
        lines += [f"| {count / total:.1%} | {count:,} | `{name}` |" for name, count in rows]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ask_{args.label}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
