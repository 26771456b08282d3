"""User attributes (Optuna's ``user_attrs``): the client's own JSON notes on a study or a trial.

Set by merging (a null value deletes its key), read back with the object, exported with the
trials; the engine never reads them. Bounded per object so a note costs what a trial costs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.db import report_queries, study_queries
from service.db.models import Study, Trial
from service.db.session import transaction
from service.errors import Invalid, NotFound
from service.usecases.context import UseCaseContext
from service.usecases.study_lifecycle import find_study

MAX_KEYS = 64  # keys of one object's user_attrs
MAX_KEY_LENGTH = 128
MAX_BYTES = 16 * 1024  # of one object's user_attrs as compact JSON (UTF-8)


def merged(current: dict[str, Any], changes: dict[str, Any],
           field: str = "user_attrs") -> dict[str, Any]:
    """``current`` with ``changes`` applied (a None value deletes its key), checked against the
    limits; an Invalid naming ``field`` (or the key) past them."""
    out = dict(current)
    for key, value in changes.items():
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise Invalid(f"{field}.{key[:MAX_KEY_LENGTH]}",
                          f"a key must be 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
        _check_finite(value, f"{field}.{key}")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    if len(out) > MAX_KEYS:
        raise Invalid(field, f"at most {MAX_KEYS} keys per object, got {len(out)}")
    size = len(json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_BYTES:
        raise Invalid(field, f"at most {MAX_BYTES} bytes of JSON per object, got {size}")
    return out


def _check_finite(value: Any, field: str) -> None:
    """NaN and infinities are not JSON (PostgreSQL's json refuses them), though parsers read
    them: a 422, not a 500 on one backend."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise Invalid(field, f"must hold only finite numbers, got {item}")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def set_study_attrs(ctx: UseCaseContext, owner_id: int, study_id: str,
                    changes: dict[str, Any]) -> Study:
    """Merge ``changes`` into the study's user_attrs under the study's row lock (not the
    revision bump of a trial write: nothing the engine or the caches read changes)."""
    with transaction(ctx.sessions) as session:
        find_study(session, owner_id, study_id)
        study = study_queries.row_locked(session, study_id)
        study.user_attrs = merged(study.user_attrs or {}, changes)
        return study


def set_trial_attrs(ctx: UseCaseContext, owner_id: int, study_id: str, trial_id: int,
                    changes: dict[str, Any]) -> Trial:
    """Merge ``changes`` into a trial's user_attrs, whatever its state (running or finished,
    as Optuna allows), under the trial's row lock, the one reports and stopped tells take."""
    with transaction(ctx.sessions) as session:
        find_study(session, owner_id, study_id)
        trial = report_queries.lock_trial(session, study_id, trial_id)
        if trial is None:
            raise NotFound(f"trial {trial_id} does not exist in study {study_id!r}", "trial_id")
        trial.user_attrs = merged(trial.user_attrs or {}, changes)
        return trial
