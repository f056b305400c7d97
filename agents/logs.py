"""structlog, configured once at start-up: JSON lines off a TTY, a readable console on a TTY.

Library code only calls `structlog.get_logger()`; the runtime binds agent, topic, partition and
offset per message with `structlog.contextvars`.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from config.settings import LogConfig


def configure_logging(config: LogConfig, stream: TextIO | None = None) -> None:
    """Route structlog (and the stdlib loggers of our dependencies) to `stream` (stderr)."""
    out = stream if stream is not None else sys.stderr
    as_json = config.format == "json" or (config.format == "auto" and not out.isatty())
    level = logging.getLevelName(config.level)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # faust, aiokafka and friends log through the stdlib: keep their warnings, drop their chatter.
    logging.basicConfig(
        stream=out,
        level=max(level, logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
