"""Work done ahead on a thread pool, handed back in order: :func:`in_order`."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def in_order(pool: Executor, function: Callable[[Item], Result], items: Iterable[Item], ahead: int) -> Iterator[Result]:
    """Yield ``function(item)`` for every item of ``items`` in order, computed on ``pool`` up to
    ``ahead`` items before it is asked for. ``items`` is read here, in the caller's thread, one item
    at a time (a generator over a file streams); an exception raised by ``function`` is raised when its
    result is reached."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
