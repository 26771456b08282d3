"""RQ jobs: plain functions taking ids, safe to retry, enqueued by their dotted path
(``service.retrain_queue.JOB``). The work itself lives in the service, where the server's
spawned child runs the same function without Redis."""

from __future__ import annotations

from service.pruner_training import retrain_study


def retrain_pruner(study_id: str, *, database_url: str | None = None,
                   device: str | None = None) -> str | None:
    """Retrain the study's pruner if it is due and store the new version; the outcome in one line
    (also "no longer exists" for a study deleted meanwhile: an ordinary outcome, not a failure
    RQ would retry), or None if not due. ``database_url``: the enqueuer's database, else the
    worker's own settings."""
    return retrain_study(study_id, database_url=database_url, device=device)
