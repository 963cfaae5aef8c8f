"""This process's memory, as Linux reports it: for the benchmarks and the shard actors, which
report their own peak (raybench.pipeline.shards)."""

from __future__ import annotations

import os
import resource


def peak_rss() -> int:
    """This process's peak resident memory since it started, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS mark (VmHWM) at the current RSS, so that ``peak_rss_mark``
    measures one step rather than the whole process (imports, a warm-up). False if the kernel
    does not allow it (not Linux, or /proc/self/clear_refs not writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mark() -> int | None:
    """VmHWM: the peak RSS since the last ``reset_peak_rss`` (or since the start), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
