"""Optuna parity: user attributes, the deterministic flag, study names unique per owner

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_LENGTH = 256  # studies.name is String(256)


def upgrade() -> None:
    """``user_attrs`` (studies and trials): the client's own JSON notes, ``{}`` for existing rows.
    ``deterministic`` (studies): false for existing studies, which were created without it.

    Study names become unique per owner (so ``load_study(name)`` means one study). Existing
    duplicates are renamed first, deterministically: within one owner and name, the oldest study
    (``created_at``, then id) keeps the name and the later ones become ``"name (2)"``,
    ``"name (3)"``, ... in creation order, skipping any name the owner already uses; a name too
    long for the suffix is cut so the result stays within 256 characters."""
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("user_attrs", sa.JSON(), nullable=False,
                                   server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("deterministic", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("user_attrs", sa.JSON(), nullable=False,
                                   server_default=sa.text("'{}'")))
    _rename_duplicate_names(op.get_bind())
    # A unique index, not a table constraint: SQLite adds it without rebuilding the table.
    op.create_index("uq_studies_owner_name", "studies", ["owner_id", "name"], unique=True)


def _rename_duplicate_names(connection: sa.Connection) -> None:
    studies = sa.table("studies", sa.column("id", sa.String()), sa.column("owner_id"),
                       sa.column("name", sa.String()),
                       sa.column("created_at", sa.DateTime(timezone=True)))
    duplicated = connection.execute(
        sa.select(studies.c.owner_id, studies.c.name).group_by(studies.c.owner_id, studies.c.name)
        .having(sa.func.count() > 1).order_by(studies.c.owner_id, studies.c.name)).all()
    taken: dict[int, set[str]] = {}
    for owner_id, name in duplicated:
        if owner_id not in taken:
            taken[owner_id] = set(connection.scalars(
                sa.select(studies.c.name).where(studies.c.owner_id == owner_id)))
        ids = connection.scalars(
            sa.select(studies.c.id).where(studies.c.owner_id == owner_id, studies.c.name == name)
            .order_by(studies.c.created_at, studies.c.id)).all()
        number = 1
        for study_id in ids[1:]:  # the oldest keeps its name
            while True:
                number += 1
                suffix = f" ({number})"
                renamed = name[:NAME_LENGTH - len(suffix)] + suffix
                if renamed not in taken[owner_id]:
                    break
            taken[owner_id].add(renamed)
            connection.execute(studies.update().where(studies.c.id == study_id)
                               .values(name=renamed))


def downgrade() -> None:
    """Renamed duplicates keep their new names: which ones they were is not recorded."""
    op.drop_index("uq_studies_owner_name", table_name="studies")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("user_attrs")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("deterministic")
        batch.drop_column("user_attrs")
