"""A local SMTP server for the reminders benchmark: aiosmtpd, in a process of its own, counting what it accepts.

``python bench/smtp_sink.py PORT [DELAY_MS]`` prints ``ready`` once it listens; on SIGTERM it prints how
many messages it accepted and exits. ``DELAY_MS`` makes it answer each message that much later, as a
relay across a network would. A process of its own, so the server does not share the worker's
interpreter lock (as a practice's mail relay would not).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Counting:
    def __init__(self, delay_s: float) -> None:
        self.accepted = 0
        self.delay_s = delay_s

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd calls it so)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.accepted += 1
        return "250 Message accepted for delivery"


def main() -> None:
    handler = Counting(float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0)
    controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    print(handler.accepted, flush=True)


if __name__ == "__main__":
    main()
