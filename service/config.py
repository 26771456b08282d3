"""Settings from the environment (``DYESP_*``) in one place, each default with its reason."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.engine.retraining_policy import RetrainPolicy

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_RETRAIN = RetrainPolicy()  # the defaults, and their reasons, live with the rule


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DYESP_", env_file=".env", extra="ignore")

    # The embedded default: a SQLite file in the working directory, so `dyesp serve` needs nothing.
    database_url: str = "sqlite:///dyesp.db"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # "auto": off only for the embedded SQLite default bound to loopback, on everywhere else.
    auth: Literal["auto", "on", "off"] = "auto"
    # One log line per request (uvicorn's access log, in the application's format). Off by default:
    # at the ask/tell rates the service is built for it is mostly noise and costs every request a
    # synchronous write to stderr; /metrics counts requests by route and status, and a reverse
    # proxy usually keeps an access log already. Turn it on to watch requests while developing.
    access_log: bool = False
    # Container allocations (net of those freed) between the cyclic collector's young
    # collections in a server process (``app.tune_collector``; CPython's default is 700). An ask
    # builds thousands of short-lived containers that reference counting frees anyway; collecting
    # every 700 of them cost about 2 ms an ask on a 10,000-trial study, its engine time 1.10x
    # (benchmarks/results/gc_threshold.md). Uncollected cyclic garbage stays bounded by it.
    gc_young_threshold: int = Field(50_000, ge=100)
    # Migrations on start keep `dyesp serve` a one-command experience; several processes serialise
    # on an advisory lock (PostgreSQL) so they don't race.
    migrate_on_start: bool = True
    # How long a running trial may stay silent before the server marks it failed. Long enough for
    # an SDK heartbeat (every 30 s) to miss a few beats; users override it per study.
    default_heartbeat_timeout_s: float = Field(300.0, gt=0)
    # How often the background reaper sweeps all studies for silent trials.
    reaper_interval_s: float = Field(10.0, gt=0)
    # Request-size guards: a body larger than this is refused before parsing (413).
    max_body_bytes: int = 1_000_000
    # Upper bound for ask's count, so one call can't lock a study for long.
    max_ask_count: int = 100
    # Static-metrics studies: a pool of `factor` x count candidates (at most `max`) gives the
    # pruner a real choice while the client builds only a few models per trial; unanswered pools
    # expire so a crashed client leaves nothing behind.
    candidate_pool_factor: int = Field(4, ge=1)
    candidate_pool_max: int = Field(64, ge=1)
    candidate_ttl_s: float = Field(600.0, gt=0)
    # Connection pool: enough for a few concurrent asks per process without exhausting PostgreSQL.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Pruner retraining (``retrain_policy``): start once `retrain_min_trials` results exist, then
    # whenever results grew by the larger of `retrain_min_new` and `retrain_growth` x the last
    # training size.
    retrain_min_trials: int = _RETRAIN.min_trials
    retrain_min_new: int = _RETRAIN.min_new
    retrain_growth: float = _RETRAIN.growth
    retrain_enabled: bool = True
    # Deterministic studies: how long an ask waits for the retraining its schedule made due
    # before answering 503 + Retry-After (the SDK retries it). Below the request deadline with
    # room for the engine gate's own wait (admission.MAX_WAIT_S) and the engine.
    deterministic_wait_s: float = Field(5.0, gt=0)

    # --- bounds on what one request, and one tenant, may cost (docs/api-contract.md, "Limits") ---
    # Every wait on a dependency ends: a database or Redis that hangs (rather than refusing
    # connections) costs a 503 + Retry-After within seconds, never a thread held forever.
    db_connect_timeout_s: float = Field(3.0, gt=0)  # TCP connect + PostgreSQL start-up
    db_statement_timeout_s: float = Field(10.0, gt=0)  # PostgreSQL statement_timeout/lock_timeout
    db_pool_timeout_s: float = Field(5.0, gt=0)  # waiting for a pooled connection
    redis_timeout_s: float = Field(2.0, gt=0)  # connect and each command
    # The last resort: a request still unanswered after this many seconds gets a 503 +
    # Retry-After whatever it waits on (a frozen database answers no timeout of its own).
    request_timeout_s: float = Field(15.0, gt=0)
    # Per-owner rate limits (all of an owner's keys together), in the `limits` library's notation
    # ("N/second", "N/minute", several separated by ";"); empty turns one off. Asks are limited
    # apart because they run the engine. Shared through Redis when DYESP_REDIS_URL is set,
    # per server process otherwise.
    rate_limit: str = "500/second"
    ask_rate_limit: str = "50/second"
    # Seconds a verified API key is trusted without reading it again (``caches.api_keys``): a
    # revoked key keeps working that long at most. 0 reads the key on every request.
    key_cache_s: float = Field(5.0, ge=0)
    # Quotas: a study's unfinished trials (each one is pending work every ask reasons about) and
    # an owner's studies.
    max_running_trials_per_study: int = Field(1000, ge=1)
    max_waiting_trials_per_study: int = Field(1000, ge=1)
    max_studies_per_owner: int = Field(1000, ge=1)

    @property
    def retrain_policy(self) -> RetrainPolicy:
        """When the pruner is retrained: the engine's rule with these thresholds."""
        return RetrainPolicy(self.retrain_min_trials, self.retrain_min_new, self.retrain_growth)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def auth_enabled(self) -> bool:
        if self.auth == "auto":
            return not (self.is_sqlite and self.host in LOOPBACK_HOSTS)
        return self.auth == "on"

    @property
    def deterministic_wait_bound_s(self) -> float:
        """How long a deterministic ask waits for its due retraining: the setting, capped at half
        the request deadline, so the ask still answers its own 503 + Retry-After in time (a
        shorter ``DYESP_REQUEST_TIMEOUT_S`` alone must not stop the server from starting)."""
        return min(self.deterministic_wait_s, 0.5 * self.request_timeout_s)

    def check(self) -> None:
        """Refuse configurations that would expose an unauthenticated service."""
        if not self.auth_enabled and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"DYESP_AUTH=off is only allowed when bound to 127.0.0.1, got host={self.host}"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
