"""`cryptiq backtest` as a user runs it: a summary line, a JSON report, an HTML plot; mistakes: one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from agents.market_data.files import bundled_candles, read_candles
from backtest.engine import run_backtest

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
BTC = next(s for s in bundled_candles() if s.symbol == "BTC/USDT").path
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(tmp_path / "home"), CRYPTIQ_LOG_LEVEL="WARNING", COLUMNS="120")
    return subprocess.run([str(CRYPTIQ), "backtest", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_issue_command_writes_the_report_and_the_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "report.json", tmp_path / "equity.html"
    run = cli(tmp_path, "--data", str(BTC), "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--params",
              "fast=20,slow=50", "--fee", "0.001", "--cash", "100000", "--json", str(out),
              "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    expected = run_backtest(read_candles(BTC).drop(columns="symbol"), "sma_cross",
                            params={"fast": 20, "slow": 50}, symbol="BTC/USDT", cash=Decimal(100_000),
                            fee=Decimal("0.001"))
    assert Decimal(report["final_equity"]) == expected.final_equity
    assert len(report["trades"]) == len(expected.trades) > 10
    for trade in report["trades"]:
        assert set(trade) >= {"entry_time", "exit_time", "entry_price", "exit_price", "size", "fees", "pnl"}
        assert ISO.match(trade["entry_time"])
        assert trade["exit_time"] is None or ISO.match(trade["exit_time"])
        for key in ("entry_price", "size", "fees", "pnl"):
            Decimal(trade[key])  # exact decimal strings
        assert trade["entry_time"] < (trade["exit_time"] or "9")
    assert report["strategy"] == "sma_cross"
    assert report["params"] == {"fast": 20, "slow": 50}
    assert f"final equity {expected.final_equity:.2f}" in run.stdout
    assert f"{len(expected.trades)} trades" in run.stdout
    assert plot.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_any_format_data_import_reads_gives_the_same_backtest(tmp_path: Path, suffix: str) -> None:
    frame = pd.read_csv(BTC).iloc[:3000]
    path = tmp_path / f"btc{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    out = tmp_path / "r.json"
    run = cli(tmp_path, "--data", str(path), "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--params",
              "fast=10,slow=30", "--json", str(out))
    assert run.returncode == 0, run.stderr
    expected = run_backtest(read_candles(BTC).drop(columns="symbol").iloc[:3000], "sma_cross",
                            params={"fast": 10, "slow": 30}, symbol="BTC/USDT", cash=Decimal(100_000),
                            fee=Decimal("0.001"))
    assert Decimal(json.loads(out.read_text())["final_equity"]) == expected.final_equity


def test_engines_and_the_risk_engine_can_be_chosen(tmp_path: Path) -> None:
    reports = {}
    for engine in ("event", "vector"):
        out = tmp_path / f"{engine}.json"
        run = cli(tmp_path, "--data", str(BTC), "--symbol", "BTC/USDT", "--strategy", "sma_cross",
                  "--engine", engine, "--slippage-bps", "5", "--json", str(out))
        assert run.returncode == 0, run.stderr
        reports[engine] = json.loads(out.read_text())
        assert f"({engine} engine)" in run.stdout
    assert reports["event"]["trades"] == reports["vector"]["trades"]
    out = tmp_path / "risk.json"
    run = cli(tmp_path, "--data", str(BTC), "--symbol", "BTC/USDT", "--strategy", "sma_cross", "--risk",
              "--json", str(out))
    assert run.returncode == 0, run.stderr
    risked = json.loads(out.read_text())
    assert risked["engine"] == "lean"
    assert Decimal(risked["trades"][0]["size"]) < Decimal(reports["event"]["trades"][0]["size"])


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    base = ("--data", str(BTC), "--symbol", "BTC/USDT")
    cases = [
        ((*base, "--strategy", "nope"), "unknown strategy 'nope'; known: "),
        ((*base, "--strategy", "sma_cross", "--params", "fast=x"), "--params fast=x: 'x' is not a number"),
        ((*base, "--strategy", "sma_cross", "--params", "fast"), "is not key=value"),
        ((*base, "--strategy", "sma_cross", "--params", "speed=3"),
         "unknown parameter(s) speed; known: fast, slow"),
        ((*base, "--strategy", "sma_cross", "--params", "fast=60,slow=50"),
         "fast (60) must be below slow (50)"),
        (("--data", str(tmp_path / "none.csv"), "--symbol", "BTC/USDT", "--strategy", "sma_cross"),
         "no such file"),
        ((*base, "--strategy", "sma_cross", "--fee", "1.5"), "--fee 1.5: must be at least 0 and below 1"),
        ((*base, "--strategy", "sma_cross", "--cash", "0"), "--cash 0: must be above 0"),
        ((*base, "--strategy", "sma_cross", "--engine", "warp"), "--engine warp: choose"),
        ((*base, "--strategy", "sma_cross", "--json", str(tmp_path / "no" / "r.json")), "does not exist"),
    ]
    for args, message in cases:
        run = cli(tmp_path, *args)
        assert run.returncode == 2, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0], lines[0]
