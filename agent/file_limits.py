"""The process's open-file limit: raised at start, and how many descriptors are in use.

Many systems start a service with a soft ``RLIMIT_NOFILE`` of 1024 and a hard limit far above it.
The agent holds cameras, SQLite databases, evidence files and API connections at once, so
``watchword run`` raises the soft limit to the hard one before it opens anything; the API then
takes no more connections than leave a reserve under that limit (:mod:`agent.api.connections`).
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger(__name__)

# Where the hard limit is "unlimited", Linux still refuses a soft limit over fs.nr_open (2**20 by
# default): aim there instead.
UNLIMITED_TARGET = 1 << 20


def open_file_limit() -> int:
    """The soft ``RLIMIT_NOFILE``: the most descriptors this process may hold at once."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_file_limit()
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else int(hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit: cannot raise %d to %d: %s", before, target, exc)
    after = open_file_limit()
    if after != before:
        log.info("open-file limit raised from %d to %d", before, after)
    return before, after


def open_file_count() -> int | None:
    """Descriptors this process holds now; None where ``/proc/self/fd`` cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor
    except OSError:
        return None
