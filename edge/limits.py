"""The rate of new streams: a token bucket (the cap on open streams is checked in
:func:`edge.session.admit`)."""

from __future__ import annotations

import time


class RateLimiter:
    """Token bucket: ``rate`` new streams per second, bursts up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        """Take a token if there is one; a rate of 0 allows everything."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
