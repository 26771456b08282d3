"""Benchmark tasks: one adapter module per family, all producing `base.Task`; see `registry.py`."""

from benchmarks.tasks.base import Task
from benchmarks.tasks.registry import DEV_TASKS, get_task, task_names

__all__ = ["DEV_TASKS", "Task", "get_task", "task_names"]
