"""Prometheus metrics of the real-time layer. Channel labels use the family (the part before
the first ``:``), so ``games:nba`` and ``games:mlb`` count as ``games`` and labels stay few."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


def family(channel: str) -> str:
    return channel.partition(":")[0]


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.published = Counter(
            "mainspring_realtime_published_total",
            "Messages published, by channel family.",
            ["channel"],
            registry=registry,
        )
        self.dropped = Counter(
            "mainspring_realtime_dropped_total",
            "Messages dropped for subscribers that fell behind, by channel family.",
            ["channel"],
            registry=registry,
        )
        self.slow_disconnects = Counter(
            "mainspring_realtime_slow_disconnects_total",
            "Subscribers disconnected because they fell behind, by channel family.",
            ["channel"],
            registry=registry,
        )
        self.resyncs = Counter(
            "mainspring_realtime_resyncs_total",
            "Resumes that found the gap older than the history, by channel family.",
            ["channel"],
            registry=registry,
        )
        self.subscribers = Gauge(
            "mainspring_realtime_subscribers",
            "Subscribers connected to this process.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.tail_readers = Gauge(
            "mainspring_realtime_tail_readers",
            "Files tailed by this process: one reader each, however many follow it.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.tail_followers = Gauge(
            "mainspring_realtime_tail_followers",
            "Streams following tailed files in this process.",
            multiprocess_mode="livesum",
            registry=registry,
        )


_metrics: RealtimeMetrics | None = None


def realtime_metrics() -> RealtimeMetrics:
    """This process's real-time metrics, in the default registry."""
    global _metrics
    if _metrics is None:
        _metrics = RealtimeMetrics()
    return _metrics
