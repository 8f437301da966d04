"""Prometheus metrics: per-tenant call figures, live service level, daemon health.

Counters and the wait-time histogram are updated as calls change state (fed
by the lifecycle observer). Everything else — calls waiting now, the live
service level, connection states, backlogs — is read at scrape time from the
objects that own that state, so there is no second bookkeeping to drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pbxbridge.core import servicelevel
from pbxbridge.core.lifecycle import CallEvent, CallRecord, EventKind, State
from pbxbridge.tracking.call_board import RECENT, Outcomes

WAIT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds; 20 s is the service-level threshold the centre promises
(:data:`~pbxbridge.core.servicelevel.THRESHOLD_S`) and 5 s the short-abandon limit."""


KEPT_WITHOUT_SCRAPES = timedelta(days=2)
"""How far behind the newest outcome :class:`LiveServiceLevel` forgets when nobody scrapes.

Two days: the windows of any scrape reach back at most a local day (25 h on
the day the clocks go back) and 15 minutes, so forgetting this far behind
changes no figure unless an outcome is stamped almost a day ahead of the
daemon's clock."""


class LiveServiceLevel:
    """Service level over the last 15 minutes and the current local day.

    The definitions are :mod:`pbxbridge.core.servicelevel`'s, the same as the
    report's; "offered" here is every call answered or abandoned in the window.
    The windowing is the supervisor board's
    (:class:`~pbxbridge.tracking.call_board.Outcomes`); unlike the board's
    last 15 minutes, both windows here also count outcomes stamped after the
    scrape's clock (an AMI ``Timestamp`` from a PBX clock slightly ahead).

    Args:
        tz: The time zone that defines "the day".
        threshold_s: Answered within this many seconds counts as in service level.
        short_abandon_s: Abandons shorter than this are left out of "offered"
            (the caller hung up before anyone could have answered).
    """

    def __init__(
        self,
        tz: ZoneInfo,
        threshold_s: float = servicelevel.THRESHOLD_S,
        short_abandon_s: float = servicelevel.SHORT_ABANDON_S,
    ) -> None:
        self.tz = tz
        self._outcomes = Outcomes(threshold_s=threshold_s, short_abandon_s=short_abandon_s)

    @property
    def threshold_s(self) -> float:
        """Answered within this many seconds counts as in service level."""
        return self._outcomes.threshold_s

    @property
    def short_abandon_s(self) -> float:
        """Abandons shorter than this are left out of "offered"."""
        return self._outcomes.short_abandon_s

    def add(self, at: datetime, tenant: str, answered: bool, wait_s: float) -> None:
        """Record an answered or abandoned call.

        Args:
            at: When it was answered or abandoned.
            tenant: Tenant id.
            answered: True for answered, False for abandoned.
            wait_s: Seconds waited.
        """
        # Bounded without scrapes too (no /metrics port): a scrape forgets more.
        self._outcomes.forget_before(at - KEPT_WITHOUT_SCRAPES)
        self._outcomes.add(tenant, at, answered=answered, wait_s=wait_s)

    def figures(self, now: datetime) -> dict[tuple[str, str], tuple[float | None, float | None]]:
        """Service level per ``(tenant, window)``.

        Args:
            now: The current instant.

        Returns:
            ``(answered definition, offered definition)`` as ratios 0..1 (None
            without calls) for windows ``15m`` and ``day``; tenant ``""`` is all.
        """
        day_start = datetime.combine(now.astimezone(self.tz).date(), datetime.min.time(), self.tz)
        # Forget what no window needs any more (the deque stays one day long).
        self._outcomes.forget_before(min(day_start, now - RECENT))
        windows = {"15m": now - RECENT, "day": day_start}
        out: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        for window, since in windows.items():
            for key, tally in self._outcomes.tally(since).items():
                out[(key, window)] = (tally.sl_answered().ratio(), tally.sl_offered().ratio())
        return out


class CallMetrics:
    """Per-tenant call counters, fed with lifecycle changes.

    Args:
        registry: Where to register.
        live: The live service level to feed.
    """

    def __init__(self, registry: CollectorRegistry, live: LiveServiceLevel) -> None:
        self.live = live
        self.routed = Counter(
            "pbxbridge_calls_routed",
            "Calls routed, by tenant and action.",
            ["tenant", "action"],
            registry=registry,
        )
        self.offered = Counter(
            "pbxbridge_calls_offered", "Calls that joined a queue.", ["tenant"], registry=registry
        )
        self.answered = Counter(
            "pbxbridge_calls_answered",
            "Calls answered by an agent.",
            ["tenant"],
            registry=registry,
        )
        self.abandoned = Counter(
            "pbxbridge_calls_abandoned",
            "Calls abandoned while waiting.",
            ["tenant"],
            registry=registry,
        )
        self.wait = Histogram(
            "pbxbridge_wait_seconds",
            "Time callers waited until answer or abandon.",
            ["tenant", "outcome"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )

    def observe(self, record: CallRecord, event: CallEvent | None) -> None:
        """Update counters for one lifecycle change.

        Args:
            record: The record after the change.
            event: The event that caused it (``None``: the call was just routed).
        """
        tenant = record.decision.tenant or "unknown"
        if event is None:
            self.routed.labels(tenant, record.decision.action.value).inc()
            return
        state = record.state
        if event.kind is EventKind.JOIN and state is State.QUEUED:
            self.offered.labels(tenant).inc()
        elif event.kind is EventKind.CONNECT and state is State.ANSWERED:
            wait = record.waited_s(event.at)
            self.answered.labels(tenant).inc()
            self.wait.labels(tenant, "answered").observe(wait)
            self.live.add(event.at, tenant, True, wait)
        elif state is State.ABANDONED:
            wait = record.waited_s(event.at)
            self.abandoned.labels(tenant).inc()
            self.wait.labels(tenant, "abandoned").observe(wait)
            self.live.add(event.at, tenant, False, wait)


GaugeSource = Callable[[], Iterable[tuple[str, dict[str, str], float]]]


class ScrapeCollector(Collector):
    """Gauges read at scrape time from a function.

    Args:
        source: Returns ``(name, labels, value)`` triples; the name picks the
            family in ``help_texts``.
        help_texts: Family name to help text.
    """

    def __init__(self, source: GaugeSource, help_texts: dict[str, str]) -> None:
        self._source = source
        self._help = help_texts

    def collect(self) -> Iterable[Metric]:
        """Build the gauge families.

        Yields:
            One family per name in ``help_texts``.
        """
        families: dict[str, GaugeMetricFamily] = {}
        label_names: dict[str, list[str]] = {}
        for name, labels, value in self._source():
            if name not in families:
                label_names[name] = sorted(labels)
                families[name] = GaugeMetricFamily(
                    name, self._help.get(name, name), labels=label_names[name]
                )
            families[name].add_metric([labels[k] for k in label_names[name]], value)
        yield from families.values()


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format.

    Args:
        registry: The registry.

    Returns:
        The exposition text.
    """
    return generate_latest(registry)
