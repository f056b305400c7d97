"""User alert rules: the grammar and each of its errors, load-time validation, evaluation and cooldown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from technical_data import HORIZON, run

from agents.technical.alerts import compile_rules
from agents.technical.core import TechnicalCore
from config import ConfigError, load_settings
from config.alert_rules import AlertSyntaxError, ChangePct, Column, Condition, Number, parse_condition
from config.settings import AlertRule, TechnicalConfig
from indicators import compute_batch, cross
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.system import AlertRaised


@pytest.mark.parametrize(("text", "parsed"), [
    ("rsi_14 < 30", (Column("rsi_14"), "<", Number(30.0))),
    ("  RSI_14>=70.5 ", (Column("rsi_14"), ">=", Number(70.5))),
    ("ema_20 crosses_above ema_50", (Column("ema_20"), "crosses_above", Column("ema_50"))),
    ("close crosses_below bb_lower_20_2.5", (Column("close"), "crosses_below", Column("bb_lower_20_2.5"))),
    ("change_pct(24) > 5", (ChangePct(24), ">", Number(5.0))),
    ("-2.5e-1 <= change_pct( 1 )", (Number(-0.25), "<=", ChangePct(1))),
    ("volume_zscore_20 > 3", (Column("volume_zscore_20"), ">", Number(3.0))),
])
def test_valid_conditions_parse_to_operands_and_an_operator(
    text: str, parsed: tuple[object, str, object],
) -> None:
    condition = parse_condition(text)
    assert (condition.left, condition.operator, condition.right) == parsed
    assert condition == Condition(*parsed, text=text.strip())


@pytest.mark.parametrize(("text", "message"), [
    ("rsi_14 = 30", r"unexpected '=' at position 8 in 'rsi_14 = 30'; a condition is <operand> <operator> "
                    r"<operand> with operators <, <=, >, >=, crosses_above, crosses_below"),
    ("rsi_14 30", r"unexpected '30' at position 8 .*expected an operator: <, <=, >, >=, crosses_above"),
    ("rsi_14 <", r"'rsi_14 <' ends too early; expected an indicator column \(e\.g\. rsi_14\), a candle"),
    ("< 30", r"unexpected '<' at position 1 .*expected an indicator column"),
    ("rsi_14 < 30 and ema_20 > 1", r"unexpected 'and' at position 13 .*one comparison per rule"),
    ("30 < 40", r"'30 < 40' compares two numbers; put an indicator column \(e\.g\. rsi_14\), a candle field"),
    ("crosses_above ema_50", r"unexpected 'crosses_above' at position 1 .*an operand before the operator"),
    ("change_pct > 5", r"unexpected '>' .*'\(' after change_pct: change_pct\(N\) with N candles"),
    ("change_pct(x) > 5", r"unexpected 'x' at position 12 .*a whole number of candles >= 1"),
    ("change_pct(0) > 5", r"unexpected '0' .*a whole number of candles >= 1"),
    ("change_pct(2.5) > 5", r"unexpected '2\.5' .*a whole number of candles >= 1"),
    ("change_pct(24 > 5", r"unexpected '>' .*'\)' closing change_pct\(24"),
    ("rsi_14 < 1e999", r"unexpected '1e999' .*a finite number"),
    ("rsi_14 < 30)", r"unexpected '\)' at position 12 .*the end of the condition"),
    ("", r"an alert condition must be text like 'rsi_14 < 30', got ''"),
])
def test_every_grammar_error_names_the_bad_token_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(AlertSyntaxError, match=message):
        parse_condition(text)


def load_with_rules(tmp_path: Path, rules: list[dict[str, object]]) -> object:
    path = tmp_path / "cryptiq.yaml"
    path.write_text(yaml.safe_dump({"technical": {"alerts": rules}}))
    return load_settings(path)


def test_settings_load_the_examples_and_reject_bad_rules_naming_key_rule_and_token(tmp_path: Path) -> None:
    settings = load_with_rules(tmp_path, [
        {"name": "eth_oversold", "when": "rsi_14 < 30", "symbols": ["ETH/USDT"], "timeframes": ["1h"],
         "cooldown": 12},
        {"name": "golden_cross", "when": "ema_20 crosses_above ema_50", "symbols": "top10"},
        {"name": "pump", "when": "change_pct(24) > 5", "severity": "warning"},
    ])
    rules = settings.technical.alerts  # type: ignore[attr-defined]
    assert [(r.name, r.symbols, r.cooldown) for r in rules] == [
        ("eth_oversold", ["ETH/USDT"], 12), ("golden_cross", "top10", 12), ("pump", [], 12),
    ]
    with pytest.raises(ConfigError, match=r"config key technical\.alerts\.0\.when = 'rsi_14 = 30' \(from "
                       r"config file .*\) is invalid: .*alert rule 'bad': unexpected '='"):
        load_with_rules(tmp_path, [{"name": "bad", "when": "rsi_14 = 30"}])
    with pytest.raises(ConfigError, match=r"technical\.alerts\.0\.symbols = 'top'.*alert rule 'x': symbols "
                       r"'top' is not allowed; use a list such as \[ETH/USDT\], topN such as top10"):
        load_with_rules(tmp_path, [{"name": "x", "when": "rsi_14 < 30", "symbols": "top"}])
    with pytest.raises(ConfigError, match=r"alert rule 'x': symbols \['ETHUSDT'\] are not ccxt symbols"):
        load_with_rules(tmp_path, [{"name": "x", "when": "rsi_14 < 30", "symbols": ["ETHUSDT"]}])
    with pytest.raises(ConfigError, match=r"alert rule 'x': timeframes \['hourly'\] are not ccxt timeframes"):
        load_with_rules(tmp_path, [{"name": "x", "when": "rsi_14 < 30", "timeframes": ["hourly"]}])
    with pytest.raises(ConfigError, match=r"alerts\.0\.cooldown = -1 .*greater than or equal to 0"):
        load_with_rules(tmp_path, [{"name": "x", "when": "rsi_14 < 30", "cooldown": -1}])
    with pytest.raises(ConfigError, match="alert rule names must be unique; repeated: twice"):
        load_with_rules(tmp_path, [{"name": "twice", "when": "rsi_14 < 30"},
                                   {"name": "twice", "when": "close > 1"}])
    with pytest.raises(ConfigError, match=r"unknown config key 'technical\.alerts\.0\.whenever'"):
        load_with_rules(tmp_path, [{"name": "x", "when": "rsi_14 < 30", "whenever": "always"}])


def test_rules_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_TECHNICAL_ALERTS", '[{"name": "dip", "when": "change_pct(1) < -3"}]')
    monkeypatch.setenv("CRYPTIQ_TECHNICAL_HORIZON", "12")
    technical = load_settings().technical
    assert technical.horizon == 12
    assert [(rule.name, rule.when) for rule in technical.alerts] == [("dip", "change_pct(1) < -3")]
    monkeypatch.setenv("CRYPTIQ_TECHNICAL_ALERTS", '[{"name": "dip", "when": "change_pct(1) <"}]')
    with pytest.raises(ConfigError, match=r"environment variable CRYPTIQ_TECHNICAL_ALERTS.*ends too early"):
        load_settings()


def test_an_unknown_indicator_is_refused_when_the_agent_builds_its_rules_with_suggestions() -> None:
    config = TechnicalConfig(alerts=[AlertRule(name="typo", when="rsi_41 < 30")])
    with pytest.raises(ConfigError, match=r"^alert rule 'typo': unknown indicator 'rsi_41' in 'rsi_41 < 30'; "
                       r"did you mean rsi_14\? known: .*\(compute others with technical\.indicators"):
        TechnicalCore(config)
    with pytest.raises(ConfigError, match=r"unknown indicator 'foo'.*known: open, high, low, close, volume, "
                       r"sma_20, sma_50, .* and \d+ more"):
        TechnicalCore(TechnicalConfig(alerts=[AlertRule(name="x", when="foo > 1")]))
    with pytest.raises(ConfigError, match=r"unknown indicator 'b' in 'a crosses_above b'; known: a \("):
        compile_rules([AlertRule(name="x", when="a crosses_above b")], ["a"])
    extra = TechnicalConfig(indicators=["rsi_7"], alerts=[AlertRule(name="fast", when="rsi_7 < 20")])
    assert [rule.rule.name for rule in TechnicalCore(extra).rules] == ["fast"]


def fired(outputs: list[Envelope], rule: str, symbol: str) -> list[int]:
    """open_time of each candle on which `rule` fired for `symbol`."""
    return [int(env.payload.details["open_time"]) for env in outputs if isinstance(env.payload, AlertRaised)
            and env.payload.name == rule and env.payload.symbol == symbol]


def batch_of(candles: list[Envelope[CandleClosed]], symbol: str) -> tuple[np.ndarray, pd.DataFrame]:
    rows = [env.payload for env in candles if env.payload.symbol == symbol]
    frame = pd.DataFrame([(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in rows],
                         columns=["open_time", "open", "high", "low", "close", "volume"])
    return frame["open_time"].to_numpy(), compute_batch(frame).assign(close=frame["close"])


def with_cooldown(true_at: list[int], cooldown: int) -> list[int]:
    """Indices where a rule that is true at `true_at` fires, given a cooldown in candles."""
    out: list[int] = []
    for index in true_at:
        if not out or index - out[-1] >= cooldown:
            out.append(index)
    return out


@pytest.mark.parametrize("cooldown", [0, 1, 12])
def test_a_threshold_rule_fires_where_the_batch_value_holds_at_most_once_per_cooldown(
    candles: list[Envelope[CandleClosed]], cooldown: int,
) -> None:
    rule = AlertRule(name="eth_oversold", when="rsi_14 < 35", symbols=["ETH/USDT"], cooldown=cooldown)
    outputs = run(TechnicalCore(TechnicalConfig(horizon=HORIZON, alerts=[rule])), candles)
    times, batch = batch_of(candles, "ETH/USDT")
    true_at = np.flatnonzero((batch["rsi_14"] < 35).to_numpy()).tolist()
    expected = [int(times[i]) for i in with_cooldown(true_at, cooldown)]
    assert fired(outputs, "eth_oversold", "ETH/USDT") == expected
    assert len(expected) > 10
    assert fired(outputs, "eth_oversold", "BTC/USDT") == []  # other symbols are not watched
    if cooldown == 0:
        assert len(expected) == len(true_at)  # without a cooldown it repeats on every true candle
    if cooldown == 12:
        assert len(expected) < len(true_at) / 2


def test_crossing_and_change_rules_fire_on_the_candles_the_batch_data_says(
    candles: list[Envelope[CandleClosed]],
) -> None:
    rules = [AlertRule(name="golden", when="ema_20 crosses_above ema_50", cooldown=0),
             AlertRule(name="pump", when="change_pct(24) > 4", cooldown=0, severity="warning")]
    outputs = run(TechnicalCore(TechnicalConfig(horizon=HORIZON, alerts=rules)), candles)
    times, batch = batch_of(candles, "BTC/USDT")
    golden = times[cross(batch["ema_20"], batch["ema_50"]) == 1].tolist()
    assert fired(outputs, "golden", "BTC/USDT") == golden
    assert golden
    close = batch["close"].to_numpy()
    change = np.full(len(close), np.nan)
    change[24:] = (close[24:] / close[:-24] - 1) * 100
    assert fired(outputs, "pump", "BTC/USDT") == times[change > 4].tolist()
    pumps = [env for env in outputs if isinstance(env.payload, AlertRaised) and env.payload.name == "pump"]
    assert pumps
    first = pumps[0]
    assert first.payload.severity == "warning"
    assert first.key == first.payload.symbol
    assert first.payload.details["when"] == "change_pct(24) > 4"
    assert first.payload.details["right"] == 4.0
    assert len({env.event_id for env in pumps}) == len(pumps)


def test_a_top_n_rule_fires_only_for_the_streams_ranked_in_the_top_n_by_quote_volume(
    candles: list[Envelope[CandleClosed]],
) -> None:
    rule = AlertRule(name="leader", when="close > 0", symbols="top1", cooldown=0)
    core = TechnicalCore(TechnicalConfig(horizon=HORIZON, alerts=[rule]))
    volumes: dict[str, list[float]] = {"BTC/USDT": [], "ETH/USDT": []}
    for env in candles:
        outputs = core.handle(env)
        c = env.payload
        volumes[c.symbol] = (volumes[c.symbol] + [c.close * c.volume])[-24:]
        other = "ETH/USDT" if c.symbol == "BTC/USDT" else "BTC/USDT"
        leads = (-sum(volumes[c.symbol]), env.key) < (-sum(volumes[other]), env.key.replace(c.symbol, other))
        assert bool(fired(outputs, "leader", c.symbol)) == (leads or not volumes[other]), c.open_time
    assert core.rank(candles[-1].key) in (1, 2)
