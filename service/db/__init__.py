"""Persistence: the ORM tables, the session factory and one query module per aggregate."""
