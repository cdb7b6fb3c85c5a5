"""One self-contained HTML page: plotly.js inlined once, then each section's table or chart.

Opens without a network: nothing is fetched, no fonts, no CDN, no MathJax. No clock time is written, so the
same runs give the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import plotly.io as pio
from plotly.offline import get_plotlyjs

from servesim import __version__
from servesim.report.charts import Chart

PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 16px 24px 48px; color: #222; }
h1 { font-size: 22px; margin: 8px 0 2px; } h2 { font-size: 17px; margin: 28px 0 4px; }
.sub { color: #666; margin: 0 0 12px; } .explain { color: #444; margin: 2px 0 6px; max-width: 960px; }
.note { color: #8a5a00; margin: 2px 0; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 9px; text-align: right; white-space: nowrap; }
th { background: #f5f6f8; font-weight: 600; white-space: normal; max-width: 120px; vertical-align: bottom; }
td.name { text-align: left; font-weight: 600; }
td.config { text-align: left; color: #555; }
td.pass { background: #e3f5e1; color: #17612a; font-weight: 700; }
td.fail { background: #fbe3e1; color: #a4231b; font-weight: 700; }
td.better { color: #17612a; } td.worse { color: #a4231b; } .delta { font-size: 12px; }
.table-wrap { overflow-x: auto; } details { margin: 6px 0; } pre { background: #f7f7f7; padding: 8px; }
.chart { border: 1px solid #eee; border-radius: 4px; margin: 6px 0 12px; }
"""


@dataclass
class Section:
    """A heading, a sentence on how to read it, and either HTML (tables) or a chart."""

    id: str
    title: str
    explain: str = ""
    html: str = ""
    chart: Chart | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def of_chart(cls, chart: Chart) -> "Section":
        return cls(chart.id, chart.title, chart.explain, chart=chart, notes=tuple(chart.notes))


def _chart_html(chart: Chart) -> str:
    div = pio.to_html(chart.figure, include_plotlyjs=False, full_html=False, div_id=chart.id, config=PLOT_CONFIG,
                      validate=False, default_height=f"{chart.figure.layout.height}px")
    return f'<div class="chart" data-traces="{chart.traces}">{div}</div>'


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#sec-{s.id}">{escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        body.append(f'<section id="sec-{s.id}"><h2>{escape(s.title)}</h2>')
        if s.explain:
            body.append(f'<p class="explain">{escape(s.explain)}</p>')
        body.extend(f'<p class="note">{escape(n)}</p>' for n in s.notes)
        body.append(_chart_html(s.chart) if s.chart is not None else s.html)
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>{escape(title)}</h1><p class=\"sub\">{escape(subtitle)} · servesim {__version__}</p>"
        f"<nav>{nav}</nav>{''.join(body)}</body></html>\n"
    )
