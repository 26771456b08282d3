"""The RQ contract: queue name, job id scheme and the deduplicating enqueue.

Jobs are plain functions taking a study id (RQ style); at most one retraining job per study is
queued or running at a time, because its job id is derived from the study id. The service enqueues
the job by its dotted path (``JOB``) and never imports the workers package; ``dyesp worker`` runs
it. Redis and RQ are the ``worker`` extra: import this module only where they are needed.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.pruner_training import TRAINING_TIMEOUT_S

QUEUE_NAME = "dyesp-retrain"
JOB = "workers.jobs.retrain_pruner"  # the job function, by the path RQ imports it from
RETRY = Retry(max=3, interval=[5, 30, 120])
_ACTIVE = {"queued", "started", "deferred", "scheduled"}


def job_id(study_id: str) -> str:
    """RQ >= 2.8 allows letters, digits, '_' and '-' only; study ids are hex."""
    return f"retrain-{study_id}"


def connect(url: str, timeout_s: float | None = 2.0) -> Redis:
    """A client that fails fast when Redis is down (``timeout_s=None`` for a worker's blocking
    dequeue, which waits longer than any socket timeout)."""
    return Redis.from_url(url, socket_connect_timeout=timeout_s or 2.0, socket_timeout=timeout_s)


def enqueue_retraining(redis: Redis, study_id: str, database_url: str | None = None) -> bool:
    """Enqueue unless a job for this study is already waiting or running; True if enqueued."""
    try:
        status = Job.fetch(job_id(study_id), connection=redis).get_status(refresh=True)
    except NoSuchJobError:
        status = None
    if status is not None and str(getattr(status, "value", status)) in _ACTIVE:
        return False
    Queue(QUEUE_NAME, connection=redis).enqueue(
        JOB, study_id, database_url=database_url,
        job_id=job_id(study_id), job_timeout=TRAINING_TIMEOUT_S, retry=RETRY,
        result_ttl=3600, failure_ttl=24 * 3600,
    )
    return True
