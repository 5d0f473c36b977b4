"""Reconnect policy of a BLE sensor source: exponential backoff with jitter and a limit on attempts."""
from __future__ import annotations

import math
import numbers
import random

from ...errors import ConfigError


class ReconnectPolicy:
    """Delay before reconnection attempt ``k`` (0-based): ``d = min(max_s, initial_s * 2**k)``, drawn
    uniformly in ``[d/2, d]`` (jitter, so that many gateways do not retry in step); at most ``max_attempts``
    attempts (``None``: forever). ``seed`` makes the jitter reproducible."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, max_attempts: int | None = 10,
                 seed: int | None = None):
        finite = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                     for v in (initial_s, max_s))
        if not finite or not initial_s > 0 or not max_s >= initial_s:
            raise ConfigError(f"backoff needs finite seconds 0 < initial_s <= max_s, got {initial_s!r}, {max_s!r}")
        if max_attempts is not None and (not isinstance(max_attempts, numbers.Integral) or isinstance(max_attempts, bool)
                                         or max_attempts < 0):
            raise ConfigError(f"max_attempts must be an integer >= 0, or None (forever), got {max_attempts!r}")
        self.initial_s = float(initial_s)
        self.max_s = float(max_s)
        self.max_attempts = max_attempts
        self._rng = random.Random(seed)

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based)."""
        # the exponent stops growing once the delay is at max_s: 2.0 ** 1024 overflows, and a source that
        # reconnects forever (max_attempts None) reaches attempt 1024 after some hours out of range
        doublings = math.ceil(math.log2(self.max_s / self.initial_s)) if self.max_s > self.initial_s else 0
        d = min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), doublings))
        return d / 2 + self._rng.uniform(0.0, d / 2)

    def may_try(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` (0-based) is allowed."""
        return self.max_attempts is None or attempt < self.max_attempts
