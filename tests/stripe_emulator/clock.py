"""The emulator's injectable clock: wall time plus an offset that tests can advance."""

from __future__ import annotations

import threading
import time


class Clock:
    """Time as the emulator sees it (object ``created``, idempotency-key expiry, due dates).

    ``advance`` moves it forward without sleeping, so a test can cross the 24 h idempotency
    window in a millisecond. Webhook signatures use the real wall clock instead, because the
    receiving application checks them against its own clock.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def timestamp(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset
