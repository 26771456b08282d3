"""A deterministic study's ask waits for the retraining its schedule made due.

Background retraining finishes whenever it finishes, so an ask that took whatever pruner was
stored made two runs of one seed split apart. A deterministic study's ask instead uses exactly the
version its schedule calls for (``PrunerStore.for_ask``); when that version is not stored yet, the
ask gives back the engine gate and the study's row lock (other studies and every tell go on, and
the retraining, which reads the study, never waits for this ask), asks the retrainer for the
training, and polls the database until the version is stored: in whichever process trained it (an
RQ worker, the server's child, another server's), the database is where it lands. Past
``deterministic_wait_s`` the ask answers 503 + Retry-After; it never proposes with another version.
"""

from __future__ import annotations

import time

from service.db import pruner_queries
from service.errors import Unavailable
from service.usecases.context import UseCaseContext

POLL_S = 0.05  # a poll is one indexed query: cheap next to a training of 0.1 s and more
# How often a waiting ask asks the retrainer again: a job that was running when the first request
# came (deduplicated, training an older point) ends without the wanted version.
REQUEST_EVERY_S = 1.0
RETRY_AFTER_S = 1  # the training goes on meanwhile; the retried ask waits again


def wait_for_scheduled_version(ctx: UseCaseContext, study_id: str, n_results: int,
                               deadline: float) -> None:
    """Return once the version scheduled at ``n_results`` results is stored; 503 past
    ``deadline`` (``time.monotonic``). Holds no lock, no gate and no connection while asleep."""
    next_request = 0.0
    while True:
        now = time.monotonic()
        if now >= next_request:
            ctx.pruner_due(study_id)
            next_request = now + REQUEST_EVERY_S
        with ctx.sessions() as session:
            if pruner_queries.has_scheduled(session, study_id, n_results):
                return
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unavailable(
                f"the study is deterministic: its next trial must use the pruner retrained on "
                f"its first {n_results} results, and that retraining did not finish within "
                f"{ctx.deterministic_wait_s:g} s (DYESP_DETERMINISTIC_WAIT_S); it goes on: ask "
                f"again after Retry-After (create the study with deterministic=false to never "
                f"wait)", retry_after=RETRY_AFTER_S, field="deterministic")
        time.sleep(min(POLL_S, left))
