"""strategies.yaml: every validation error names the place, key and value; reload and rankings work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.selector import (
    SelectorConfigError,
    StrategySelector,
    default_strategies_path,
    load_strategies,
    parse_strategies,
    reload_if_changed,
)
from strategies.trend import TrendParams


def config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1, "default": "risk_off", "handoff": {"mode": "reduce", "reduce_fraction": 0.25},
        "regimes": {
            "bull": [{"strategy": "trend", "params": {"fast": 10, "slow": 40}}, {"strategy": "breakout"}],
            "bear": ["risk_off"],
        },
    }
    data.update(changes)
    return data


def test_the_shipped_yaml_is_valid_and_maps_every_regime() -> None:
    selector = StrategySelector(load_strategies(default_strategies_path()))
    assert selector.choose("bull").strategy == "trend"
    assert selector.choose("neutral").strategy == "mean_reversion"
    assert {selector.choose(r).strategy for r in ("bear", "high_volatility", "unknown")} == {"risk_off"}


def test_a_valid_config_parses_to_choices_and_handoff() -> None:
    parsed = parse_strategies(config())
    assert parsed.regimes["bull"][0].params == TrendParams(fast=10, slow=40)
    assert (parsed.handoff.mode, str(parsed.handoff.reduce_fraction)) == ("reduce", "0.25")
    selector = StrategySelector(parsed)
    assert selector.choose("neutral") == parsed.default  # not listed: the default
    assert [c.strategy for c in selector.choices()] == ["trend", "breakout", "risk_off"]


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "s.yaml: expected a mapping with regimes"),
    (config(extra=1), "s.yaml: unknown key.s. extra; allowed: version, default, handoff, regimes"),
    (config(version=2), "s.yaml: version=2 is not supported"),
    (config(regimes={}), "s.yaml: regimes must map at least one regime"),
    (config(regimes={"moon": ["trend"]}), "s.yaml: unknown regime 'moon'; known: bull, bear, neutral, "
                                          "high_volatility, unknown"),
    (config(regimes={"bull": []}), "s.yaml: regimes.bull lists no strategy"),
    (config(regimes={"bull": ["nope"]}),
     r"s.yaml: regimes.bull\[0\]: unknown strategy 'nope'; "
     "known: breakout, mean_reversion, risk_off, sma_cross, trend"),
    (config(regimes={"bull": [{"strategy": "trend", "params": {"fast": 0}}]}),
     r"regimes.bull\[0\].params: strategy trend: parameter fast=0 is outside its bounds \[2, 500\]"),
    (config(regimes={"bull": [{"strategy": "trend", "params": {"speed": 3}}]}),
     r"regimes.bull\[0\].params: strategy trend: unknown parameter.s. speed"),
    (config(regimes={"bull": [{"strategy": "trend", "params": [1]}]}),
     r"regimes.bull\[0\].params: expected a mapping"),
    (config(regimes={"bull": [{"strategy": "trend", "weight": 1}]}),
     r"regimes.bull\[0\]: unknown key.s. weight"),
    (config(regimes={"bull": [3]}), r"regimes.bull\[0\]: expected a mapping with strategy and params, got 3"),
    (config(default="nope"), "s.yaml: default: unknown strategy 'nope'"),
    (config(handoff={"mode": "flip"}), "s.yaml: handoff.mode='flip' is not one of keep, reduce, close"),
    (config(handoff={"reduce_fraction": 1.5}),
     "handoff.reduce_fraction=1.5 must be a number above 0 and below 1"),
    (config(handoff={"reduce_fraction": "x"}), "handoff.reduce_fraction='x' must be a number"),
    (config(handoff={"mode": "keep", "when": 1}), "s.yaml: handoff: unknown key.s. when"),
    (config(handoff="close"), "s.yaml: handoff: expected a mapping"),
])
def test_every_invalid_config_is_one_clear_error(data: object, message: str) -> None:
    with pytest.raises(SelectorConfigError, match=message):
        parse_strategies(data, "s.yaml")


def test_unreadable_and_unparsable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SelectorConfigError, match=r"cannot read .*missing\.yaml"):
        load_strategies(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regimes: [unclosed\n")
    with pytest.raises(SelectorConfigError, match=r"bad\.yaml is not valid YAML"):
        load_strategies(bad)


def test_reload_if_changed_reads_only_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text(yaml.safe_dump(config()))
    first, mtime = reload_if_changed(path, None)
    assert first is not None
    assert reload_if_changed(path, mtime) == (None, mtime)
    path.write_text(yaml.safe_dump(config(regimes={"bull": ["sma_cross"]})))
    os.utime(path, (mtime + 5, mtime + 5))
    second, newer = reload_if_changed(path, mtime)
    assert newer == mtime + 5
    assert second is not None
    assert StrategySelector(second).choose("bull").strategy == "sma_cross"
    path.write_text("regimes: {moon: [trend]}\n")
    os.utime(path, (mtime + 9, mtime + 9))
    with pytest.raises(SelectorConfigError, match="unknown regime 'moon'"):
        reload_if_changed(path, newer)  # the caller keeps `second` and its mtime, and retries next poll
    with pytest.raises(SelectorConfigError, match="cannot read"):
        reload_if_changed(tmp_path / "gone.yaml", newer)


def test_rankings_reorder_candidates_ahead_of_the_yaml_order() -> None:
    selector = StrategySelector(parse_strategies(config()))
    ranked = selector.with_rankings({"bull": ["breakout", "sma_cross"]})
    assert [c.strategy for c in ranked.candidates("bull")] == ["breakout", "sma_cross", "trend"]
    assert ranked.choose("bull") == selector.candidates("bull")[1]  # keeps the yaml params of breakout
    assert ranked.choose("bear").strategy == "risk_off"  # no ranking: yaml order
    assert ranked.with_rankings(None).choose("bull").strategy == "trend"
    with pytest.raises(SelectorConfigError, match="rankings: unknown regime 'moon'"):
        selector.with_rankings({"moon": ["trend"]})
    with pytest.raises(SelectorConfigError, match=r"rankings\.bull: unknown strategy 'x'; known: breakout"):
        selector.with_rankings({"bull": ["x"]})
