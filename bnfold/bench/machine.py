"""What the numbers were measured on: they mean nothing without it."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU count (and how many this process may use), platform, processor, Python."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS/Windows
        usable = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpu_count": usable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
    }
