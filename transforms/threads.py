"""Thread scheduling for CPU work that no answer waits on."""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICE = 10  # the scheduling priority of background threads (Linux: per thread)


def lower_priority() -> None:
    """Make the calling thread background work: answers come first when the cores are busy."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
