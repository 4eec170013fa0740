"""Bounded retries with exponential backoff, honouring Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

# distribution-spec: 408/429 and 5xx are transient; everything else is final.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Tries per request, and the jittered exponential backoff between them.

    Seven tries: when a flaky path fails a fifth of all requests independently, one
    request in ~100,000 still fails every time, so a push or build of a few dozen
    requests almost never does; a registry that stays down is given up on within
    about 8 to 16 seconds of waiting.
    """

    attempts: int = 7  # total tries, including the first
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # never sleep longer than this on a server's say-so

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try number *attempt* + 1 (attempt counts from 1)."""
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        jitter: float = 0.5 + random.random() / 2  # noqa: S311 - jitter, not crypto
        return backoff * jitter


def parse_retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
