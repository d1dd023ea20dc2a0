"""The runtime's own tasks: named, tracked, cancellable, never fire-and-forget.

``asyncio.TaskGroup`` would be the natural owner, but it waits without bound
for a child that ignores cancellation; the runtime must be able to give up on
such a task at its deadline and name it, so it keeps its tasks here instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("mainspring.tasks")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `coro` as a task owned by the runtime (it copies the caller's context)."""
        if name in self._tasks:
            coro.close()
            raise ValueError(f"a runtime task named {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task.get_name(), None)
        if not task.cancelled() and task.exception() is not None:
            log.error("runtime task failed", task=task.get_name(), exc_info=task.exception())

    def cancel(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()

    def names(self) -> list[str]:
        return sorted(self._tasks)
