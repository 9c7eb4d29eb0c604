"""What the in-lab agents share (stdlib only; copied beside probe_agent.py and sampler_agent.py)."""
from __future__ import annotations

import os
import time
from typing import Iterator


class FixedSchedule:
    """Slots at t0 + k * interval (monotonic clock), until ``max_duration`` or until ``stop_file`` appears.

    Iterating yields ``(k, due)`` once each slot is due. With ``skip_overrun``, slots that a slow
    iteration overran are skipped instead of being run late in a burst. After the loop, ``reason``
    says why it ended and ``next_k`` is the index the next slot would have had.
    """

    def __init__(self, interval: float, max_duration: float, stop_file: str | None = None,
                 t0: float | None = None, skip_overrun: bool = False):
        self.interval, self.max_duration, self.stop_file = interval, max_duration, stop_file
        self.t0 = time.monotonic() if t0 is None else t0
        self.skip_overrun = skip_overrun
        self.reason = "max-duration"
        self.next_k = 0

    def __iter__(self) -> Iterator[tuple[int, float]]:
        while True:
            k = self.next_k
            due = self.t0 + k * self.interval
            if due - self.t0 >= self.max_duration:
                return
            if self.stop_file and os.path.exists(self.stop_file):
                self.reason = "stop-file"
                return
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)  # pacing the fixed schedule, not waiting for a condition
            yield k, due
            self.next_k = k + 1
            if self.skip_overrun:
                self.next_k = max(self.next_k, int((time.monotonic() - self.t0) / self.interval))
