"""Noticing that the gateway has run out of file descriptors, whichever event loop runs it.

The connection limit (`GATEWAY_MAX_CONNECTIONS`, by default derived from the open-files limit)
should keep the gateway below its open-files limit; when it does not (a limit set too high,
descriptors used elsewhere), `accept()` fails with EMFILE and charge points are dropped without
an answer. asyncio's own loop reports that to the loop's exception handler; uvloop (libuv) does
not, it accepts and closes such connections silently. So the gateway also probes: once a
second it opens and closes `/dev/null`, which fails with the same EMFILE while the condition
lasts.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable

PROBE_INTERVAL = 1.0
_EXHAUSTION = {errno.EMFILE: "EMFILE", errno.ENFILE: "ENFILE"}


def out_of_descriptors() -> str | None:
    """ "EMFILE" or "ENFILE" when no file can be opened now, else None."""
    try:
        descriptor = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        return _EXHAUSTION.get(exc.errno or 0)
    os.close(descriptor)
    return None


async def probe_forever(report: Callable[[str], None], interval: float = PROBE_INTERVAL) -> None:
    """Call `report(errno_name)` at each probe that finds no descriptor free."""
    while True:
        await asyncio.sleep(interval)
        name = out_of_descriptors()
        if name is not None:
            report(name)
