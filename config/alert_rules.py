"""The condition language of user alerts: `rsi_14 < 30`, `ema_20 crosses_above ema_50`, `change_pct(24) > 5`.

Parsed here, by hand, never evaluated with `eval`: a condition is exactly

    condition := operand operator operand
    operator  := "<" | "<=" | ">" | ">=" | "crosses_above" | "crosses_below"
    operand   := NAME | NUMBER | "change_pct(" INTEGER ")"

NAME is an indicator column (`rsi_14`, `bb_upper_20_2`, `macd_hist_12_26_9`) or a candle field
(`close`, `volume`); NUMBER is a decimal such as `30`, `-2.5` or `1e-3`; `change_pct(N)` is the
% change of the close over the last N candles. At least one side must not be a number.

This module only checks the grammar, so settings can reject a bad rule when they load. Which
NAMEs exist depends on the indicators the technical agent computes; it checks those when it
builds its rules (`agents.technical.alerts`), with the same kind of one-line error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

COMPARISONS = ("<", "<=", ">", ">=")
CROSSINGS = ("crosses_above", "crosses_below")
OPERATORS = (*COMPARISONS, *CROSSINGS)
CHANGE_PCT = "change_pct"
ALLOWED = "an indicator column (e.g. rsi_14), a candle field (close), a number, or change_pct(N)"

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<op><=|>=|<|>)"
    r"|(?P<paren>[()]))"
)


@dataclass(frozen=True)
class Column:
    """An indicator column or candle field, looked up on each candle."""

    name: str


@dataclass(frozen=True)
class Number:
    """A constant threshold."""

    value: float


@dataclass(frozen=True)
class ChangePct:
    """The % change of the close over the last `window` candles."""

    window: int


Operand = Column | Number | ChangePct


@dataclass(frozen=True)
class Condition:
    """A parsed condition: `left operator right`, and the text it came from."""

    left: Operand
    operator: str
    right: Operand
    text: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The names this condition reads, in order."""
        return tuple(side.name for side in (self.left, self.right) if isinstance(side, Column))

    @property
    def longest_change_window(self) -> int:
        """The largest N of any change_pct(N) (0 if none): how many closes must be kept."""
        windows = [side.window for side in (self.left, self.right) if isinstance(side, ChangePct)]
        return max(windows, default=0)


class AlertSyntaxError(ValueError):
    """A condition that is not in the grammar; the message names the bad token and what is allowed."""


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | op | paren | end
    text: str
    position: int  # 0-based character offset in the condition


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise AlertSyntaxError(
                f"unexpected {text[start]!r} at position {start + 1} in {text!r}; "
                f"a condition is <operand> <operator> <operand> with operators {', '.join(OPERATORS)}"
            )
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def next(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, token: _Token, expected: str) -> AlertSyntaxError:
        if token.kind == "end":
            return AlertSyntaxError(f"{self.text!r} ends too early; expected {expected}")
        return AlertSyntaxError(
            f"unexpected {token.text!r} at position {token.position + 1} in {self.text!r}; "
            f"expected {expected}"
        )

    def operand(self) -> Operand:
        token = self.next()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise self.fail(token, "a finite number")
            return Number(value)
        if token.kind != "name":
            raise self.fail(token, ALLOWED)
        if token.text in CROSSINGS:
            raise self.fail(token, f"an operand before the operator: {ALLOWED}")
        if token.text != CHANGE_PCT:
            return Column(token.text.lower())
        return ChangePct(self.window())

    def window(self) -> int:
        opening = self.next()
        if opening.text != "(":
            raise self.fail(opening, f"'(' after {CHANGE_PCT}: {CHANGE_PCT}(N) with N candles, e.g. "
                                     f"{CHANGE_PCT}(24)")
        count = self.next()
        if count.kind != "number" or not count.text.isdigit() or int(count.text) < 1:
            raise self.fail(count, f"a whole number of candles >= 1 in {CHANGE_PCT}(N)")
        closing = self.next()
        if closing.text != ")":
            raise self.fail(closing, f"')' closing {CHANGE_PCT}({count.text}")
        return int(count.text)

    def operator(self) -> str:
        token = self.next()
        if token.text in OPERATORS:
            return token.text
        raise self.fail(token, f"an operator: {', '.join(OPERATORS)}")

    def condition(self) -> Condition:
        left = self.operand()
        operator = self.operator()
        right = self.operand()
        end = self.next()
        if end.kind != "end":
            raise self.fail(end, "the end of the condition (one comparison per rule)")
        if isinstance(left, Number) and isinstance(right, Number):
            raise AlertSyntaxError(
                f"{self.text!r} compares two numbers; put {ALLOWED.replace(', a number', '')} on one side"
            )
        return Condition(left, operator, right, self.text)


def parse_condition(text: str) -> Condition:
    """`"rsi_14 < 30"` -> Condition(Column("rsi_14"), "<", Number(30.0)); AlertSyntaxError if not valid."""
    if not isinstance(text, str) or not text.strip():
        raise AlertSyntaxError(f"an alert condition must be text like 'rsi_14 < 30', got {text!r}")
    return _Parser(text.strip()).condition()
