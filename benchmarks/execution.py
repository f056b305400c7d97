"""Candle -> intent -> risk decision -> paper fill latency, and candles/s, through the agent graph.

    python benchmarks/execution.py [--quick]

The technical, orchestrator, risk and execution agents run in one child process, hosted as
`cryptiq run` hosts them, on embedded Tansu, Redis and Postgres (decisions, orders, fills and
the ledger are written there as usual). The orchestrator runs sma_cross(2, 3) in every regime
(a strategies.yaml written for the run); risk sizes each intent against the paper account and
execution places approved ones on the paper venue. This process publishes real Binance 1m
candles of six symbols, one of each in turn, at a steady 100 and 1,000 candles/s (candle i is
sent at t0 + i / rate), and times, from a candle's publish, the arrival of what it caused — all
matched by `correlation_id`, the event id of the candle that started the flow:

- `candle_to_decision_at_<rate>_p50|p99`: the `risk.decisions` event (candle -> technical ->
  signal -> orchestrator -> intent -> risk);
- `candle_to_fill_at_<rate>_p50|p99`: the first `execution.reports` fill of the order. The paper
  venue fills a market order at the open of the instrument's next candle (no look-ahead), so a
  fill has two causes: candle N, whose decision placed the order (the order's first `orders`
  event carries N's correlation id), and candle M, which filled it (the fill carries M's). The
  figure is fill arrival - publish(N) - max(0, publish(M) - order arrival): the whole time minus
  the wait for the market's next candle, i.e. what a user waits if that candle is already there.
  A fill counts in the phase of candle N even when candle M belongs to the next phase (orders
  placed last are filled by the next phase's first candles; dropping them would drop the slowest
  orders of an overloaded phase). The same rows carry the candle -> order-placed percentiles;
- `flood_throughput`: candles/s published as fast as possible, until every agent's heartbeats
  show nothing left to read (candles, signals, intents, decisions, fills), to 0.25 s.

Reference, in the same run: the echo agent alone in the same kind of process, fed the same
candles at the same rates (candle -> `diagnostics.echo`, one hop). The echo runs second, after
the graph's process has stopped, on embedded servers started afresh (as in orchestrator.py).
Issue target: p99 under 50 ms end to end at 1,000 candles/s. `--quick`: 0.5 s warm-up, 2 s per
rate, a 1,000-candle flood (default: 5 s, 30 s, 20,000).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import _common as common  # first: it takes this folder off sys.path (this file shadows `execution`)

from config import Settings
from infra import Endpoints
from topics.registry import DIAGNOSTICS_ECHO, EXECUTION_REPORTS, ORDERS, RISK_DECISIONS, STRATEGY_INTENTS

BENCH = "execution"
AGENTS = ("technical", "orchestrator", "risk", "execution")
OUTPUTS = (STRATEGY_INTENTS.name, RISK_DECISIONS.name, ORDERS.name, EXECUTION_REPORTS.name)
FAST, SLOW = 2, 3
TARGET = "p99 < 50 ms end to end (candle -> paper fill) at 1,000 candles/s"


def fills(run: common.Run, phase: str) -> tuple[list[float], list[float], int]:
    """(candle -> fill seconds, candle -> order placed seconds, fills that waited for their candle)."""
    sent_all, sent = run.sent(), run.phase(phase).sent
    placed: dict[str, tuple[str, float]] = {}  # client order id -> (candle N, arrival of its creation)
    for arrival in run.collector.arrivals:
        order = arrival.body["payload"]
        if arrival.topic == ORDERS.name and order["seq"] == 0 and arrival.flow in sent_all:
            placed.setdefault(order["client_order_id"], (arrival.flow, arrival.at))
    to_order = [at - sent[flow] for flow, at in placed.values() if flow in sent]
    to_fill: list[float] = []
    waited = 0
    filled: set[str] = set()
    for arrival in run.collector.arrivals:
        if arrival.topic != EXECUTION_REPORTS.name:
            continue
        cid = arrival.body["payload"]["client_order_id"]
        if cid in filled or cid not in placed:
            continue
        filled.add(cid)
        decided_by, order_at = placed[cid]
        if decided_by not in sent or arrival.flow not in sent_all:
            continue  # decided in another phase
        wait = max(0.0, sent_all[arrival.flow] - order_at)
        waited += wait > 0
        to_fill.append(arrival.at - sent[decided_by] - wait)
    return to_fill, to_order, waited


async def measure(settings: Settings, endpoints: Endpoints, plan: common.Plan) -> list[dict[str, Any]]:
    phases = common.phases_of(plan, common.CandleFeed())
    strategies = common.fast_cross_strategies(settings.home / "strategies.yaml", FAST, SLOW)
    graph = await common.run_phases(
        settings, endpoints, __file__, AGENTS, phases, outputs=OUTPUTS,
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
        reference = common.echo_latencies(echo, name)
        rate_fields = common.rate_fields(graph, echo, name)
        intents = graph.collector.of(STRATEGY_INTENTS.name, sent)
        decisions = graph.collector.of(RISK_DECISIONS.name, sent)
        approved = sum(d.body["payload"]["verdict"] != "rejected" for d in decisions)
        rows += common.latency_rows(
            BENCH, f"candle_to_decision_at_{rate}", [d.at - sent[d.flow] for d in decisions], reference,
            intents=len(intents), approved=approved, **rate_fields, **fields,
        )
        to_fill, to_order, waited = fills(graph, name)
        rows += common.latency_rows(
            BENCH, f"candle_to_fill_at_{rate}", to_fill, reference,
            order_placed_p50_ms=common.ms(common.percentile(to_order, 50)),
            order_placed_p99_ms=common.ms(common.percentile(to_order, 99)), orders=len(to_order),
            fills_that_waited_for_their_candle=waited, **rate_fields, **fields,
        )
    rows.append(common.flood_row(BENCH, graph, echo, **fields))
    return rows


def main() -> int:
    return common.graph_main(__doc__, "execution", measure)


if __name__ == "__main__":
    sys.exit(main())
