"""`/metrics` in the Prometheus text format: the agents as the orchestrator last saw them, and the API.

Agent figures come from the ExecutionContext in Redis (each agent's last heartbeat), read at
scrape time, so they are exactly what the dashboard shows:

- `cryptiq_agent_events_processed_total`, `cryptiq_agent_dead_lettered_total` (counters),
  `cryptiq_agent_lag_messages`, `cryptiq_agent_heartbeat_age_seconds`, `cryptiq_agent_up`,
  `cryptiq_agent_last_error` (1 while the agent reports an error);
- `cryptiq_stream_open_intents`, `cryptiq_context_as_of_seconds`.

The API's own: `cryptiq_api_requests_total` and the `cryptiq_api_request_duration_seconds`
histogram per route, `cryptiq_api_logins_total`, `cryptiq_api_commands_total`,
`cryptiq_feed_events_total` (events the API consumed per topic) and
`cryptiq_alerts_total` per severity. Each app has its own registry (no process-global state).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.api.feeds import Views
from orchestrator.context import ExecutionContext

# Request latency buckets in seconds: most reads are a Redis GET or a small Postgres query.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ContextCollector(Collector):
    """Agent and stream metrics from the latest ExecutionContext the API loaded."""

    def __init__(self, views: Views, stale_after_s: float) -> None:
        self.context: ExecutionContext | None = None
        self.now_s: float = 0.0
        self.views = views
        self.stale_after_s = stale_after_s

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["agent", "instance"]
        processed = CounterMetricFamily("cryptiq_agent_events_processed", "Messages an agent handled since "
                                        "its start (its last heartbeat)", labels=labels)
        dead = CounterMetricFamily("cryptiq_agent_dead_lettered", "Messages an agent sent to the dead-letter "
                                   "topic since its start", labels=labels)
        lag = GaugeMetricFamily("cryptiq_agent_lag_messages", "Messages behind the end of the agent's input "
                                "topics", labels=labels)
        age = GaugeMetricFamily("cryptiq_agent_heartbeat_age_seconds", "Seconds since the agent's last "
                                "heartbeat", labels=labels)
        up = GaugeMetricFamily("cryptiq_agent_up", "1 if the agent's last heartbeat is fresh and not stopped",
                               labels=labels)
        error = GaugeMetricFamily("cryptiq_agent_last_error", "1 while the agent reports a last error",
                                  labels=labels)
        intents = GaugeMetricFamily("cryptiq_stream_open_intents", "Intents sent and not yet finished",
                                    labels=["stream"])
        as_of = GaugeMetricFamily("cryptiq_context_as_of_seconds", "Event time of the ExecutionContext")
        alerts = CounterMetricFamily("cryptiq_alerts", "Alerts the API saw on alerts.notifications since "
                                     "start, by severity", labels=["severity"])
        feed = CounterMetricFamily("cryptiq_feed_events", "Events the API consumed since start, by topic",
                                   labels=["topic"])
        context = self.context
        if context is not None:
            as_of.add_metric([], context.as_of / 1000)
            for health in context.agents.values():
                key = [health.agent, health.instance]
                seconds = max(0.0, self.now_s - health.last_heartbeat / 1000)
                processed.add_metric(key, health.processed)
                dead.add_metric(key, health.dead_lettered)
                if health.lag is not None:
                    lag.add_metric(key, health.lag)
                age.add_metric(key, seconds)
                fresh = seconds <= self.stale_after_s and health.status not in ("stopped", "draining")
                up.add_metric(key, 1.0 if fresh else 0.0)
                error.add_metric(key, 1.0 if health.last_error else 0.0)
            for stream in context.streams.values():
                intents.add_metric([stream.stream], len(stream.open_intents))
        for severity, count in sorted(self.views.alert_counts.items()):
            alerts.add_metric([severity], count)
        for topic, count in sorted(self.views.consumed.items()):
            feed.add_metric([topic], count)
        yield from (processed, dead, lag, age, up, error, intents, as_of, alerts, feed)


class ApiMetrics:
    """The registry of one app and the instruments its routes update."""

    def __init__(self, views: Views, stale_after_s: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.context = ContextCollector(views, stale_after_s)
        self.registry.register(self.context)
        self.requests = Counter("cryptiq_api_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cryptiq_api_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.logins = Counter("cryptiq_api_logins", "Login attempts by outcome", ["outcome"],
                              registry=self.registry)
        self.commands = Counter("cryptiq_api_commands", "Sensitive actions by action and outcome",
                                ["action", "outcome"], registry=self.registry)
