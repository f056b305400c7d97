"""Errors of the embedded infrastructure: each message says what failed and what to do next."""

from __future__ import annotations

from config.errors import CryptiqError, RetriableError


class InfraError(CryptiqError):
    """Base of the errors raised while starting, checking or stopping servers."""


class BinaryNotFoundError(InfraError):
    """A server executable that a Python package should ship is missing."""


class PortInUseError(InfraError):
    """Every loopback port tried for a server was taken by another process."""


class ServerStartError(InfraError):
    """An embedded server did not start or did not answer in time; the message names its log."""


class ServerNotAnsweringError(RetriableError, InfraError):
    """A configured external server does not answer; the message names the setting to check."""


class InfraNotRunningError(InfraError):
    """The embedded servers the settings rely on are not running."""
