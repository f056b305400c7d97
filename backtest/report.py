"""Reports of backtests: a self-contained HTML page (interactive plotly chart, plotly.js inlined, no
network) and a PNG (matplotlib, Agg), each with the equity curves and drawdowns of the strategies
and their benchmarks, the metrics side by side and the trade lists.

Anything with an equity curve can be drawn: a `BacktestResult`, a `Benchmark`, a walk-forward
`Segment` (give it a label with `Curve`). Extra sections (regime breakdown, Monte Carlo bands,
walk-forward folds) are passed in as titled tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.benchmarks import Benchmark
from backtest.compare import label_of
from backtest.metrics import drawdown_of, result_metrics
from backtest.result import iso_utc

SUMMARY_KEYS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration_days", "win_rate", "profit_factor", "exposure", "turnover", "fees_paid", "trades",
    "final_equity",
)
PERCENT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure", "share"}
COUNTS = {"trades", "closed_trades", "bars", "max_drawdown_duration_bars", "longest_drawdown_bars"}
TRADE_ROWS = 500  # trade rows shown per strategy in the HTML (the JSON has them all)


@dataclass(frozen=True)
class Curve:
    """One line of the chart: a label, equity (UTC DatetimeIndex), starting equity, trades, metrics."""

    label: str
    equity: pd.Series
    starting: float
    metrics: dict[str, Any]
    trades: Sequence[Any] = ()
    benchmark: bool = False


@dataclass(frozen=True)
class Section:
    """A titled table under the chart."""

    title: str
    table: pd.DataFrame
    note: str = ""
    percent: frozenset[str] = field(default_factory=frozenset)


def curve_of(item: Any, label: str | None = None) -> Curve:
    """A Curve from a Curve, BacktestResult, Benchmark or walk-forward Segment."""
    if isinstance(item, Curve):
        return item
    if isinstance(item, Benchmark):
        return Curve(label or item.name, item.equity, item.starting_cash, item.metrics(), benchmark=True)
    if hasattr(item, "strategy"):  # a BacktestResult
        return Curve(label or label_of(item.strategy, item.params), item.equity, float(item.starting_cash),
                     result_metrics(item), item.trades)
    return Curve(label or "segment", item.equity, float(item.starting), item.metrics(), item.trades)


def format_value(key: str, value: Any) -> str:  # noqa: PLR0911 (one early return per kind of cell)
    """A metric as a table cell: percentages for fractions, thousands separators, n/a for undefined."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if key in PERCENT:
        return f"{value * 100:.2f} %"
    if isinstance(value, int):
        return f"{value:,}"
    if key in COUNTS:  # a count averaged over windows
        return f"{value:,.1f}"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.3f}"


def metrics_frame(curves: Sequence[Curve], keys: Sequence[str] = SUMMARY_KEYS) -> pd.DataFrame:
    """Rows = metrics, columns = curves."""
    return pd.DataFrame({c.label: [c.metrics.get(k) for k in keys] for c in curves}, index=list(keys))


def _table_html(frame: pd.DataFrame, percent: frozenset[str] = frozenset(), row_keys: bool = True) -> str:
    """A table whose cells are formatted by their metric: the row key (metrics frames) or the column."""
    head = "".join(f"<th>{html.escape(str(col))}</th>" for col in frame.columns)
    rows = []
    for key, row in frame.iterrows():
        cells = []
        for col, value in row.items():
            metric = str(key) if row_keys else str(col)
            shown = format_value("share" if metric in percent else metric, value)
            cells.append(f"<td>{html.escape(shown)}</td>")
        rows.append(f"<tr><th>{html.escape(str(key))}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def trades_frame(trades: Sequence[Any]) -> pd.DataFrame:
    """The trade list as a table (times in UTC, money as exact decimals)."""
    return pd.DataFrame([{
        "side": t.side, "entry": iso_utc(t.entry_time), "exit": iso_utc(t.exit_time) or "open",
        "entry price": str(t.entry_price),
        "exit price": str(t.exit_price) if t.exit_price is not None else "",
        "size": str(t.size), "fees": str(t.fees), "pnl": str(t.pnl),
    } for t in trades], index=pd.RangeIndex(1, len(trades) + 1, name="#"))


def figure(curves: Sequence[Curve], title: str) -> Any:
    """The plotly figure: equity (top) and drawdown (bottom), benchmarks dashed."""
    from plotly.subplots import make_subplots  # noqa: PLC0415 (heavy: only when a chart is drawn)

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.04,
                        subplot_titles=("equity", "drawdown"))
    for curve in curves:
        dash = "dash" if curve.benchmark else "solid"
        fig.add_scatter(x=curve.equity.index, y=curve.equity.to_numpy(), name=curve.label,
                        legendgroup=curve.label,
                        line={"dash": dash, "width": 1.4}, row=1, col=1)
        drawdown = -drawdown_of(curve.equity, curve.starting) * 100
        fig.add_scatter(x=curve.equity.index, y=drawdown.to_numpy(), name=curve.label,
                        legendgroup=curve.label,
                        showlegend=False, line={"dash": dash, "width": 1.0}, row=2, col=1)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_layout(title=title, height=720, template="plotly_white", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.08})
    return fig


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
thead th { background: #f4f4f4; } tbody th { text-align: left; font-weight: 600; }
p.note { color: #666; font-size: 0.85rem; }
"""


def write_html(items: Any, path: Path | str, *, benchmarks: Sequence[Benchmark] = (), title: str = "backtest",
               sections: Sequence[Section] = (), notes: Sequence[str] = ()) -> Path:
    """Write the HTML report of one result or several (or Curves, Segments) beside `benchmarks`."""
    curves = _curves(items, benchmarks)
    fig = figure(curves, title)
    chart = fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    parts = [f"<h1>{html.escape(title)}</h1>", *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
             "<h2>metrics</h2>", _table_html(metrics_frame(curves)), chart]
    for section in sections:
        parts += [f"<h2>{html.escape(section.title)}</h2>",
                  f'<p class="note">{html.escape(section.note)}</p>' if section.note else "",
                  _table_html(section.table, section.percent, row_keys=False)]
    for curve in curves:
        if curve.benchmark:
            continue
        shown = list(curve.trades)[:TRADE_ROWS]
        more = f" (the first {TRADE_ROWS} of {len(curve.trades)})" if len(curve.trades) > TRADE_ROWS else ""
        parts.append(f"<details><summary>trades of {html.escape(curve.label)}: {len(curve.trades)}{more}"
                     "</summary>" + (_plain_table(trades_frame(shown)) if shown else "<p>no trades</p>")
                     + "</details>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def _plain_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(col))}</th>" for col in frame.columns)
    body = "".join("<tr><th>" + html.escape(str(key)) + "</th>"
                   + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for key, row in zip(frame.index, frame.itertuples(index=False), strict=True))
    return f"<table><thead><tr><th>#</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_png(items: Any, path: Path | str, *, benchmarks: Sequence[Benchmark] = (), title: str = "backtest",
              dpi: int = 110) -> Path:
    """Write the equity and drawdown chart of one result or several beside `benchmarks` as a PNG."""
    import matplotlib  # noqa: PLC0415 (heavy: only when a PNG is written)

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # noqa: PLC0415

    curves = _curves(items, benchmarks)
    fig = Figure(figsize=(11, 7), dpi=dpi)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    for curve in curves:
        style = "--" if curve.benchmark else "-"
        index = pd.DatetimeIndex(curve.equity.index)
        index = index.tz_convert(None) if index.tz is not None else index
        top.plot(index, curve.equity.to_numpy(), style, linewidth=1.2, label=curve.label)
        bottom.plot(index, -drawdown_of(curve.equity, curve.starting).to_numpy() * 100, style, linewidth=0.9)
    top.set_title(title)
    top.set_ylabel("equity")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
    return target


def _curves(items: Any, benchmarks: Sequence[Benchmark]) -> list[Curve]:
    listed = list(items) if isinstance(items, list | tuple) else [items]
    if not listed:
        raise ValueError("nothing to report: no results")
    return [curve_of(item) for item in listed] + [curve_of(bench) for bench in benchmarks]

