"""Structured logs (structlog) and Prometheus metrics for the gateway."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """JSON lines in containers (or when asked), coloured key-value lines on a terminal."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library: render them the same way, quieter.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # A library's `exc_info` as a traceback in text, not as the repr of a tuple.
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.WARNING))


class BridgedFrames(Collector):
    """Frames and bytes bridged each way.

    Counted with plain integers, four additions per call on the hot path, where a Prometheus
    counter takes a lock each time; the event loop is the only writer. Read at scrape time.
    """

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily("ocpp_gateway_frames", "Frames bridged", labels=["direction"])
        frames.add_metric(["in"], self.frames_in)
        frames.add_metric(["out"], self.frames_out)
        size = CounterMetricFamily(
            "ocpp_gateway_frame_bytes", "Bytes of frames bridged", labels=["direction"]
        )
        size.add_metric(["in"], self.bytes_in)
        size.add_metric(["out"], self.bytes_out)
        yield frames
        yield size


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.handshakes = Counter(
            "ocpp_gateway_handshakes", "Opening handshakes by outcome", ["outcome"], registry=r
        )
        self.closes = Counter(
            "ocpp_gateway_closes", "WebSocket closes initiated by the gateway", ["code"], registry=r
        )
        self.connections = Gauge(
            "ocpp_gateway_connections", "Charge points connected now", registry=r
        )
        self.bridged = BridgedFrames()
        r.register(self.bridged)
        self.frames_rejected = Counter(
            "ocpp_gateway_frames_rejected",
            "Frames not forwarded, by direction and reason",
            ["direction", "reason"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "ocpp_gateway_frames_dropped",
            "Accepted frames that could not be delivered, by reason",
            ["direction", "reason"],
            registry=r,
        )
        self.late_farewells = Counter(
            "ocpp_gateway_presence_late_farewells",
            "Offline documents of CPs closed while the broker was away, once it was back: "
            "published, or superseded by a newer document",
            ["result"],
            registry=r,
        )
        self.takeovers = Counter(
            "ocpp_gateway_takeovers",
            "Connections replaced by a newer one for the same charge point",
            ["where"],
            registry=r,
        )
        self.link_lost = Counter(
            "ocpp_gateway_link_lost", "Broker channels lost, by reason", ["reason"], registry=r
        )
        self.frames_resent = Counter(
            "ocpp_gateway_frames_resent",
            "CP frames published again after an unacknowledged attempt (possible duplicates)",
            registry=r,
        )
        self.write_timeouts = Counter(
            "ocpp_gateway_write_timeouts",
            "CPs closed because their socket did not accept a message within the write timeout",
            registry=r,
        )
        self.link_reconnects = Counter(
            "ocpp_gateway_link_reconnects", "Broker channel reconnects that succeeded", registry=r
        )
        self.link_ready = Gauge(
            "ocpp_gateway_link_ready", "1 when the broker is reachable", registry=r
        )
        self.shared_connections = Gauge(
            "ocpp_gateway_shared_connections",
            "Broker connections of the shared link (another opens when each holds "
            "GATEWAY_SHARED_MAX_SUBSCRIPTIONS)",
            registry=r,
        )
        self.admissions_refused = Counter(
            "ocpp_gateway_admissions_refused",
            "Handshakes refused with 503 at once: connection limit or too many in progress",
            ["reason"],
            registry=r,
        )
        self.handshakes_in_flight = Gauge(
            "ocpp_gateway_handshakes_in_flight",
            "Connections admitted whose WebSocket handshake is not over yet",
            registry=r,
        )
        self.accept_queue = Gauge(
            "ocpp_gateway_accept_queue",
            "Connections waiting in the kernel's accept queue (Linux), not accepted yet",
            registry=r,
        )
        self.accept_errors = Counter(
            "ocpp_gateway_accept_errors",
            "accept() failures for lack of file descriptors, by errno",
            ["errno"],
            registry=r,
        )
        self.registry_lookups = Counter(
            "ocpp_gateway_registry_lookups",
            "Registry answers seen by the handshake",
            ["result"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "ocpp_gateway_publish_seconds",
            "Time from a CP frame's arrival to the broker's acknowledgement",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=r,
        )

        self.backpressure = Counter(
            "ocpp_gateway_backpressure",
            "CP frames that waited longer than GATEWAY_BACKPRESSURE_SECONDS for the broker",
            registry=r,
        )
        self.cps_held_back = Gauge(
            "ocpp_gateway_cps_held_back",
            "CPs not being read now because their frame has waited longer than "
            "GATEWAY_BACKPRESSURE_SECONDS for the broker",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
