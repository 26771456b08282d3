"""Concurrent asks of one study share one engine call (``usecases.coalescing``), on SQLite and
PostgreSQL: the queued asks get the leader's batch, which is what the engine proposes for all of
them at once on the history they asked on; later asks never take an older batch."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from service.db.history import study_rungs
from service.db.models import Study
from service.engine.decision import Decision, Proposal
from service.engine.history import ProposalInfo
from service.engine.propose import propose
from service.usecases.coalescing import AskCoalescer


def _pick(i: int) -> Proposal:
    return Proposal({"x": i}, ProposalInfo(strategy="random", exploration=0.5))


def test_a_queued_ask_takes_a_batch_read_after_it_arrived_and_a_later_ask_does_not() -> None:
    coalescer = AskCoalescer(max_batch=4)
    with coalescer.arrive("s", 1) as leader, coalescer.arrive("s", 1) as queued:
        assert coalescer.take(leader, 1) is None  # nothing batched: the leader drafts
        snapshot = coalescer.snapshot(leader)
        assert snapshot.demand == 1  # the queued ask's one pick
        with coalescer.arrive("s", 1) as late:  # arrives after the leader's snapshot
            coalescer.keep(leader, snapshot, 3, Decision((_pick(1), _pick(2))))
            assert coalescer.take(late, 1) is None
            revision, decision = coalescer.take(queued, 1)
            assert (revision, [p.params for p in decision.proposals]) == (3, [{"x": 1}])
        assert len(coalescer) == 0  # the pick left over could go to nobody: dropped
    assert coalescer.coalesced == 1 and coalescer.in_flight("s") == 0


def test_demand_counts_queued_asks_of_the_same_study_only_and_is_capped() -> None:
    coalescer = AskCoalescer(max_batch=4)
    with coalescer.arrive("s", 2) as leader, coalescer.arrive("s", 1), \
            coalescer.arrive("s", 3), coalescer.arrive("t", 1):
        assert coalescer.snapshot(leader).demand == 2  # 1 + 3 queued, 4 picks at most in all
    with coalescer.arrive("s", 1) as alone:
        assert coalescer.snapshot(alone).demand == 0  # one sequential client: never batches


def test_a_batch_too_small_for_an_ask_is_not_split() -> None:
    coalescer = AskCoalescer()
    with coalescer.arrive("s", 1) as leader, coalescer.arrive("s", 2) as queued:
        coalescer.take(leader, 1)
        snapshot = coalescer.snapshot(leader)
        coalescer.keep(leader, snapshot, 0, Decision((_pick(1),)))
        assert coalescer.take(queued, 2) is None


def _wait_until(condition, timeout_s: float = 30.0) -> None:
    """Poll until ``condition()`` holds; fail (rather than hang) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the asks never queued at the gate"
        time.sleep(0.005)


def test_asks_queued_at_the_gate_get_one_engine_batch(api, app, study) -> None:
    """Four asks queue behind the engine gate: the first drafts four picks, the three others
    take theirs, and the four are exactly the engine's batch for the history they asked on."""
    sid, ctx = study["id"], app.state.context
    for trial in api.post(f"/v1/studies/{sid}/ask", json={"count": 6}).json()["trials"]:
        api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json={"value": trial["number"]})
    with ctx.sessions() as session:
        row = session.get(Study, sid)
        owner, seed = row.owner_id, row.seed
        history = ctx.histories.load(session, sid, row.direction, revision=row.revision,
                                     rungs=study_rungs(row))
        expected = propose(ctx.spaces.get(row), history, 4, seed=seed)
    before = ctx.coalescer.coalesced
    release = threading.Event()

    def hold_gate() -> None:
        with ctx.engine_gate.admit(owner):
            release.wait(10)

    holder = threading.Thread(target=hold_gate)
    holder.start()
    try:
        _wait_until(lambda: ctx.engine_gate.running == 1)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(api.post, f"/v1/studies/{sid}/ask") for _ in range(4)]
            _wait_until(lambda: ctx.coalescer.in_flight(sid) == 4)
            release.set()
            answers = [f.result() for f in futures]
    finally:
        release.set()
        holder.join()
    assert [a.status_code for a in answers] == [200] * 4
    trials = [a.json()["trials"][0] for a in answers]
    assert sorted(t["number"] for t in trials) == [6, 7, 8, 9]
    assert ctx.coalescer.coalesced - before == 3
    got = sorted(json.dumps(t["params"], sort_keys=True) for t in trials)
    assert got == sorted(json.dumps(p.params, sort_keys=True) for p in expected.proposals)
    assert len(ctx.coalescer) == 0 and ctx.coalescer.in_flight(sid) == 0
    assert "dyesp_asks_coalesced_total 3.0" in api.get("/metrics").text
