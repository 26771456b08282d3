"""API keys and owners: create, revoke, and resolve a bearer key in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import ApiKey, Owner, utcnow

KEY_PREFIX = "dyesp"
LOCAL_OWNER = "local"
PREFIX_BYTES = 6
# Only a well-formed key id is looked up: anything else (a NUL PostgreSQL cannot compare, 100 kB
# of junk) is a miss without a query. The caller knows what it sent, so skipping leaks nothing.
_PREFIX_FORMAT = re.compile(f"[0-9a-f]{{{2 * PREFIX_BYTES}}}")
# Compared against when a prefix is unknown, so a miss costs the same as a hit.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class NewKey:
    owner_id: int
    prefix: str
    secret: str  # shown once, never stored


def secret_digest(secret: str) -> str:
    """What is stored of a key: the SHA-256 of its secret, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def get_or_create_owner(session: Session, name: str) -> Owner:
    """The owner called ``name``, created if missing. Several server processes starting on a
    fresh database race here (each makes the local owner): the loser's insert hits the unique
    name in a savepoint and reads the winner's row instead of failing its start."""
    owner = session.scalar(select(Owner).where(Owner.name == name))
    if owner is not None:
        return owner
    try:
        with session.begin_nested():
            owner = Owner(name=name)
            session.add(owner)
    except IntegrityError:
        owner = session.scalars(select(Owner).where(Owner.name == name)).one()
    return owner


def create_key(session: Session, owner_name: str, key_name: str) -> NewKey:
    owner = get_or_create_owner(session, owner_name)
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(owner_id=owner.id, name=key_name, prefix=prefix,
                       key_hash=secret_digest(secret)))
    session.flush()
    return NewKey(owner.id, prefix, secret)


def revoke_key(session: Session, prefix: str) -> bool:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True


def list_keys(session: Session) -> list[tuple[ApiKey, Owner]]:
    rows = session.execute(select(ApiKey, Owner).join(Owner).order_by(ApiKey.id))
    return [(k, o) for k, o in rows]


def resolve_owner(session: Session, secret: str, digest: str | None = None) -> int | None:
    """The owner id of a valid, unrevoked key; None otherwise. Timing does not reveal which part
    failed: the stored hash is always compared with ``hmac.compare_digest``. ``digest``: the
    secret's ``secret_digest`` when the caller has it already (the request's key cache)."""
    parts = secret.split("_", 2)
    well_formed = len(parts) == 3 and parts[0] == KEY_PREFIX and _PREFIX_FORMAT.fullmatch(parts[1])
    # Plain columns, not an ORM object: building one only on a hit would make hits slower.
    key = session.execute(select(ApiKey.key_hash, ApiKey.owner_id, ApiKey.revoked_at)
                          .where(ApiKey.prefix == parts[1])).first() if well_formed else None
    expected = key.key_hash if key is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, digest or secret_digest(secret))
    if key is None or not matches or key.revoked_at is not None:
        return None
    return key.owner_id
