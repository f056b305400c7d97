"""`cryptiq compare` and `cryptiq optimize` in a subprocess on the bundled real candles (small runs)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from busio import collect, end_offsets
from config import Settings
from infra import Endpoints
from memory.database import create_engine
from memory.optimizer_runs import OptimizerRunStore

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def cryptiq(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_LEVEL="WARNING")
    return subprocess.run([str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def words(text: str) -> list[str]:
    return text.split()


def assert_png_not_blank(path: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300
    assert float(np.std(pixels[..., :3])) > 0.05  # lines and text, not one flat colour


def test_compare_ranks_strategies_and_writes_html_png_and_json(tmp_path: Path) -> None:
    html, png, out = tmp_path / "cmp.html", tmp_path / "cmp.png", tmp_path / "cmp.json"
    done = cryptiq(*words("compare --symbol ETH/USDT --bars 400 --strategy sma_cross:fast=5,slow=20 "
                         "--strategy breakout --rank-by total_return --basket BTC/USDT,ETH/USDT "
                         "--simulations 100"),
                   "--plot", str(html), "--plot", str(png), "--json", str(out), home=tmp_path)
    assert done.returncode == 0, done.stderr
    for text in ("strategies ranked by total_return", "sma_cross(fast=5, slow=20)", "buy and hold ETH/USDT",
                 "equal-weight basket (2)", "sharpe by regime", "Monte Carlo"):
        assert text in done.stdout
    page = html.read_text()
    assert "Plotly.newPlot" in page
    assert "trades of breakout" in page
    assert_png_not_blank(png)
    payload = json.loads(out.read_text())
    ranking = payload["ranking"]
    assert {row["label"] for row in ranking} == {"sma_cross(fast=5, slow=20)", "breakout"}
    returns = [row["metrics"]["total_return"] for row in ranking]
    assert returns == sorted(returns, reverse=True)
    assert {b["name"] for b in payload["benchmarks"]} == {"buy and hold ETH/USDT", "equal-weight basket (2)"}
    bands = payload["monte_carlo"]["breakout"]["returns"]
    assert bands["final_equity"]["5"] <= bands["actual_final_equity"] <= bands["final_equity"]["95"]
    assert payload["data"]["bars"] == 400
    assert sum(r["bars"] for r in ranking[0]["regimes"].values()) == 400
    assert len(payload["trades"]["breakout"]) == ranking[[r["label"] for r in ranking].index("breakout")][
        "metrics"]["trades"]


def test_compare_reads_a_candle_file_and_leaves_the_basket_out_by_default(tmp_path: Path) -> None:
    from agents.market_data.files import bundled_candles, read_candles

    source = next(s for s in bundled_candles() if s.symbol == "XRP/USDT")
    path = tmp_path / "xrp.csv"
    read_candles(source.path).iloc[:300].drop(columns=["symbol"]).to_csv(path, index=False)
    out = tmp_path / "cmp.json"
    done = cryptiq("compare", "--data", str(path), "--symbol", "XRP/USDT", "--strategy", "sma_cross",
                   "--json", str(out), home=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(out.read_text())
    assert payload["data"]["bars"] == 300
    assert [b["name"] for b in payload["benchmarks"]] == ["buy and hold XRP/USDT"]


def test_optimize_offline_scores_walk_forward_and_writes_the_report(tmp_path: Path) -> None:
    out, html, png = tmp_path / "opt.json", tmp_path / "opt.html", tmp_path / "opt.png"
    done = cryptiq(*words("optimize --symbol BTC/USDT --bars 700 --strategy sma_cross --method ga --trials 5 "
                         "--train-bars 300 --test-bars 200 --warmup-bars 50 --space fast=3:30 "
                         "--space slow=10:90 --max-drawdown 0.3 --simulations 50 --no-store"),
                   "--json", str(out), "--plot", str(html), "--plot", str(png), home=tmp_path)
    assert done.returncode == 0, done.stderr
    for text in ("walk-forward: sma_cross, ga, 5 trials per window, objective sharpe",
                 "in sample (mean of train windows) vs out of sample (stitched test windows)",
                 "out of sample by regime", "Monte Carlo"):
        assert text in done.stdout
    assert "stored run" not in done.stdout
    payload = json.loads(out.read_text())
    folds = payload["walk_forward"]["folds"]
    assert len(folds) == 2
    for fold in folds:
        assert fold["window"]["train_end"] == fold["window"]["test_start"]
    assert payload["walk_forward"]["out_of_sample"]["bars"] == 400  # the two test windows only
    assert all(len(cands) == 5 for cands in payload["candidates"].values())
    assert all(c["test_metrics"] is not None for cands in payload["candidates"].values() for c in cands
               if c["error"] is None)
    assert payload["params"] == folds[-1]["params"]
    assert payload["monte_carlo"]["out of sample"]["returns"]["samples"] == 400
    page = html.read_text()
    assert "walk-forward windows" in page
    assert "Monte Carlo" in page
    assert_png_not_blank(png)


@pytest.mark.parametrize(("args", "message"), [
    ("compare --symbol BTC/USDT --strategy nope", "error: --strategy nope: unknown strategy"),
    ("compare --symbol BTC/USDT --strategy sma_cross:fast=x", "is not a valid int"),
    ("compare --symbol BTC/USDT --strategy sma_cross --plot a.pdf", "must end in .html"),
    ("compare --symbol NOPE/USDT --strategy sma_cross", "error: no bundled candles for NOPE/USDT"),
    ("compare --symbol BTC/USDT --strategy sma_cross --rank-by luck", "not a metric"),
    ("compare --symbol BTC/USDT --strategy sma_cross --fee 2", "--fee 2: must be at least 0 and below 1"),
    ("optimize --symbol BTC/USDT --strategy sma_cross --method grid --no-store", "--method grid: use tpe"),
    ("optimize --symbol BTC/USDT --strategy sma_cross --space fast=1:5000 --no-store", "within its declared"),
    ("optimize --symbol BTC/USDT --strategy sma_cross --space fast --no-store", "expected key=low:high"),
    ("optimize --symbol BTC/USDT --strategy sma_cross --bars 100 --no-store", "hold no walk-forward window"),
    ("optimize --symbol BTC/USDT --strategy sma_cross --objective luck --no-store", "is not one of"),
    ("optimize --symbol BTC/USDT --strategy nope --no-store", "unknown strategy 'nope'"),
])
def test_mistakes_are_one_line_errors(tmp_path: Path, args: str, message: str) -> None:
    done = cryptiq(*words(args), home=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_optimize_stores_the_run_and_publishes_rankings(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
) -> None:
    start = await end_offsets(kafka, "strategies.rankings")
    args = words("optimize --symbol SOL/USDT --bars 600 --strategy sma_cross --method tpe --trials 4 "
                 "--train-bars 300 --test-bars 150 --warmup-bars 50 --space fast=3:20 --space slow=10:60")
    done = await asyncio.to_thread(cryptiq, *args, home=settings.home)
    assert done.returncode == 0, done.stderr
    line = next(text for text in done.stdout.splitlines() if text.startswith("stored run "))
    run_id = line.split()[2]
    engine = create_engine(endpoints.postgres_url)
    try:
        store = OptimizerRunStore(engine)
        stored = await store.get(run_id)
        candidates = await store.candidates(run_id)
    finally:
        await engine.dispose()
    assert stored is not None
    assert (stored.strategy, stored.symbol, stored.method, stored.objective) == (
        "sma_cross", "SOL/USDT", "tpe", "sharpe")
    assert stored.out_of_sample["bars"] == 300
    assert len(candidates) == 4 * 2
    assert sum(c.chosen for c in candidates) == 2
    records = await collect(kafka, "strategies.rankings", start=start,
                            until=lambda rs: any(r.key == b"binance:SOL/USDT:1h:all:sma_cross" for r in rs))
    mine = [orjson.loads(r.value) for r in records if orjson.loads(r.value)["payload"]["run_id"] == run_id]
    assert mine, "no StrategyRanked of this run arrived"
    overall = next(m for m in mine if m["payload"]["regime"] is None)
    assert overall["type"] == "StrategyRanked"
    assert overall["payload"]["params"] == stored.params
    assert overall["payload"]["bars"] == 300
    assert {m["payload"]["regime"] for m in mine} - {None} == set(stored.regimes)
