"""Candle -> intent latency and candles/s through technical -> orchestrator on the embedded broker.

    python benchmarks/orchestrator.py [--quick]

The technical and orchestrator agents run in one child process, hosted as `cryptiq run` hosts
them, on embedded Tansu, Redis and Postgres. The orchestrator decides on a candle once it has
both the candle and the technical agent's `signals.technical` event for it (the default
`orchestrator.signals: true`), so an intent's path is candle -> technical -> signal ->
orchestrator -> `strategy.intents`. It runs sma_cross(2, 3) in every regime (a strategies.yaml
written for the run), so about one candle in six causes an intent. This process publishes real
Binance 1m candles of six symbols, one of each in turn:

- `candle_to_intent_at_<rate>_p50|p99`: at a steady 100 and 1,000 candles/s (candle i is sent at
  t0 + i / rate; the achieved rate is reported), ms from a candle's publish to the arrival of the
  `strategy.intents` event it caused, matched by the intent's `correlation_id` (the candle's
  event id);
- `flood_throughput`: candles/s when they are published as fast as possible, until both agents'
  heartbeats show nothing left to read (to 0.25 s).

Reference, in the same run: the echo agent alone in the same kind of process, fed the same
candles at the same rates: its candle -> `diagnostics.echo` latency (the bare cost of one hop
through the runtime) and its flood rate. The echo runs second, after the graph's process has
stopped, on embedded servers started afresh (Tansu's fetches slow down as batches pile up, so a
reference run on the graph's leftovers would be measured on a slower broker). Issue target: p99
under 20 ms at 1,000 candles/s. `--quick`: 0.5 s warm-up, 2 s per rate, a 1,000-candle flood
(default: 5 s, 30 s, 20,000).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import _common as common  # first: it takes this folder off sys.path (this file shadows `orchestrator`)

from config import Settings
from infra import Endpoints
from topics.registry import DIAGNOSTICS_ECHO, STRATEGY_INTENTS

BENCH = "orchestrator"
AGENTS = ("technical", "orchestrator")
FAST, SLOW = 2, 3
TARGET = "p99 < 20 ms at 1,000 candles/s"


async def measure(settings: Settings, endpoints: Endpoints, plan: common.Plan) -> list[dict[str, Any]]:
    phases = common.phases_of(plan, common.CandleFeed())
    strategies = common.fast_cross_strategies(settings.home / "strategies.yaml", FAST, SLOW)
    graph = await common.run_phases(
        settings, endpoints, __file__, AGENTS, phases, outputs=[STRATEGY_INTENTS.name],
        env={"CRYPTIQ_ORCHESTRATOR_STRATEGIES_PATH": str(strategies)},
    )
    endpoints = await asyncio.to_thread(common.restart_servers, settings)  # each part on a fresh broker
    echo = await common.run_phases(
        settings, endpoints, __file__, ["echo"], common.again(phases), outputs=[DIAGNOSTICS_ECHO.name]
    )
    fields = {"agents": "+".join(AGENTS), "strategy": f"sma_cross({FAST}, {SLOW}) in every regime",
              "symbols": len(common.SYMBOLS), "target": TARGET, "machine": common.machine()}
    rows = []
    for rate in plan.rates:
        name = str(rate)
        sent = graph.phase(name).sent
        intents = [a.at - sent[a.flow] for a in graph.collector.of(STRATEGY_INTENTS.name, sent)]
        rows += common.latency_rows(
            BENCH, f"candle_to_intent_at_{rate}", intents, common.echo_latencies(echo, name),
            **common.rate_fields(graph, echo, name), **fields,
        )
    rows.append(common.flood_row(BENCH, graph, echo, **fields))
    return rows


def main() -> int:
    return common.graph_main(__doc__, "orchestrator", measure)


if __name__ == "__main__":
    sys.exit(main())
