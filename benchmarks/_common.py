"""What the agent-graph latency benchmarks share (`orchestrator.py`, `execution.py`).

- `embedded_servers`: Tansu, Redis and Postgres under a temporary CRYPTIQ_HOME, stopped after;
- `CandleFeed`: real 1-minute candles of several symbols, encoded as the market_data agent
  publishes them, each handed out once (stateful agents ignore candles they have seen);
- `host_main` / `spawn_host`: several agents in one process, hosted as `cryptiq run` hosts them,
  in a child process (so the benchmark's producer and clock do not share the agents' event loop),
  whose consumer groups `skip_to_end` first sets at the end of their topics;
- `publish`: a paced producer (candle i is sent at t0 + i / rate) or a flood (no pacing);
- `Collector`: reads output topics and heartbeats from their end and stamps each arrival, so a
  latency is an output's arrival minus the publish time of the candle named by its
  `correlation_id` (the envelope's link to the first event of its flow): matched, never guessed;
- `run_phases`: warm-up, the paced rates and a flood against one host process;
- `latency_rows`, `emit`, `machine`: the house JSON-lines format.

Not a benchmark: run as a script it does nothing (`make bench` runs every file in this folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This folder holds orchestrator.py and execution.py, named like the packages they measure: a script
# here imports this module first, and from then on imports must find the packages, not the scripts.
if any(Path(entry or ".").resolve() == Path(__file__).resolve().parent for entry in sys.path):
    sys.path[:] = [e for e in sys.path if Path(e or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

import infra
from agents.catalog import agent_class
from agents.logs import configure_logging
from agents.market_data.files import read_candles, shared_datasets
from agents.runtime import PRODUCER_MAX_BATCH_BYTES, AgentHost
from config import Settings, load_settings
from topics.admin import ensure_topics
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.recording import log_end_offsets, seek_to_log_end
from topics.registry import AGENTS_HEARTBEAT, DIAGNOSTICS_ECHO, MARKET_CANDLES
from topics.serialization import encode, headers

ONE_MINUTE = "ohlcv/binance_spot_1m_2023-03_2023-05"
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA")
MINUTE_MS = 60_000
# Resolution of "the graph has processed everything" (the flood's end). Not shorter: the orchestrator
# consumes heartbeats too, so they are part of its load.
HEARTBEAT_INTERVAL_S = 0.25
READY_MARKER = "bench host ready"
READY_TIMEOUT_S = 180.0  # start, plus catching up with what earlier phases published
DRAIN_TIMEOUT_S = 300.0
ECHO_REFERENCE = "echo agent alone (cryptiq agent echo: candle -> diagnostics.echo), same candles and rate"


# -- servers -------------------------------------------------------------------------------------

@contextlib.contextmanager
def embedded_servers(prefix: str) -> Iterator[tuple[Settings, infra.Endpoints]]:
    """Settings with a temporary home and the embedded servers started there; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        settings = load_settings().model_copy(update={"home": Path(tmp)})
        # Logs go to stderr (stdout carries only the JSON lines); data-quality warnings would drown it.
        configure_logging(settings.log.model_copy(update={"level": "WARNING"}))
        endpoints = infra.up(settings)
        try:
            yield settings, endpoints
        finally:
            infra.down(settings)


def restart_servers(settings: Settings) -> infra.Endpoints:
    """The embedded servers stopped and started afresh, for the next part of a benchmark.

    Tansu keeps every record batch in memory and a fetch's cost grows with their number (README,
    the embedded broker's quirks), so a part that ran after another would be measured on a slower
    broker than the one before it.
    """
    infra.down(settings)
    return infra.up(settings)


def fast_cross_strategies(path: Path, fast: int, slow: int) -> Path:
    """A strategies.yaml running sma_cross(fast, slow) in every regime: intents are frequent, and no
    regime change switches strategy (hand-off intents would be another kind of sample)."""
    choice = f"{{strategy: sma_cross, params: {{fast: {fast}, slow: {slow}}}}}"
    regimes = ("bull", "bear", "neutral", "high_volatility", "unknown")
    lines = [f"  {regime}: [{choice}]" for regime in regimes]
    head = ["version: 1", f"default: {choice}", "handoff: {mode: keep}", "regimes:"]
    path.write_text("\n".join([*head, *lines, ""]))
    return path


# -- candles -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Message:
    """One encoded candle, ready to send, and the event id its outputs will name."""

    event_id: str
    key: bytes
    value: bytes
    ts: int
    headers: list[tuple[str, bytes]]


class CandleFeed:
    """Real Binance spot 1m candles (Mar-May 2023) of `symbols`, one of each in turn, each given once.

    From ../shared/datasets (CRYPTIQ_SHARED says where else), about 66,000 candles per symbol.
    """

    def __init__(self, symbols: Sequence[str] = SYMBOLS) -> None:
        folder = shared_datasets() / ONE_MINUTE
        self.symbols = [f"{base}/USDT" for base in symbols]
        columns = ["open_time", "open", "high", "low", "close", "volume"]
        self.frames = [read_candles(folder / f"{base}_USDT-1m.csv.gz", timeframe="1m")[columns].to_numpy()
                       for base in symbols]
        self.rows = min(len(frame) for frame in self.frames)
        self.taken = 0

    def take(self, count: int) -> list[Message]:
        """The next `count` candles (each symbol's event time only grows, across calls too)."""
        width = len(self.symbols)
        if self.taken + count > self.rows * width:
            raise ValueError(f"the feed has {self.rows * width - self.taken} candles left, {count} asked")
        out = []
        for i in range(self.taken, self.taken + count):
            open_time, open_, high, low, close, volume = self.frames[i % width][i // width]
            candle = CandleClosed(
                exchange="binance", symbol=self.symbols[i % width], timeframe="1m", open_time=int(open_time),
                close_time=int(open_time) + MINUTE_MS, open=float(open_), high=float(high), low=float(low),
                close=float(close), volume=float(volume),
            )
            env = Envelope.create(candle, key=candle.key, ts=candle.close_time, source="bench")
            out.append(Message(env.event_id, env.key.encode(), encode(env), env.ts, headers(env)))
        self.taken += count
        return out


# -- the agents' process ---------------------------------------------------------------------------

def spawn_host(
    script: str, agents: Sequence[str], home: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`script --host a,b,c` in a child process with CRYPTIQ_HOME=home and `env` added."""
    environ = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_FORMAT="json",
                   CRYPTIQ_AGENTS_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_INTERVAL_S), **env)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, script, "--host", ",".join(agents)], env=environ,
                                stdout=out, stderr=subprocess.STDOUT)


def host_main(agents: str) -> int:
    """The child process: host `agents` (comma-separated) in one process like `cryptiq run`, until SIGTERM."""
    return asyncio.run(_host([name.strip() for name in agents.split(",") if name.strip()]))


async def _host(names: list[str]) -> int:
    settings = load_settings()
    configure_logging(settings.log)
    endpoints = infra.endpoints(settings)
    hosts = [AgentHost(agent_class(name), settings, endpoints) for name in names]
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    began = time.monotonic()
    started: list[AgentHost] = []
    try:
        for host in hosts:
            await host.start()
            started.append(host)
        for host in hosts:
            await host.wait_ready(READY_TIMEOUT_S)
        await _caught_up(hosts)  # nothing to read yet (see skip_to_end); a safety net if there is
        print(json.dumps({"event": READY_MARKER, "after_s": time.monotonic() - began}), flush=True)
        waits = [asyncio.ensure_future(stopping.wait())]
        waits += [asyncio.ensure_future(host.crashed.wait()) for host in hosts]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
    finally:
        for host in reversed(started):
            await host.stop()
    crashed = [f"{host.name}: {host.error}" for host in hosts if host.error is not None]
    if crashed:
        print(json.dumps({"event": "bench host crashed", "errors": crashed}), flush=True)
    return 1 if crashed else 0


async def _caught_up(hosts: list[AgentHost], quiet_s: float = 0.5) -> None:
    """Until every host has read to the end of its partitions and stayed idle for `quiet_s`."""
    quiet_since = None
    while True:
        for host in hosts:
            if host.error is not None:
                raise host.error
        idle = all(host.lag() == 0 and host.idle for host in hosts)
        quiet_since = (quiet_since or time.monotonic()) if idle else None
        if quiet_since is not None and time.monotonic() - quiet_since > quiet_s:
            return
        await asyncio.sleep(0.1)


async def skip_to_end(kwargs: dict[str, Any], agents: Sequence[str]) -> None:
    """Commit each agent's consumer group at the end of the topics it consumes, so that a host started
    now reads only what is published from now on (not what an earlier run of the benchmark sent)."""
    for name in agents:
        ends: dict[TopicPartition, int] = {}
        for spec in agent_class(name).consumes:
            ends |= await log_end_offsets(kwargs, spec.name)
        consumer = AIOKafkaConsumer(**kwargs, group_id=name, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(ends))
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
        finally:
            await consumer.stop()


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds the host took to start and catch up (it logs them itself)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        check_alive(process, log)
        for line in log.read_text().splitlines():
            if READY_MARKER in line and line.startswith("{"):
                return float(json.loads(line)["after_s"])
        time.sleep(0.1)
    raise TimeoutError(f"agents not ready within {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def check_alive(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is not None:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"the agents' process exited with {process.returncode}:\n{tail}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- producing and collecting --------------------------------------------------------------------

def new_producer(kwargs: dict[str, Any], linger_ms: int) -> AIOKafkaProducer:
    """Configured like every agent's producer (the market_data agent publishes candles with it)."""
    return AIOKafkaProducer(**kwargs, acks="all", linger_ms=linger_ms,
                            max_batch_size=PRODUCER_MAX_BATCH_BYTES)


@dataclass
class Published:
    """When each candle was handed to the producer (perf_counter s), and when all were acknowledged."""

    sent: dict[str, float]
    acked_wall_ms: int

    @property
    def first(self) -> float:
        return min(self.sent.values())

    @property
    def achieved_rate(self) -> float:
        span = max(self.sent.values()) - self.first
        return (len(self.sent) - 1) / span if span > 0 else float("inf")


async def publish(producer: AIOKafkaProducer, messages: Sequence[Message], rate: float | None) -> Published:
    """Send candle i at t0 + i / rate (`rate` None: as fast as the producer takes them).

    A send that falls behind its slot goes at once, and the achieved rate is reported. A candle's
    publish time is when it is handed to the producer, which then lingers up to
    `agents.producer_linger_ms` to batch, as every agent's producer does.
    """
    sent: dict[str, float] = {}
    pending = []
    began = time.perf_counter()
    for i, message in enumerate(messages):
        if rate is not None:
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent[message.event_id] = time.perf_counter()
        pending.append(await producer.send(MARKET_CANDLES.name, message.value, key=message.key,
                                           timestamp_ms=message.ts, headers=message.headers))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return Published(sent, time.time_ns() // 1_000_000)


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # perf_counter when the benchmark read it
    topic: str
    body: dict[str, Any]  # the envelope, as JSON

    @property
    def flow(self) -> str:
        """The event id of the flow's first event: for everything here, a candle."""
        return str(self.body["correlation_id"])


@dataclass
class Collector:
    """Reads `topics` and agents.heartbeat from their current end and stamps each arrival."""

    kwargs: dict[str, Any]
    topics: Sequence[str]
    # Short: the probe should see a record as soon as the broker has it (broker.py passes the agents').
    fetch_max_wait_ms: int = 5
    arrivals: list[Arrival] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)  # payloads, with the envelope's ts
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(**self.kwargs, enable_auto_commit=False,
                                          fetch_max_wait_ms=self.fetch_max_wait_ms)
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (*self.topics, AGENTS_HEARTBEAT.name)
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(partitions)
        await seek_to_log_end(self._consumer, partitions)
        self._task = asyncio.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    body = orjson.loads(record.value)
                    if record.topic == AGENTS_HEARTBEAT.name:
                        self.heartbeats.append(body["payload"] | {"ts": body["ts"]})
                    else:
                        self.arrivals.append(Arrival(now, record.topic, body))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    def of(self, topic: str, sent: dict[str, float]) -> list[Arrival]:
        """Arrivals on `topic` whose flow started with one of the candles in `sent`."""
        return [a for a in self.arrivals if a.topic == topic and a.flow in sent]

    async def wait_outputs(self, topic: str, sent: dict[str, float], count: int,
                           process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> float:
        """Until `count` outputs of the `sent` candles are on `topic`; perf_counter of the last one.
        With the agents' `process` (and its `log`), fail at once if it dies meanwhile."""
        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        found, last, scanned = 0, 0.0, 0
        while True:
            arrivals = self.arrivals[scanned:]  # only the new ones: this runs while the agent works
            scanned += len(arrivals)
            for arrival in arrivals:
                if arrival.topic == topic and arrival.flow in sent:
                    found, last = found + 1, max(last, arrival.at)
            if found >= count:
                return last
            if process is not None and log is not None:
                check_alive(process, log)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{found} of {count} outputs on {topic} in {DRAIN_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)

    async def wait_drained(self, agents: Sequence[str], process: subprocess.Popen[bytes], log: Path,
                           after_wall_ms: int) -> float:
        """Until the host `process` has processed everything sent before `after_wall_ms`; returns when
        that was, as perf_counter time, to one heartbeat interval.

        Heartbeats carry each agent's lag (records between its position and the end of its
        partitions). Done is the first heartbeat after `after_wall_ms` at which every agent's
        latest heartbeat shows no lag, confirmed by the next heartbeat of each. (Processed counts
        cannot tell: the orchestrator also consumes heartbeats, so its count never stands still.)
        """
        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        to_perf = time.perf_counter() - time.time()
        instance = f":{process.pid}"
        while True:
            check_alive(process, log)
            beats = [b for b in self.heartbeats if b["agent"] in agents and b["instance"].endswith(instance)
                     and b["ts"] >= after_wall_ms]
            done = _drained_at(sorted(beats, key=lambda b: b["ts"]), agents)
            if done is not None:
                return done / 1000 + to_perf
            if time.perf_counter() > deadline:
                raise TimeoutError(f"agents {', '.join(agents)} not drained within {DRAIN_TIMEOUT_S:.0f} s")
            await asyncio.sleep(HEARTBEAT_INTERVAL_S / 2)

    async def settle(self, quiet_s: float = 0.3) -> None:
        """Until nothing new has arrived for `quiet_s`: outputs already on the broker are read."""
        seen = -1
        while seen != len(self.arrivals):
            seen = len(self.arrivals)
            await asyncio.sleep(quiet_s)


def _drained_at(beats: list[dict[str, Any]], agents: Sequence[str]) -> int | None:
    """The ts of the first heartbeat (in ts order) after which every agent's latest shows no lag and
    so does each one's next; None if there is none yet."""
    latest: dict[str, int] = {}
    for i, beat in enumerate(beats):
        latest[beat["agent"]] = beat["lag"]
        if len(latest) < len(agents) or any(latest.values()):
            continue
        following = {}
        for later in beats[i + 1:]:
            following.setdefault(later["agent"], later["lag"])
        if len(following) == len(agents) and not any(following.values()):
            return int(beat["ts"])
        if len(following) < len(agents):
            return None  # not confirmed yet: ask again when more heartbeats are in
    return None


# -- phases --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Warm-up seconds at the lowest rate, seconds at each steady rate, and candles in the flood."""

    warmup_s: float
    rates: tuple[int, ...]
    seconds: float
    flood: int


QUICK = Plan(warmup_s=0.5, rates=(100, 1000), seconds=2.0, flood=1000)
FULL = Plan(warmup_s=5.0, rates=(100, 1000), seconds=30.0, flood=20_000)


Measure = Callable[[Settings, infra.Endpoints, Plan], Awaitable[list[dict[str, Any]]]]


def graph_main(doc: str, name: str, measure: Measure) -> int:
    """The command line of a benchmark of an agent graph: `[--quick]`, or `--host AGENTS` in the
    child process that hosts the agents; the rows go to stdout as JSON lines."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="2 s per rate and a 1,000-candle flood")
    parser.add_argument("--host", help=argparse.SUPPRESS)  # the agents' child process
    args = parser.parse_args()
    if args.host:
        return host_main(args.host)
    plan = QUICK if args.quick else FULL
    with embedded_servers(f"cryptiq-bench-{name}-") as (settings, endpoints):
        emit(asyncio.run(measure(settings, endpoints, plan)))
    return 0


@dataclass
class Phase:
    """Candles published together: `rate` None is a flood. `end`: when their processing was over."""

    name: str
    rate: float | None
    messages: list[Message]
    published: Published | None = None
    end: float | None = None

    @property
    def sent(self) -> dict[str, float]:
        assert self.published is not None
        return self.published.sent

    @property
    def throughput(self) -> float:
        """Candles per second from the first send until everything they caused was done."""
        assert self.published is not None
        assert self.end is not None
        return len(self.messages) / (self.end - self.published.first)


def phases_of(plan: Plan, feed: CandleFeed) -> list[Phase]:
    """warmup (not reported), one phase per rate, flood; each with new candles from `feed`."""
    low = min(plan.rates)
    phases = [Phase("warmup", low, feed.take(round(low * plan.warmup_s)))]
    phases += [Phase(str(rate), rate, feed.take(round(rate * plan.seconds))) for rate in plan.rates]
    return [*phases, Phase("flood", None, feed.take(plan.flood))]


def again(phases: Sequence[Phase]) -> list[Phase]:
    """The same candles in new, unpublished phases (for the reference run)."""
    return [Phase(p.name, p.rate, p.messages) for p in phases]


@dataclass
class Run:
    """What one host process did: its phases (published, ended) and everything collected."""

    phases: list[Phase]
    collector: Collector
    ready_s: float

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def sent(self) -> dict[str, float]:
        """Every candle's publish time, all phases."""
        return {event_id: at for p in self.phases for event_id, at in p.sent.items()}


async def run_phases(
    settings: Settings, endpoints: infra.Endpoints, script: str, agents: Sequence[str], phases: list[Phase],
    *, outputs: Sequence[str], env: dict[str, str] | None = None,
) -> Run:
    """Host `agents` in a child process, publish each phase, wait until it is processed, stop.

    The echo agent's phases end when every candle's echo is read; any other graph's when its
    agents' heartbeats show no lag (it publishes no output per candle: see `wait_drained`).
    """
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    await ensure_topics(kwargs, default_partitions=settings.kafka.default_partitions)
    log = settings.home / f"{'+'.join(agents)}.log"
    await skip_to_end(kwargs, agents)
    process = spawn_host(script, agents, settings.home, log, env or {})
    echo = list(agents) == ["echo"]
    try:
        ready_s = await asyncio.to_thread(wait_ready, process, log)
        collector = Collector(kwargs, outputs)
        producer = new_producer(kwargs, settings.agents.producer_linger_ms)
        await collector.start()
        await producer.start()
        try:
            for phase in phases:
                phase.published = await publish(producer, phase.messages, phase.rate)
                published = phase.published
                if echo:
                    phase.end = await collector.wait_outputs(DIAGNOSTICS_ECHO.name, published.sent,
                                                             len(published.sent), process, log)
                else:
                    phase.end = await collector.wait_drained(agents, process, log, published.acked_wall_ms)
                await collector.settle()
        finally:
            await producer.stop()
            await collector.stop()
    finally:
        await asyncio.to_thread(stop, process)
    return Run(phases, collector, ready_s)


# -- figures and rows ----------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        raise RuntimeError("no samples: nothing in this phase caused the output being timed")
    return float(np.percentile(np.asarray(values), q))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def echo_latencies(run: Run, phase: str) -> list[float]:
    """Seconds from each candle's publish to its echo's arrival, in the reference run."""
    sent = run.phase(phase).sent
    return [a.at - sent[a.flow] for a in run.collector.of(DIAGNOSTICS_ECHO.name, sent)]


def latency_rows(
    bench: str, name: str, ours: Sequence[float], reference: Sequence[float], **extra: Any,
) -> list[dict[str, Any]]:
    """p50 and p99 rows, in ms, of `ours` against the same percentile of the echo reference (seconds in)."""
    rows = []
    for q in (50, 99):
        value, ref = percentile(ours, q), percentile(reference, q)
        rows.append({
            "bench": bench, "metric": f"{name}_p{q}", "value": ms(value), "unit": "ms",
            "reference": ECHO_REFERENCE, "reference_value": ms(ref), "ratio": round(value / ref, 3),
            "samples": len(ours), "reference_samples": len(reference), **extra,
        })
    return rows


def rate_fields(ours: Run, reference: Run, phase: str) -> dict[str, Any]:
    """The rate asked for and achieved in both runs, and how long after the last send the graph was done."""
    mine, echo = ours.phase(phase), reference.phase(phase)
    assert mine.published is not None
    assert echo.published is not None
    assert mine.end is not None
    return {
        "rate": mine.rate, "candles": len(mine.messages),
        "achieved_rate": round(mine.published.achieved_rate),
        "reference_achieved_rate": round(echo.published.achieved_rate),
        "done_after_last_send_ms": ms(mine.end - max(mine.sent.values())),
    }


def flood_row(bench: str, ours: Run, reference: Run, **extra: Any) -> dict[str, Any]:
    mine, echo = ours.phase("flood"), reference.phase("flood")
    return {
        "bench": bench, "metric": "flood_throughput", "value": round(mine.throughput), "unit": "candles/s",
        "reference": "echo agent alone, same candles, until the last echo is read",
        "reference_value": round(echo.throughput), "ratio": round(mine.throughput / echo.throughput, 3),
        "candles": len(mine.messages), "resolution_s": HEARTBEAT_INTERVAL_S, **extra,
    }


def emit(rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        print(json.dumps(row), flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    return (f"{platform.node()}: {os.cpu_count()} vCPU {cpu} ({platform.machine()}), "
            f"Python {platform.python_version()}")
