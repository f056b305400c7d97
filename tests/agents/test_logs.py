"""Logging: JSON lines off a terminal, and agent lines carry agent, topic, partition and offset."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from agents.logs import configure_logging
from config.settings import LogConfig


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()


def test_off_a_terminal_lines_are_json_with_the_bound_message_coordinates() -> None:
    out = io.StringIO()  # not a TTY
    configure_logging(LogConfig(level="INFO", format="auto"), stream=out)
    structlog.contextvars.bind_contextvars(agent="echo", topic="market.candles", partition=2, offset=41)
    structlog.get_logger().info("handled", outputs=1)
    structlog.get_logger().debug("below the level")

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "handled"
    coordinates = (line["agent"], line["topic"], line["partition"], line["offset"])
    assert coordinates == ("echo", "market.candles", 2, 41)
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_console_format_is_readable_text() -> None:
    out = io.StringIO()
    configure_logging(LogConfig(level="DEBUG", format="console"), stream=out)
    structlog.get_logger().warning("broker slow", after_s=3)
    text = out.getvalue()
    assert "broker slow" in text
    assert "after_s=3" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
