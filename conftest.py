"""Doctest collection (``--doctest-modules`` over ``service`` and the SDK, see pyproject.toml)
imports every module. The ones that cannot or should not be imported there are left out below,
each with its reason; any other module that fails to import is a real error and fails the run."""

from __future__ import annotations

import importlib.util

collect_ignore = [
    # The ASGI entry point builds the production app from the environment when imported (a side
    # effect, and settings may refuse the test machine's environment); it holds no doctests.
    "service/asgi.py",
]

if importlib.util.find_spec("torch") is None:
    # torch comes with the `worker` extra (and the SDK's `torch` extra), not with `dev`: without
    # it these modules cannot be imported at all, as tests/training skips for the same reason.
    collect_ignore += ["service/training", "clients/python/dyesp_client/metrics"]

if importlib.util.find_spec("optuna") is None:
    # optuna is the SDK's `optuna` extra: dyesp_client.optuna raises ImportError without it.
    collect_ignore += ["clients/python/dyesp_client/optuna.py"]
