"""House rules that CI enforces: the API process never imports torch; import contracts hold;
the migrations describe exactly the tables the ORM declares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_app_does_not_import_torch() -> None:
    code = ("import sys, service.asgi, service.cli; "
            "print('torch' in sys.modules, 'service.training' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env={"DYESP_DATABASE_URL": "sqlite:///:memory:",
                                            "PATH": "/usr/bin:/bin"}, check=True)
    assert result.stdout.strip() == "False False"


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    # The SDK contract must see this checkout's SDK, wherever the installed one lives.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "clients" / "python"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_match_the_models(database_url: str) -> None:
    from service.db import migrate
    from service.db.models import Base

    engine = create_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
