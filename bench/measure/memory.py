"""Peak resident memory of the current process."""

from __future__ import annotations

import logging
import sys

import psutil

log = logging.getLogger(__name__)

try:
    import resource
except ImportError:  # Windows has no resource module.
    resource = None


def peak_rss_bytes() -> int:
    """Return the peak resident set size of this process in bytes.

    Uses getrusage's ru_maxrss, which Linux reports in KiB and macOS in bytes. Other systems are read as
    KiB, like Linux. Where the resource module is missing (Windows), it uses psutil's peak working set,
    or the current RSS if that is missing too.
    """
    if resource is None:
        memory_info = psutil.Process().memory_info()
        return int(getattr(memory_info, "peak_wset", memory_info.rss))

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        return int(max_rss)
    return int(max_rss) * 1024
