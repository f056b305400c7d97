"""The root of CryptIQ's error hierarchy.

Every package raises subclasses of `CryptiqError`. A `RetriableError` says "try again later"
(a broker not answering, a rate limit); anything else says "stop and fix something". The
message of a user-facing error is one line: what happened and what to do.
"""

from __future__ import annotations


class CryptiqError(Exception):
    """Base of every error CryptIQ raises on purpose."""


class RetriableError(CryptiqError):
    """A transient failure: the same call may succeed if retried after a pause."""


class ConfigError(CryptiqError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class DomainError(CryptiqError):
    """This one input cannot be handled (a business rule says no); the next one may be fine.

    The agent runtime sends the input to the dead-letter topic, publishes `AgentFailed`, and
    goes on with the next message.
    """
