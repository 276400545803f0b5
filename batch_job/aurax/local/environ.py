"""Per-invocation environments for the in-process Lambda functions, without touching the process's.

A Lambda function reads its configuration from `os.environ`. Applying each invocation's variables to the
process-wide `os.environ` raced every other thread of the emulation: the state machine's interpreter, the Batch
job runners and the pipeline's poller copy and read `os.environ` (`dict(os.environ)` snapshots the keys, then
reads each one: a key an invocation removed meanwhile raised `KeyError: 'AWS_LAMBDA_FUNCTION_NAME'`), and they
saw one function's variables as their own. Here an invocation's variables live in a context variable that
`os.environ` consults first, in the invoking thread and in the threads it starts (as a Lambda sandbox's threads
share its environment), and in no other thread. The process's own environment, and so every subprocess's, is
never changed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from contextvars import ContextVar, copy_context
from typing import Any
from unittest import mock

_DELETED = object()
#: The current invocation's variables (a deleted one maps to `_DELETED`), or None outside any invocation.
_FUNCTION_ENV: ContextVar[dict[str, Any] | None] = ContextVar("aurax_function_env", default=None)


@contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` reads `variables` on top of the process's environment in this context and in the threads
    started from it; writes and deletions made there stay in it. Needs `isolated_environ()` installed."""
    token = _FUNCTION_ENV.set(dict(variables))
    try:
        yield
    finally:
        _FUNCTION_ENV.reset(token)


def _overlay(environ: object) -> dict[str, Any] | None:
    return _FUNCTION_ENV.get() if environ is os.environ else None


@contextmanager
def isolated_environ() -> Iterator[None]:
    """Install, for the duration: `os.environ` that honours `function_environment`, and threads that start in
    a copy of their starter's context (so a handler's worker threads, e.g. boto3's managed transfers, see its
    environment and act as its principal)."""
    environ_type = type(os.environ)
    getitem, setitem, delitem, iterate = (environ_type.__getitem__, environ_type.__setitem__,
                                          environ_type.__delitem__, environ_type.__iter__)

    def get(self: Any, key: str) -> str:
        overlay = _overlay(self)
        if overlay is not None and key in overlay:
            if overlay[key] is _DELETED:
                raise KeyError(key)
            return overlay[key]
        return getitem(self, key)

    def set_(self: Any, key: str, value: str) -> None:
        overlay = _overlay(self)
        if overlay is None:
            setitem(self, key, value)
        else:
            overlay[key] = str(value)

    def delete(self: Any, key: str) -> None:
        overlay = _overlay(self)
        if overlay is None:
            delitem(self, key)
            return
        get(self, key)  # KeyError for a variable this context does not have, as os.environ raises
        overlay[key] = _DELETED

    def keys(self: Any) -> Iterator[str]:
        overlay = _overlay(self)
        if overlay is None:
            yield from iterate(self)
            return
        yield from (key for key, value in list(overlay.items()) if value is not _DELETED)
        yield from (key for key in iterate(self) if key not in overlay)

    def size(self: Any) -> int:
        return sum(1 for _ in keys(self))

    with ExitStack() as stack:
        for name, method in (("__getitem__", get), ("__setitem__", set_), ("__delitem__", delete),
                             ("__iter__", keys), ("__len__", size)):
            stack.enter_context(mock.patch.object(environ_type, name, method))
        stack.enter_context(threads_inherit_context())
        yield


def threads_inherit_context() -> Any:
    """A patch of `Thread.start`: the new thread runs in a copy of the starting thread's context variables
    (nothing more when an enclosing patch already does it: both the environment overlay and IAM enforcement
    need it, and either may be used alone)."""
    start = threading.Thread.start
    if getattr(start, "_inherits_context", False):
        return nullcontext()

    def start_in_context(thread: threading.Thread) -> None:
        run: Callable[[], None] = thread.run
        context = copy_context()
        thread.run = lambda: context.run(run)  # type: ignore[method-assign]
        start(thread)

    start_in_context._inherits_context = True  # type: ignore[attr-defined]
    return mock.patch.object(threading.Thread, "start", start_in_context)
