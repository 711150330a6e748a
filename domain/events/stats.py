"""What the live-events code reports about itself; the app passes an implementation that feeds /metrics.

The domain never imports the app: it calls these methods, whose default bodies do nothing.
"""

from __future__ import annotations


class LiveStats:
    """Callbacks for every countable thing of the /ws endpoint, per process."""

    def connected(self, outcome: str) -> None:
        """An upgrade was answered: `accepted`, `unauthorized` or `unavailable`."""

    def disconnected(self, reason: str) -> None:
        """An accepted socket ended: `client`, `heartbeat`, `slow_consumer`, `token_expired`, `shutdown`, ..."""

    def open_sockets(self, delta: int) -> None:
        """Sockets open in this process went up or down by `delta`."""

    def subscribed(self, outcome: str) -> None:
        """A subscribe request was answered: `ok`, `forbidden`, `invalid`, `unavailable`."""

    def active_subscriptions(self, delta: int) -> None:
        """Socket subscriptions in this process went up or down by `delta`."""

    def sent(self, count: int) -> None:
        """`count` more frames went out (events, replays and control frames)."""

    def dropped(self, count: int) -> None:
        """`count` event frames were not sent because their socket's backlog overflowed (the client recovers them)."""

    def backlog_high_water(self, depth: int) -> None:
        """A socket's send backlog reached `depth`, the most this process has seen."""

    def delivered(self, latency_s: float) -> None:
        """A live event was handed to a socket `latency_s` after it was published."""
