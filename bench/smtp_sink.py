"""A local SMTP server for the reminders benchmark: aiosmtpd, in a process of its own, counting what it accepts.

``python bench/smtp_sink.py PORT`` prints ``ready`` once it listens; on SIGTERM it prints how many
messages it accepted and exits. A process of its own, so the server does not share the worker's
interpreter lock (as a practice's mail relay would not).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Counting:
    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd calls it so)
        self.accepted += 1
        return "250 Message accepted for delivery"


def main() -> None:
    handler = Counting()
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
