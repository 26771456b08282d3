"""Does an API-key check take as long when the key is wrong? (`python -m benchmarks.auth_timing`)

Times ``service.db.key_queries.resolve_owner`` against a migrated SQLite database holding
``--keys`` keys, for five kinds of key: valid; the right key id with a wrong secret; a revoked
key; a well-formed key id that does not exist; a malformed key. Calls are interleaved (each round
runs every kind once, in a shuffled order) so drift in the machine hits all kinds alike.
Two columns:

* per request: what the service does for each request: open a session, look up, hash, compare;
* open session: the lookup, hash and compare alone, in a session that stays open.

A malformed key (no well-formed key id) skips the lookup; the caller knows what it sent, so its
being faster tells nothing about stored keys. A miss on a well-formed key id reads no table row;
key ids are not secret (``dyesp keys list`` prints them), the secret part is what must not show in
the timing. Writes benchmarks/results/auth_timing.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service.db import key_queries, migrate
from service.db.session import make_engine, make_sessionmaker, transaction

RESULTS = Path(__file__).parent / "results"


def make_keys(sessions: sessionmaker[Session], n_keys: int) -> dict[str, tuple[str, int | None]]:
    """label -> (key, owner it must resolve to)."""
    with transaction(sessions) as session:
        for i in range(n_keys):
            key_queries.create_key(session, f"owner-{i % 50}", f"filler-{i}")
        valid = key_queries.create_key(session, "bench", "valid")
        revoked = key_queries.create_key(session, "bench", "revoked")
        key_queries.revoke_key(session, revoked.prefix)
    secret_len = len(valid.secret.split("_", 2)[2])
    wrong = f"{key_queries.KEY_PREFIX}_{valid.prefix}_{'A' * secret_len}"
    unknown = f"{key_queries.KEY_PREFIX}_{'0' * len(valid.prefix)}_{'A' * secret_len}"
    malformed = "Z" * len(valid.secret)
    return {"valid key": (valid.secret, valid.owner_id),
            "wrong secret, existing key id": (wrong, None),
            "revoked key": (revoked.secret, None),
            "unknown key id": (unknown, None),
            "malformed key": (malformed, None)}


def measure(calls: int, check: Callable[[str], int | None],
            keys: dict[str, tuple[str, int | None]], seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    labels = list(keys)
    for label in labels:  # warm caches, and prove every kind resolves as it must
        assert check(keys[label][0]) == keys[label][1], label
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(calls):
        rng.shuffle(labels)
        for label in labels:
            key = keys[label][0]
            start = time.perf_counter_ns()
            check(key)
            samples[label].append((time.perf_counter_ns() - start) / 1000)
    return samples


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_us": statistics.median(ordered), "p90_us": ordered[int(0.9 * len(ordered))]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per kind of key")
    parser.add_argument("--keys", type=int, default=1_000, help="other keys in the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="dyesp-auth-"))
    engine = make_engine(f"sqlite:///{folder / 'auth.db'}")
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    keys = make_keys(sessions, args.keys)

    def per_request(key: str) -> int | None:
        with sessions() as session:
            return key_queries.resolve_owner(session, key)

    with sessions() as open_session:
        def in_open_session(key: str) -> int | None:
            return key_queries.resolve_owner(open_session, key)

        modes = {"per request": measure(args.calls, per_request, keys, args.seed),
                 "open session": measure(args.calls, in_open_session, keys, args.seed + 1)}
    engine.dispose()

    rows = [{"key": label, **{mode: summarize(samples[label]) for mode, samples in modes.items()}}
            for label in keys]
    base = {mode: rows[0][mode]["median_us"] for mode in modes}
    lines = ["# API-key check time by kind of key", "",
             f"`service.db.key_queries.resolve_owner` on SQLite, {args.calls:,} interleaved "
             f"calls per kind, {args.keys:,} other keys stored. "
             "Command: `python -m benchmarks.auth_timing`."
             " Per request = open a session, look up, hash, compare (what each request pays); "
             "open session = lookup, hash and compare alone.", "",
             "| key | per request median (µs) | p90 (µs) | vs valid | open session median (µs) "
             "| p90 (µs) | vs valid |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cells = [f"{row[m]['median_us']:.1f} | {row[m]['p90_us']:.1f} | "
                 f"{row[m]['median_us'] / base[m]:.2f}x" for m in modes]
        lines.append(f"| {row['key']} | " + " | ".join(cells) + " |")
    lines += ["", "Every kind computes one SHA-256 and one `hmac.compare_digest` of two "
              "64-character digests (tests/api/test_hostile_input.py checks this), so the secret "
              "part of a key has no timing signal: valid, wrong secret and revoked differ by "
              "noise. A well-formed key id costs one indexed lookup whether or not it exists; a "
              "miss reads no table row and may be a few µs faster, which tells only whether a key "
              "id exists, and key ids are not secret (`dyesp keys list` prints them). A malformed "
              "key skips the lookup, which reveals only that the caller's own input was "
              "malformed."]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auth_timing.md").write_text(table)
    (args.out / "auth_timing.json").write_text(json.dumps(
        {"calls": args.calls, "keys": args.keys, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
