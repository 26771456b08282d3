"""Counted work instead of wall time: how many Python and C function calls a block makes.

Timing assertions are flaky on a loaded CI machine; a call count is the same on any machine, and
an exponential computation blows through any polynomial budget within milliseconds of starting,
so the test fails fast instead of hanging.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class WorkBudgetExceeded(AssertionError):
    """The block made more calls than its budget allows."""


@dataclass
class WorkCount:
    calls: int = 0


@contextmanager
def call_budget(max_calls: int) -> Iterator[WorkCount]:
    """Count calls made by this thread inside the block; raise once there are more than
    ``max_calls`` (the profiler unwinds the block with the exception)."""
    count = WorkCount()
    owner = threading.get_ident()

    def profile(_frame: object, event: str, _arg: object) -> None:
        if event in ("call", "c_call") and threading.get_ident() == owner:
            count.calls += 1
            if count.calls > max_calls:
                sys.setprofile(None)
                raise WorkBudgetExceeded(f"more than {max_calls} calls")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(previous)
