"""Is the gateway still answering? The decision, on a clock the caller passes in.

A gateway can stop answering with its socket left open (an IB Gateway hung, or stopped with
SIGSTOP: the kernel still accepts our bytes, nobody reads them). Nothing fails then: requests
only time out, one by one. So the link watches two numbers, both taken from the client
library: when the gateway last sent anything, and how many messages we have written since.

    written since the gateway last sent anything   >= MAX_UNANSWERED  -> hold writes, probe
    waiting that long with nothing heard           >= quiet_s         -> hold writes, probe
    nothing either way                             >= IDLE_PROBE_S    -> probe
    a probe unanswered                             >= timeout_s       -> silent: close, reconnect

Any byte from the gateway answers a probe (``reqCurrentTime``; a data tick does as well).
Writes hold while a probe is due or out, so a silent gateway is sent at most
``MAX_UNANSWERED`` messages and a probe: what it finds queued in its socket when it wakes up
must not read as a burst over its 50 messages/s (IBKR counts them as they reach it). On a
healthy gateway a hold costs one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

# below IBKR's 50 messages/s with margin: all of them may reach a gateway at one moment
MAX_UNANSWERED = 20
IDLE_PROBE_S = 10.0  # a link with nothing to say is asked now and then, one message


@dataclass(frozen=True)
class LivenessPolicy:
    quiet_s: float = 2.0  # waiting this long with nothing heard: probe
    timeout_s: float = 5.0  # a probe unanswered this long: the gateway is silent
    max_unanswered: int = MAX_UNANSWERED
    idle_s: float = IDLE_PROBE_S


class LinkWatch:
    """What the link has heard and written, and what follows from it; see the module
    docstring. ``sent_total`` is the library's count of messages written on this socket."""

    def __init__(self, policy: LivenessPolicy, now: float, sent_total: int = 0) -> None:
        self.policy = policy
        self.heard_at = now  # the gateway's last byte (the connect's answer, at first)
        self.written_at = now
        self._sent_at_heard = sent_total  # the count when the gateway last sent anything
        self._sent_total = sent_total
        self._waiting_since: float | None = None  # the first write nothing has answered yet
        self.probe_at: float | None = None  # the probe out, unanswered

    def heard(self, now: float) -> None:
        """The gateway sent something: it is alive, and all we wrote is being answered."""
        self.heard_at = now
        self._sent_at_heard = self._sent_total
        self._waiting_since = None
        self.probe_at = None

    def counted(self, now: float, sent_total: int) -> None:
        """The library's count of messages written so far (taken whenever convenient)."""
        if sent_total > self._sent_total:
            self.written_at = now
            if self._waiting_since is None:
                self._waiting_since = now
        self._sent_total = max(self._sent_total, sent_total)

    def unanswered(self) -> int:
        return self._sent_total - self._sent_at_heard

    def probe_due(self, now: float) -> str | None:
        """Why a probe should go now, or None (also None while one is out)."""
        if self.probe_at is not None:
            return None
        policy = self.policy
        if self.unanswered() >= policy.max_unanswered:
            return f"{self.unanswered()} messages unanswered"
        if self._waiting_since is not None and now - self._waiting_since >= policy.quiet_s:
            return f"no answer for {now - self._waiting_since:.1f} s"
        if now - max(self.heard_at, self.written_at) >= policy.idle_s:
            return "idle"
        return None

    def holding(self, now: float) -> bool:
        """Whether writes wait: a probe is out, or due because writes went unanswered."""
        if self.probe_at is not None:
            return True
        reason = self.probe_due(now)
        return reason is not None and reason != "idle"

    def probe_sent(self, now: float) -> None:
        self.probe_at = now

    def silent(self, now: float) -> bool:
        """A probe has gone unanswered for ``timeout_s``: the gateway is not answering."""
        return self.probe_at is not None and now - self.probe_at >= self.policy.timeout_s

    def silent_s(self, now: float) -> float:
        """How long the gateway has said nothing."""
        return now - self.heard_at

    def wake_in(self, now: float) -> float:
        """Seconds until ``probe_due`` or ``silent`` can next turn true by time alone."""
        policy = self.policy
        if self.probe_at is not None:
            return max(0.0, self.probe_at + policy.timeout_s - now)
        due = max(self.heard_at, self.written_at) + policy.idle_s
        if self._waiting_since is not None:
            due = min(due, self._waiting_since + policy.quiet_s)
        return max(0.0, due - now)
