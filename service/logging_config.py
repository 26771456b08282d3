"""One logging setup for the `dyesp` command and every uvicorn worker process it starts.

`dyesp serve --workers N` (N > 1) runs the app in spawned processes that inherit nothing the
parent configured: with `logging.basicConfig` in the parent alone, no application line of a
worker ever reached stderr. uvicorn applies its ``log_config`` in each worker it starts, so this
dict, passed there and applied here for the parent, gives every process the same handler and
format, uvicorn's own lines included: its access log too, when `dyesp serve --access-log` (or
DYESP_ACCESS_LOG) turns it on. The process id in each line tells the workers apart.
"""

from __future__ import annotations

import logging.config
from typing import Any

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s %(message)s"


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: everything to stderr through the root logger, in one
    format; alembic's per-migration chatter at WARNING."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's loggers would otherwise keep handlers and formats of their own.
            **{name: {"handlers": [], "propagate": True}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            "alembic": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO") -> None:
    logging.config.dictConfig(log_config(level))
