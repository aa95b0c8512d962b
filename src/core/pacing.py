"""Client-side pacing: a thread-safe token bucket, so a batch job takes its share of a shared rate limit and
no more (API Gateway's management API: 10 requests per second per account, burst 40, shared by every caller).

The offline stack's API Gateway emulation uses the same class for the limits it enforces.
"""

import math
import threading
import time
from collections.abc import Callable
from typing import Final

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """Holds at most `burst` tokens, refilled at `rate` per second, starts full."""

    # Tolerates float rounding in refills such as 0.2 s x 5/s.
    _EPSILON: Final = 1e-9

    def __init__(
        self, rate: float, burst: float, clock: MonotonicClock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def try_take(self, n: float = 1.0) -> bool:
        """Take `n` tokens if they are there; never blocks."""
        with self._lock:
            self._refill()
            if self._tokens + self._EPSILON < n:
                return False
            self._tokens = max(self._tokens - n, 0.0)
            return True

    def seconds_until_available(self, n: float = 1.0) -> float:
        """How long until `n` tokens will be there (0.0 if they are now, inf if they never will be)."""
        with self._lock:
            self._refill()
            missing = n - self._tokens
            if missing <= self._EPSILON:
                return 0.0
            if self.rate == 0 or n > self.burst:
                return math.inf
            return missing / self.rate

    def take(self, n: float = 1.0) -> float:
        """Wait until `n` tokens are there and take them; the seconds waited. Raises ValueError if they never
        will be (more than the burst, or no refill)."""
        waited = 0.0
        while not self.try_take(n):
            wait = self.seconds_until_available(n)
            if math.isinf(wait):
                raise ValueError(f"{n} tokens will never be available (rate {self.rate}, burst {self.burst})")
            # Another thread may take the refill first: sleep, then try again.
            self._sleep(max(wait, self._EPSILON))
            waited += wait
        return waited

    def _refill(self) -> None:
        now = self._clock()
        # A clock that steps back (a fake one in a test) must not drain the bucket.
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
