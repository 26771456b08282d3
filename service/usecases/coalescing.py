"""Concurrent asks of one study share one engine call (docs/scaling.md, "Coalesced asks").

Asks queue at the process's fair gate (``service.admission``) while one of them runs the engine.
Without coalescing each of them then runs the engine in turn, on a history that differs from the
previous one by at most the results told meanwhile. With it, the ask that reaches the engine (the
leader) drafts one batch for itself and for the asks of the same study queued behind it in this
process: ``propose(count + waiting)``, in which every pick joins the history as a running trial
before the next is made, so the batch is as pending-aware as the same asks made one by one. The
extra picks wait here, and a queued ask takes its share instead of calling the engine.

How a batched pick is kept honest:

* **Never older than its ask.** An ask takes a pick only from a batch whose history snapshot was
  read after that ask arrived (``Ticket.number <= Batch.snapshot``): it sees every result that had
  been told when it asked, as an ask served at once would. Asks that arrive later draft anew.
* **Never a duplicate.** The ask's transaction still checks, under the study's lock, that nobody
  took the configuration meanwhile (another server process, an enqueued trial) and asks the
  engine again if someone did (``proposals.FreshTrials.propose``).
* **Bounded.** At most ``MAX_BATCH`` picks per engine call, one batch per study, dropped as soon
  as no queued ask of the study can take from it.

A single sequential client never has a queued ask behind it, so its asks are exactly those
without coalescing (a deterministic study's promise is about one sequential client).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.engine.decision import Decision, Proposal

if TYPE_CHECKING:
    from service.engine.scheduler import Plan

# Most picks one engine call drafts, the leader's included: the engine's cost grows with the
# batch (each pick is made on the history plus the picks before it), so a batch of 8 cost about
# 3.6x a single pick at 300 trials on the load benchmark's space (against 8x one by one).
MAX_BATCH = 8


@dataclass
class Ticket:
    """One ask's place among the asks of its study in this process."""

    study_id: str
    number: int
    count: int
    queued: bool = True  # waiting to draft: the leader drafts for the queued ones


@dataclass
class Batch:
    """Picks drafted for queued asks on the history as of ``revision``, read after every ask
    numbered up to ``snapshot`` had arrived."""

    snapshot: int
    revision: int
    plan: Plan | None
    picks: list[Proposal] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """What a leader saw before it read the history: the newest ticket number, and how many
    picks the asks queued behind it still need."""

    number: int
    demand: int


class AskCoalescer:
    """The asks of each study in flight in this process and the picks batched for them."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._tickets: dict[str, dict[int, Ticket]] = {}
        self._batches: dict[str, Batch] = {}
        # picks handed out of batches (tests read it; /metrics counts the asks that recorded
        # them, AskResult.coalesced, since the study's lock may still reject a pick)
        self.coalesced = 0

    @contextlib.contextmanager
    def arrive(self, study_id: str, count: int) -> Iterator[Ticket]:
        """Register an ask from its arrival (before the gate) until it is answered."""
        with self._lock:
            ticket = Ticket(study_id, next(self._numbers), count)
            self._tickets.setdefault(study_id, {})[ticket.number] = ticket
        try:
            yield ticket
        finally:
            with self._lock:
                tickets = self._tickets.get(study_id, {})
                tickets.pop(ticket.number, None)
                if not tickets:
                    self._tickets.pop(study_id, None)
                self._drop_unreachable(study_id)

    def take(self, ticket: Ticket, count: int) -> tuple[int, Decision] | None:
        """``count`` picks batched for this ask (the revision they were drafted on, and them),
        or None: the ask drafts itself, and leads a batch for the asks queued behind it."""
        with self._lock:
            ticket.queued = False
            batch = self._batches.get(ticket.study_id)
            if batch is None or batch.snapshot < ticket.number or len(batch.picks) < count:
                return None
            picks, batch.picks[:count] = batch.picks[:count], []
            if not batch.picks:
                del self._batches[ticket.study_id]
            self.coalesced += 1
            return batch.revision, Decision(tuple(picks), (), batch.plan)

    def snapshot(self, ticket: Ticket) -> Snapshot:
        """Call before reading the history a leader drafts on: the picks to draft beyond its
        own (its queued followers' counts, at most ``max_batch`` in all)."""
        with self._lock:
            number = next(self._numbers)
            queued = sum(t.count for t in self._tickets.get(ticket.study_id, {}).values()
                         if t.queued and t is not ticket)
            return Snapshot(number, max(0, min(queued, self.max_batch - ticket.count)))

    def keep(self, ticket: Ticket, snapshot: Snapshot, revision: int,
             decision: Decision) -> None:
        """Keep a leader's extra picks for the asks that were queued at its snapshot."""
        if not decision.proposals:
            return
        with self._lock:
            self._batches[ticket.study_id] = Batch(snapshot.number, revision, decision.plan,
                                                   list(decision.proposals))
            self._drop_unreachable(ticket.study_id)

    def _drop_unreachable(self, study_id: str) -> None:
        """Forget a batch no ask in flight may take from (all of them arrived after it)."""
        batch = self._batches.get(study_id)
        if batch is None:
            return
        waiting = [t.number for t in self._tickets.get(study_id, {}).values() if t.queued]
        if not waiting or min(waiting) > batch.snapshot:
            del self._batches[study_id]

    def in_flight(self, study_id: str) -> int:
        """Asks of ``study_id`` between arrival and answer in this process."""
        with self._lock:
            return len(self._tickets.get(study_id, {}))

    def __len__(self) -> int:
        """Studies with a batch kept (bounded by the studies with asks in flight)."""
        return len(self._batches)
