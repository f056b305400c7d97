"""The embedded broker's own floor: one bare hop through Tansu, and how it slows as batches pile up.

    python benchmarks/broker.py [--quick]

Every agent-graph figure (orchestrator.py, execution.py) is a chain of hops through the broker: a
producer hands a record to Tansu, a consumer's fetch brings it back. This measures one hop with
nothing else in it: real candles published on the real `market.candles` topic by a producer
configured as every agent's (`new_producer`), read back by one consumer with the agents' fetch wait
(`agents.fetch_max_wait_ms`); no agent, no decoding, no second hop. Each rate runs for 30 s on a
broker started afresh.

Rows, per rate: `bare_hop_at_<rate>_p50|p99`, ms from a candle's publish to its read, over the
run's last 5 s; the reference is the same percentile over the run's first 5 s, so the ratio is how
much slower one hop has become once the partitions hold the run's record batches. Each row also
carries the percentiles of every 5 s window (`windows`). The issue targets are beside them:
candle -> intent is three hops (issue 5, p99 < 20 ms at 1,000/s), candle -> fill five (issue 6,
p99 < 50 ms).

Why a hop slows (README, the embedded broker's quirks): Tansu 0.6.0's memory storage answers a
fetch by listing every record batch stored in the partition (`fetch` in tansu-storage's
dynostore.rs), and it cannot drop old records (its DeleteRecords is unimplemented: the request
panics the broker thread), so a fetch costs more with everything ever published to the partition.

`--quick`: 10 s per rate in 2 s windows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import _common as common  # first: it takes this folder off sys.path

import infra
from config import Settings
from topics.admin import ensure_topics
from topics.registry import MARKET_CANDLES

BENCH = "broker"
RATES = (100, 1000)
TARGETS = ("candle -> intent, three hops: p99 < 20 ms at 1,000 candles/s (issue 5); "
           "candle -> fill, five hops: p99 < 50 ms (issue 6)")


@dataclass(frozen=True, slots=True)
class Plan:
    seconds: int
    window_s: int


FULL, QUICK = Plan(seconds=30, window_s=5), Plan(seconds=10, window_s=2)


async def one_hop(settings: Settings, endpoints: infra.Endpoints, rate: int, plan: Plan,
                  feed: common.CandleFeed) -> list[tuple[float, float]]:
    """(seconds since the first send, seconds to the read) of every candle published at `rate`."""
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    await ensure_topics(kwargs, default_partitions=settings.kafka.default_partitions)
    messages = feed.take(rate * plan.seconds)
    reader = common.Collector(kwargs, [MARKET_CANDLES.name],
                              fetch_max_wait_ms=settings.agents.fetch_max_wait_ms)
    producer = common.new_producer(kwargs, settings.agents.producer_linger_ms)
    await reader.start()
    await producer.start()
    try:
        published = await common.publish(producer, messages, rate)
        await reader.wait_outputs(MARKET_CANDLES.name, published.sent, len(messages))
    finally:
        await producer.stop()
        await reader.stop()
    sent, first = published.sent, published.first
    return [(sent[a.flow] - first, a.at - sent[a.flow]) for a in reader.of(MARKET_CANDLES.name, sent)]


def windows(samples: list[tuple[float, float]], plan: Plan) -> list[dict[str, Any]]:
    """p50 and p99 (ms) of the hops whose candle was sent in each `window_s` of the run (the last
    window also takes any candle a slow producer sent after the run's planned end)."""
    count = plan.seconds // plan.window_s
    by_window: list[list[float]] = [[] for _ in range(count)]
    for at, latency in samples:
        by_window[min(int(at // plan.window_s), count - 1)].append(latency)
    return [{"from_s": i * plan.window_s, "p50": common.ms(common.percentile(latencies, 50)),
             "p99": common.ms(common.percentile(latencies, 99)), "samples": len(latencies)}
            for i, latencies in enumerate(by_window) if latencies]


def rows_of(rate: int, samples: list[tuple[float, float]], plan: Plan,
            settings: Settings) -> list[dict[str, Any]]:
    first = [latency for at, latency in samples if at < plan.window_s]
    last = [latency for at, latency in samples if at >= plan.seconds - plan.window_s]  # as `windows`
    rows = []
    for q in (50, 99):
        value, reference = common.percentile(last, q), common.percentile(first, q)
        rows.append({
            "bench": BENCH, "metric": f"bare_hop_at_{rate}_p{q}", "value": common.ms(value), "unit": "ms",
            "reference": f"the same hop in the run's first {plan.window_s} s",
            "reference_value": common.ms(reference), "ratio": round(value / reference, 3),
            "rate": rate, "seconds": plan.seconds, "samples": len(last), "reference_samples": len(first),
            "windows": windows(samples, plan), "fetch_max_wait_ms": settings.agents.fetch_max_wait_ms,
            "producer_linger_ms": settings.agents.producer_linger_ms,
            "partitions": settings.kafka.default_partitions, "targets": TARGETS, "machine": common.machine(),
        })
    return rows


async def measure(settings: Settings, endpoints: infra.Endpoints, plan: Plan) -> list[dict[str, Any]]:
    feed = common.CandleFeed()
    rows = []
    for i, rate in enumerate(RATES):
        if i:  # each rate on a broker that holds nothing yet
            endpoints = await asyncio.to_thread(common.restart_servers, settings)
        rows += rows_of(rate, await one_hop(settings, endpoints, rate, plan, feed), plan, settings)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="10 s per rate, in 2 s windows")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    with common.embedded_servers("cryptiq-bench-broker-") as (settings, endpoints):
        common.emit(asyncio.run(measure(settings, endpoints, plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
