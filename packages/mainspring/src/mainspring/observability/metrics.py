"""Prometheus metrics for requests and for the runtime, in one process or across workers.

With several workers every process writes its samples to files in a directory named by
``PROMETHEUS_MULTIPROC_DIR``; /metrics merges them. prometheus-client picks its storage when a
metric is created, so the runner calls :func:`prepare_multiprocess_dir` before the app is
imported and workers are forked. Without the variable, metrics live in the default registry.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from mainspring.observability.run_dir import RunDir, remove_stale_run_dirs
from mainspring.paths import private_dir
from mainspring.services.state import ServiceState

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
"""Any other method is counted as "other": clients choose methods, and labels must stay few."""

HTTP_DURATION = "mainspring_http_request_duration_seconds"
HTTP_DURATION_HELP = "Time to answer an HTTP request, by route template and status class."
HTTP_IN_FLIGHT = "mainspring_http_requests_in_flight"
HTTP_IN_FLIGHT_HELP = "HTTP requests being answered now."
DURATION_BUCKETS = Histogram.DEFAULT_BUCKETS
BUCKET_LABELS = [floatToGoString(bound) for bound in DURATION_BUCKETS]  # type: ignore[no-untyped-call]

TICK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, float("inf"))


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)


class HttpMetrics(Collector):
    """What the request middleware records, in one process.

    The numbers are plain Python ones, read by a collector when the metrics are scraped: a
    request costs a bisect and a few additions, no lock and no call into prometheus-client
    (the samples are the same as a `Histogram` and a `Gauge` would give, less ``_created``).
    With several workers, :func:`http_metrics` gives a `MultiprocessHttpMetrics` instead.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._in_flight: dict[str, int] = {}
        self._series: dict[tuple[str, str, str], _Durations] = {}
        self._by_status: dict[tuple[str, str, int], _Durations] = {}
        """`_series` by (method, route, status), so a request does not build its status class."""
        registry.register(self)

    def request_started(self, method: str) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._in_flight[method] = self._in_flight.get(method, 0) + 1

    def request_finished(self, method: str, route: str, status: int, duration_s: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._in_flight[method] = self._in_flight.get(method, 0) - 1
        series = self._by_status.get((method, route, status))
        if series is None:
            labels = (method, route, _status_class(status))
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = _Durations()
            self._by_status[method, route, status] = series
        series.counts[bisect_left(DURATION_BUCKETS, duration_s)] += 1
        series.total += duration_s

    def describe(self) -> Iterable[Metric]:
        return _http_families([], [])

    def collect(self) -> Iterable[Metric]:
        # Scraped from another thread: copy the dicts before walking them.
        return _http_families(list(self._series.items()), list(self._in_flight.items()))


def _http_families(
    series: list[tuple[tuple[str, str, str], _Durations]], in_flight: list[tuple[str, int]]
) -> list[Metric]:
    durations = HistogramMetricFamily(
        HTTP_DURATION, HTTP_DURATION_HELP, labels=["method", "route", "status_class"]
    )
    for labels, one in series:
        counts = accumulate(one.counts)
        buckets = [
            (bound, float(count)) for bound, count in zip(BUCKET_LABELS, counts, strict=True)
        ]
        durations.add_metric(labels, buckets, one.total)
    gauge = GaugeMetricFamily(HTTP_IN_FLIGHT, HTTP_IN_FLIGHT_HELP, labels=["method"])
    for method, count in in_flight:
        gauge.add_metric([method], count)
    return [durations, gauge]


class _Durations:
    """One histogram series: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(DURATION_BUCKETS)
        self.total = 0.0


class MultiprocessHttpMetrics:
    """`HttpMetrics` across workers: prometheus-client's metrics, which keep their samples
    in the files /metrics merges. Label children are cached so a request costs two dict
    lookups and prometheus-client's own increments."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._duration = Histogram(
            HTTP_DURATION,
            HTTP_DURATION_HELP,
            ["method", "route", "status_class"],
            registry=registry,
        )
        self._in_flight = Gauge(
            HTTP_IN_FLIGHT,
            HTTP_IN_FLIGHT_HELP,
            ["method"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._in_flight_by_method: dict[str, Gauge] = {}
        self._duration_by_labels: dict[tuple[str, str, int], Histogram] = {}

    def request_started(self, method: str) -> None:
        self._in_flight_child(method).inc()

    def request_finished(self, method: str, route: str, status: int, duration_s: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._in_flight_child(method).dec()
        key = (method, route, status)
        child = self._duration_by_labels.get(key)
        if child is None:
            child = self._duration_by_labels[key] = self._duration.labels(
                method, route, _status_class(status)
            )
        child.observe(duration_s)

    def _in_flight_child(self, method: str) -> Gauge:
        method = method if method in HTTP_METHODS else "other"
        child = self._in_flight_by_method.get(method)
        if child is None:
            child = self._in_flight_by_method[method] = self._in_flight.labels(method)
        return child


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


SERVICE_STATE = "mainspring_service_state"
SERVICE_STATE_HELP = "1 for the state a service is in, 0 for the others."
TICK_DURATION = "mainspring_tick_duration_seconds"
TICK_DURATION_HELP = "Time a loop tick took, failed or not."
TICK_FAILURES = "mainspring_tick_failures"
TICK_FAILURES_HELP = "Loop ticks that raised or timed out."
TICK_BUCKET_LABELS = [floatToGoString(bound) for bound in TICK_BUCKETS]  # type: ignore[no-untyped-call]
STATES = tuple(state.value for state in ServiceState)


class RuntimeMetrics:
    """What the supervisor, the loops and the loop watchdog record.

    In one process the service states and the tick series are plain Python values read
    by a collector at scrape time (the samples a `Gauge`, a `Histogram` and a `Counter`
    would give): ten thousand services cost no label children, locks or value objects.
    With several workers they are prometheus-client's metrics, whose files /metrics merges.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._series: _ServiceSeries | _MultiprocessServiceSeries = (
            _ServiceSeries(registry)
            if multiprocess_dir() is None
            else _MultiprocessServiceSeries(registry)
        )
        self._restarts = Counter(
            "mainspring_service_restarts",
            "Times a service was restarted after it stopped or crashed.",
            ["service"],
            registry=registry,
        )
        self._lease_held = Gauge(
            "mainspring_lease_held",
            "1 while this process holds the service's singleton lease; summed across workers.",
            ["service"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._loop_lag = Histogram(
            "mainspring_event_loop_lag_seconds",
            "Delay before the event loop ran the watchdog's heartbeat.",
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        self._loop_blocked = Counter(
            "mainspring_event_loop_blocked",
            "Times the event loop did not answer within the watchdog's threshold.",
            registry=registry,
        )
        self.service_state = self._series.service_state
        self.tick_finished = self._series.tick_finished

    def service_restarted(self, service: str) -> None:
        self._restarts.labels(service).inc()

    def lease_held(self, service: str, held: bool) -> None:
        self._lease_held.labels(service).set(1 if held else 0)

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)

    def loop_blocked(self) -> None:
        self._loop_blocked.inc()


class _Ticks:
    """One loop's tick series: a count per bucket (not cumulative), the sum, the failures."""

    __slots__ = ("counts", "created", "failures", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(TICK_BUCKETS)
        self.total = 0.0
        self.failures = 0
        self.created = time.time()


class _ServiceSeries(Collector):
    """Service states and tick series of one process, read when the metrics are scraped."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._states: dict[str, str] = {}
        self._ticks: dict[tuple[str, str], _Ticks] = {}
        registry.register(self)

    def service_state(self, service: str, state: str) -> None:
        self._states[service] = state

    def tick_finished(self, service: str, loop: str, duration_s: float, failed: bool) -> None:
        ticks = self._ticks.get((service, loop))
        if ticks is None:
            ticks = self._ticks[service, loop] = _Ticks()
        ticks.counts[bisect_left(TICK_BUCKETS, duration_s)] += 1
        ticks.total += duration_s
        if failed:
            ticks.failures += 1

    def describe(self) -> Iterable[Metric]:
        return _service_families([], [])

    def collect(self) -> Iterable[Metric]:
        # Scraped from another thread: copy the dicts before walking them.
        return _service_families(list(self._states.items()), list(self._ticks.items()))


def _service_families(
    states: list[tuple[str, str]], ticks: list[tuple[tuple[str, str], _Ticks]]
) -> list[Metric]:
    gauge = GaugeMetricFamily(SERVICE_STATE, SERVICE_STATE_HELP, labels=["service", "state"])
    for service, current in states:
        for state in STATES:
            gauge.add_metric([service, state], 1 if state == current else 0)
    durations = HistogramMetricFamily(TICK_DURATION, TICK_DURATION_HELP, labels=["service", "loop"])
    failures = CounterMetricFamily(TICK_FAILURES, TICK_FAILURES_HELP, labels=["service", "loop"])
    created = prometheus_metrics._use_created
    for labels, one in ticks:
        counts = accumulate(one.counts)
        buckets = [
            (bound, float(count)) for bound, count in zip(TICK_BUCKET_LABELS, counts, strict=True)
        ]
        durations.add_metric(labels, buckets, one.total)
        if created:
            durations.samples.append(
                Sample(
                    f"{TICK_DURATION}_created",
                    {"service": labels[0], "loop": labels[1]},
                    one.created,
                )
            )
        failures.add_metric(labels, one.failures, created=one.created if created else None)
    return [gauge, durations, failures]


class _MultiprocessServiceSeries:
    """`_ServiceSeries` across workers: prometheus-client's metrics, label children cached."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._state = Gauge(
            SERVICE_STATE,
            SERVICE_STATE_HELP,
            ["service", "state"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._tick_duration = Histogram(
            TICK_DURATION,
            TICK_DURATION_HELP,
            ["service", "loop"],
            registry=registry,
            buckets=TICK_BUCKETS,
        )
        self._tick_failures = Counter(
            TICK_FAILURES, TICK_FAILURES_HELP, ["service", "loop"], registry=registry
        )
        self._ticks: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def service_state(self, service: str, state: str) -> None:
        for known in STATES:
            self._state.labels(service, known).set(1 if known == state else 0)

    def tick_finished(self, service: str, loop: str, duration_s: float, failed: bool) -> None:
        children = self._ticks.get((service, loop))
        if children is None:
            children = self._ticks[service, loop] = (
                self._tick_duration.labels(service, loop),
                self._tick_failures.labels(service, loop),
            )
        children[0].observe(duration_s)
        if failed:
            children[1].inc()


_http: HttpMetrics | MultiprocessHttpMetrics | None = None
_runtime: RuntimeMetrics | None = None


def http_metrics() -> HttpMetrics | MultiprocessHttpMetrics:
    """This process's request metrics, in the default registry (shared across workers in
    multiprocess mode)."""
    global _http
    if _http is None:
        _http = HttpMetrics() if multiprocess_dir() is None else MultiprocessHttpMetrics()
    return _http


def runtime_metrics() -> RuntimeMetrics:
    """This process's runtime metrics, in the default registry."""
    global _runtime
    if _runtime is None:
        _runtime = RuntimeMetrics()
    return _runtime


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics text of this process, or of every worker in multiprocess mode, and its
    content type (OpenMetrics when `accept` asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(collecting_registry()), content_type


def collecting_registry() -> CollectorRegistry:
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def prepare_multiprocess_dir(path: Path) -> None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at `path`, for this process and the workers it forks
    or spawns.

    Call it before the app is imported: metrics created earlier stay in memory.
    """
    if _http is not None or _runtime is not None:
        raise RuntimeError(
            "metrics were created before prepare_multiprocess_dir(); "
            "call it before importing the app"
        )
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus-client chose its value storage when it was imported; choose again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


@contextmanager
def multiprocess_metrics(base: Path | None = None) -> Iterator[Path]:
    """A fresh directory for this run's worker metrics, in use for the length of the block
    (see :func:`prepare_multiprocess_dir`) and removed after by this process only: a forked
    worker that leaves the block on its way out leaves the directory to the others.

    The directory lives under `base` (default ``$TMPDIR/mainspring-<uid>/metrics``), where
    the directories of killed runs, which no live process holds, are removed first.
    """
    base = base if base is not None else private_dir("metrics")
    remove_stale_run_dirs(base)
    with RunDir.create(base) as run_dir:
        prepare_multiprocess_dir(run_dir.path)
        try:
            yield run_dir.path
        finally:
            if os.environ.get(MULTIPROC_ENV) == str(run_dir.path):
                del os.environ[MULTIPROC_ENV]


def mark_worker_dead(pid: int) -> None:
    """For gunicorn's ``child_exit`` hook: drop the dead worker's live gauges (in-flight
    requests, service states, leases); its counters and histograms still count."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
