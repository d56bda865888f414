"""Long work shows progress: the callback type the pipeline reports through, the one rule for when a
command line draws bars, and the bars (tqdm on stderr).

The pipeline never draws anything itself: long functions take a :data:`Progress` callback, and the
command lines (``python -m pipeline``, ``python -m eval``, the app's start-up) pass bars from here.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from tqdm import tqdm

Progress = Callable[[int, int, str], None]
"""progress(done, total, what): called as long work advances."""

#: The stage that prepares a built gallery for questions (:mod:`pipeline.prepare`): counted in steps,
#: every other stage in images.
PREPARING = "preparing for questions"


def show_progress() -> bool:
    """True when a command line should draw progress bars: stderr is a terminal, or ``IAE_PROGRESS``
    is set (to see them in a log)."""
    return sys.stderr.isatty() or bool(os.environ.get("IAE_PROGRESS"))


def tqdm_progress(enabled: bool = True) -> Progress:
    """A :data:`Progress` callback drawing tqdm bars on stderr, one per stage (``what``); draws
    nothing when ``enabled`` is false."""
    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, what: str) -> None:
        if not enabled or total <= 0:
            return
        bar = bars.get(what)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[what] = tqdm(total=total, desc=what, unit="step" if what == PREPARING else "img",
                                    file=sys.stderr, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress
