"""Rate limits: at most N events a minute per client, for uploads and failed logins."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0  #: the limits count what happened in the last minute


class RateLimit:
    """At most ``limit`` events per ``window_s`` seconds for each key (a sliding window); thread-safe.

    ``clock`` is injectable so that tests move time instead of sleeping.
    """

    _SWEEP_KEYS = 1024  #: past this many keys, forget those with nothing in the window

    def __init__(self, limit: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        """The key's events still in the window (lock held)."""
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def _wait(self, events: deque[float], now: float) -> float:
        return 0.0 if len(events) < self.limit else events[0] + self.window_s - now

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may have another event; 0 if it may now."""
        with self._lock:
            now = self._clock()
            return self._wait(self._recent(key, now), now)

    def record(self, key: str) -> None:
        """Count an event for ``key`` now."""
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)
            if len(self._events) > self._SWEEP_KEYS:
                self._events = {k: v for k, v in self._events.items() if self._recent(k, now)}

    def take(self, key: str) -> float:
        """Count an event for ``key`` if it is allowed now and return 0; else the seconds to wait."""
        with self._lock:
            now = self._clock()
            events = self._recent(key, now)
            wait = self._wait(events, now)
            if not wait:
                events.append(now)
            return wait
