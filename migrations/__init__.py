"""Alembic migrations, shipped inside the package so `dyesp db upgrade` works from any install."""
