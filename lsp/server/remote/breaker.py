"""A circuit breaker: after a few failures in a row, stop asking a server for a while.

closed -> (THRESHOLD failures in a row) -> open for `cooldown` -> half-open: one request goes
through; success closes it, failure opens it again for twice as long (up to MAX_COOLDOWN_S).
While it is open a fill fails at once, without a request: a server that is down or drowning does
not get a request for every keystroke, and the editor is not kept waiting for timeouts.
"""
from __future__ import annotations

import time

THRESHOLD = 3
COOLDOWN_S = 2.0
MAX_COOLDOWN_S = 60.0


class Breaker:
    def __init__(self, threshold: int = THRESHOLD, cooldown_s: float = COOLDOWN_S,
                 max_cooldown_s: float = MAX_COOLDOWN_S, clock=time.monotonic):
        self.threshold, self.base, self.max = threshold, cooldown_s, max_cooldown_s
        self.clock = clock
        self.failures = 0
        self.cooldown = cooldown_s
        self.open_until: float | None = None
        self.probing = False
        self.reason = ""
        self.opened = 0  # times it opened (for stats)

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if self.clock() < self.open_until or self.probing else "half-open"

    def allow(self) -> bool:
        """Whether a request may go now (in half-open state: only the first one)."""
        if self.open_until is None:
            return True
        if self.clock() < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def retry_in(self) -> float:
        return max(0.0, (self.open_until or 0.0) - self.clock())

    def success(self) -> None:
        self.failures = 0
        self.cooldown = self.base
        self.open_until = None
        self.probing = False
        self.reason = ""

    def failure(self, reason: str, hold_s: float | None = None) -> bool:
        """Count a failure; True when this one opened the breaker. `hold_s` opens it at once for that long."""
        self.failures += 1
        self.reason = reason
        was_probe, self.probing = self.probing, False
        if hold_s is not None or was_probe or self.failures >= self.threshold:
            if was_probe:
                self.cooldown = min(self.max, self.cooldown * 2)
            self.open_until = self.clock() + (hold_s if hold_s is not None else self.cooldown)
            self.opened += 1
            return True
        return False

    def release_probe(self) -> None:
        """The probe ended without an answer either way (cancelled): let the next request probe."""
        self.probing = False
