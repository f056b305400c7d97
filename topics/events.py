"""The base of every event payload and the catalogue of (type, version) -> model.

An event payload is a frozen pydantic model with a class-level `TYPE` tag (past tense for
facts: `CandleClosed`; imperative for commands: `SubmitOrder`) and a `VERSION`. Adding an
optional field keeps the version; removing, renaming or changing the meaning of a field is a
new version, i.e. a new class registered beside the old one.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from config import CryptiqError


class Event(BaseModel):
    """Base of every payload. Subclasses set `TYPE` and `VERSION` and are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class UnknownEventError(CryptiqError):
    """A message names an event type/version that no model is registered for."""


_CATALOGUE: dict[tuple[str, int], type[Event]] = {}


def register_event(cls: type[Event]) -> type[Event]:
    """Class decorator: make `cls` decodable by its (TYPE, VERSION). Names must be unique."""
    ident = (cls.TYPE, cls.VERSION)
    existing = _CATALOGUE.get(ident)
    if existing is not None and existing is not cls:
        raise ValueError(f"event {ident} is registered twice: {existing.__qualname__} and {cls.__qualname__}")
    _CATALOGUE[ident] = cls
    return cls


def event_class(type_: str, version: int) -> type[Event]:
    """The model registered for `type_` at `version`; UnknownEventError if there is none."""
    try:
        return _CATALOGUE[(type_, version)]
    except KeyError:
        raise UnknownEventError(
            f"no event model is registered for type {type_!r} version {version}"
        ) from None
