"""`cryptiq kill-switch engage|release|status`: the kill switch on `risk.control`.

Engaging publishes a `KillSwitchChanged(engaged=True)`: the risk agent rejects every intent and
the execution agent cancels every open order and refuses new ones, until a release. The ops API
publishes the same event. `status` reads the switch's latest change back from the topic (the
embedded broker does not compact, so the topic is read through and the last change kept).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from topics.trading import KillSwitchChanged

KEY = "kill_switch"  # the key of the switch's changes on risk.control

app = typer.Typer(no_args_is_help=True, add_completion=False)

Reason = Annotated[
    str, typer.Option("--reason", help="Why: recorded with the change and shown in rejections.")
]
Actor = Annotated[
    str | None, typer.Option("--actor", help="Who flips it (default: cli:<your user name>).")
]


@app.command()
def engage(ctx: typer.Context, reason: Reason, actor: Actor = None) -> None:
    """Engage the kill switch: cancel every open order and reject every new intent until released."""
    event = _change(ctx, engaged=True, reason=reason, actor=actor)
    typer.echo(f"kill switch ENGAGED by {event.actor}: {event.reason}. Risk rejects every intent and "
               "execution cancels open orders until `cryptiq kill-switch release`.")


@app.command()
def release(ctx: typer.Context, reason: Reason, actor: Actor = None) -> None:
    """Release the kill switch: intents are decided and orders placed again."""
    event = _change(ctx, engaged=False, reason=reason, actor=actor)
    typer.echo(f"kill switch released by {event.actor}: {event.reason}.")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the latest change as JSON.")] = False,
) -> None:
    """Print whether the kill switch is engaged, since when, by whom and why."""
    latest = asyncio.run(_latest(_client_kwargs(ctx)))
    if as_json:
        typer.echo(json.dumps(None if latest is None else latest.model_dump(mode="json")))
        return
    typer.echo(describe(latest))


def describe(latest: KillSwitchChanged | None) -> str:
    """One line saying what the switch's latest change left it as."""
    if latest is None:
        return "kill switch: released (never engaged)"
    when = datetime.fromtimestamp(latest.at / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if latest.engaged:
        return f"kill switch: ENGAGED since {when} by {latest.actor}: {latest.reason}"
    return f"kill switch: released at {when} by {latest.actor}: {latest.reason}"


def _change(ctx: typer.Context, *, engaged: bool, reason: str, actor: str | None) -> KillSwitchChanged:
    from topics.trading import KillSwitchChanged

    if not reason.strip():
        raise fail("--reason must say why (it is shown in every rejection while the switch is on)")
    who = (actor if actor is not None else f"cli:{getpass.getuser()}").strip()
    if not who:
        raise fail("--actor must not be empty")
    kwargs = _client_kwargs(ctx)
    if not engaged:
        latest = asyncio.run(_latest(kwargs))
        if latest is None or not latest.engaged:
            raise fail("the kill switch is not engaged: nothing to release "
                       "(see `cryptiq kill-switch status`)")
    # An operator's command: the wall clock is its event time.
    now_ms = time.time_ns() // 1_000_000
    event = KillSwitchChanged(engaged=engaged, actor=who, reason=reason.strip(), at=now_ms)
    asyncio.run(_publish(kwargs, event))
    return event


def _client_kwargs(ctx: typer.Context) -> dict[str, Any]:
    import infra

    settings = settings_of(ctx)
    return infra.kafka_client_kwargs(settings.kafka, infra.endpoints(settings).kafka_bootstrap)


async def _publish(kwargs: dict[str, Any], event: KillSwitchChanged) -> None:
    from aiokafka import AIOKafkaProducer

    from topics.envelope import Envelope
    from topics.registry import RISK_CONTROL
    from topics.serialization import encode, headers

    env = Envelope.create(event, key=KEY, ts=event.at, source="cli",
                          discriminator=f"{event.engaged}:{event.actor}")
    producer = AIOKafkaProducer(**kwargs, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(RISK_CONTROL.name, encode(env), key=KEY.encode(), timestamp_ms=env.ts,
                                     headers=headers(env))
    finally:
        await producer.stop()


async def _latest(kwargs: dict[str, Any]) -> KillSwitchChanged | None:
    """The last `KillSwitchChanged` on risk.control (per-key order holds within its partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from topics.recording import seek_to_log_end
    from topics.registry import RISK_CONTROL
    from topics.serialization import DecodeError, decode
    from topics.trading import KillSwitchChanged

    consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
    await consumer.start()
    latest: KillSwitchChanged | None = None
    try:
        partitions = [TopicPartition(RISK_CONTROL.name, p)
                      for p in sorted(consumer.partitions_for_topic(RISK_CONTROL.name) or ())]
        if not partitions:
            return None
        consumer.assign(partitions)
        ends = await seek_to_log_end(consumer, partitions)  # Tansu's end_offsets can fall short
        remaining = {tp for tp in partitions if ends[tp] > 0}
        for tp in remaining:
            consumer.seek(tp, 0)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    try:
                        payload = decode(RISK_CONTROL, record.value).payload
                    except DecodeError:
                        continue  # the agents dead-letter it; it changed nothing
                    if isinstance(payload, KillSwitchChanged):
                        latest = payload  # the agents apply changes in this (offset) order too
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return latest
    finally:
        await consumer.stop()
