"""The report's page: ``index.html`` with the verdicts, the figures (embedded) and the tables."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from experiments.report.labels import fmt, run_label, seeds_text
from experiments.report.runs import finite
from geometry import runfiles

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}table{border-collapse:collapse;font-size:.85em;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f4f4f4}
.holds{background:#d9f2d9}.does-not-hold{background:#f9d6d5}.inconclusive{background:#f3ecc8}
code{font-size:.9em}.small{font-size:.85em;color:#555}
"""


def _cell(value) -> str:
  if isinstance(value, dict) and "value" in value:
    if "min" in value and "max" in value and value["min"] != value["max"] \
        and finite(value["value"]):
      # A mean over seeds, with its spread.
      return f"{_cell(value['value'])} [{_cell(value['min'])}, {_cell(value['max'])}]"
    value = value["value"]
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  if isinstance(value, list):
    return html.escape(fmt(value))
  if finite(value):
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
  return html.escape(str(value))


def _describe(record: dict, depth: int = 0) -> str:
  """Where a number comes from, in words (sources of derived numbers included)."""
  if "derived" in record:
    if "source" in record:
      return (f"{record['derived']} {record.get('threshold', '')} of {record['source']} "
              f"[{record['key']}]")
    inputs = record.get("from", [])
    if depth >= 2 or len(inputs) > 3:
      return f"{record['derived']} of {len(inputs)} numbers"
    return (f"{record['derived']} of (" + "; ".join(_describe(r, depth + 1) for r in inputs
                                                   if isinstance(r, dict)) + ")")
  where = record.get("source", "")
  if "line" in record:
    where += f" line {record['line']}" + (f" (epoch {record['epoch']})" if "epoch" in record
                                          else "")
  if "key" in record:
    where += f" [{record['key']}]"
  if "computed" in record:
    where += f" ({record['computed']})"
  return where


def _number_text(record: dict) -> str:
  value = record.get("value", record.get("values"))
  shown = "never" if value is None else (_cell(value) if not isinstance(value, list)
                                         else f"{len(value)} values")
  return f"{shown} <span class='small'>({html.escape(_describe(record))})</span>"


def _seed_note(verdict: dict) -> str:
  """The seed count of a verdict over seeds, in words."""
  if verdict.get("decided_on") == "seed means":
    return f"on the means over {verdict['seeds_total']} seeds"
  note = verdict["seed_count"]
  for word, key in (("fails", "seeds_failing"), ("inconclusive", "seeds_inconclusive")):
    if verdict.get(key):
      note += f"; {word} on {seeds_text(list(verdict[key]))}"
  return note


def verdict_counts(verdicts) -> dict:
  """{"claim": {outcome: n}, "consistency": {outcome: n}}: claims and consistency checks are
  counted apart."""
  counts = {"claim": {}, "consistency": {}}
  for v in verdicts:
    c = counts[v.get("kind", "claim")]
    c[v["verdict"]] = c.get(v["verdict"], 0) + 1
  return counts


def _conditions_text(conditions) -> str:
  """Each condition a verdict was decided on: its numbers, the comparison and the margin
  (> 0 holds by that much, < 0 fails by that much; report.json ``conditions``)."""
  out = []
  for c in conditions:
    rhs = _cell(c.get("rhs_value"))
    if "factor" in c:
      rhs = f"{c['factor']:g} x {rhs}"
    text = f"{_cell(c.get('lhs_value'))} {html.escape(c['op'])} {rhs}"
    noise = c.get("noise")
    if isinstance(noise, dict) and noise.get("value"):
      text += f" &plusmn; {_cell(noise['value'])} (2 SE)"
    text += f"; margin {_cell(c.get('margin'))}"
    if "seed" in c:
      text = f"seed {html.escape(str(c['seed']))}: {text}"
    out.append(text)
  return "<br>".join(out)


def _verdict_table(verdicts) -> str:
  rows = ["<table><tr><th>section</th><th>claim</th><th>verdict</th><th>decided on "
          "(number, threshold, margin)</th><th>numbers</th><th>rule</th><th>setup</th></tr>"]
  for v in verdicts:
    css = v["verdict"].replace(" ", "-")
    numbers = "<br>".join(_number_text(n) for n in v["numbers"] if n is not None)
    why = "".join(f"<br><span class='small missing'>{html.escape(r)}</span>"
                  for r in v.get("missing", []))
    rows.append(f"<tr class='{css}' id='{html.escape(v.get('id', ''))}'>"
                f"<td>{html.escape(v['section'])}</td>"
                f"<td>{html.escape(v['claim'])}<br><span class='small'>"
                f"{html.escape(v['reference'])}</span></td><td><b>{v['verdict']}</b>"
                + (f"<br><span class='small'>{html.escape(_seed_note(v))}</span>"
                   if "seeds_total" in v else "") + why + "</td>"
                f"<td class='small'>{_conditions_text(v['conditions'])}</td>"
                f"<td>{numbers}</td><td>{html.escape(v['rule'])}</td>"
                f"<td class='small'>{html.escape(v['setup'])}</td></tr>")
  return "".join(rows) + "</table>"


def write_html(builder, title: str, description: str, out_dir: Path) -> Path:
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
  if description:
    parts.append(f"<p>{html.escape(description)}</p>")
  counts = verdict_counts(builder.verdicts)
  def seeds_of(run):  # the seeds of a setting run over several seeds
    seed = run.flat.get("seed")
    return f"; {seeds_text(seed)}" if isinstance(seed, list) else ""
  def said(c):
    return (f"{c.get('holds', 0)} hold, {c.get('does not hold', 0)} do not hold, "
            f"{c.get('inconclusive', 0)} inconclusive")
  parts.append("<p>Runs: " + ", ".join(f"<code>{html.escape(r.name)}</code> ({run_label(r)}"
                                       f"{seeds_of(r)})" for r in builder.runs)
               + f". Claims: {said(counts['claim'])}. Consistency checks (hold by "
               f"construction when the code is right): {said(counts['consistency'])}.</p>")
  if builder.warnings:
    parts.append("<h2>Warnings</h2><p class='small'>Damage found while reading the runs; "
                 "a run left out gives no number, a line left out gives none for its epoch."
                 "</p><ul class='warnings'>" + "".join(
                     f"<li>{html.escape(w)}</li>" for w in builder.warnings) + "</ul>")
  # Each run's setup line, as its run.json names it (the record's ``setup``).
  parts.append("<h2 id='runs'>Runs</h2><table><tr><th>run</th><th>variant</th>"
               "<th>setup (run.json)</th></tr>" + "".join(
                   f"<tr><td><code>{html.escape(r.name)}</code></td>"
                   f"<td>{html.escape(run_label(r))}{seeds_of(r)}</td>"
                   f"<td class='small'>{html.escape(r.setup)}</td></tr>" for r in builder.runs)
               + "</table>")
  for kind, heading in (("claim", "Verdicts: claims"),
                        ("consistency", "Consistency checks (hold by construction)")):
    shown = [v for v in builder.verdicts if v.get("kind", "claim") == kind]
    if shown:
      parts.append(f"<h2 id='{kind}'>{heading}</h2>" + _verdict_table(shown))
  if builder.figures:
    parts.append("<h2>Figures</h2>")
  for i, fig in enumerate(builder.figures, 1):
    encoded = base64.b64encode((out_dir / fig.file).read_bytes()).decode("ascii")
    parts.append(f"<figure id='{fig.id}'><h3>Figure {i}. {html.escape(fig.title)}</h3>"
                 f"<img src='data:image/png;base64,{encoded}' data-file='{fig.file}' "
                 f"alt='{html.escape(fig.title)}'><figcaption>{html.escape(fig.caption)} "
                 f"(<a href='{fig.file}'>{fig.file}</a>)</figcaption></figure>")
  for table in builder.tables:
    parts.append(f"<h2>{html.escape(table['title'])}</h2><p class='small'>"
                 f"{html.escape(table['caption'])}</p><table><tr>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in table["columns"]) + "</tr>")
    for row in table["rows"]:
      parts.append("<tr>" + "".join(f"<td>{_cell(c) if c is not None else '-'}</td>"
                                    for c in row) + "</tr>")
    parts.append("</table>")
  parts.append("<h2>Thresholds</h2><p class='small'>" + ", ".join(
      f"{k} = {v}" for k, v in builder.t.items()) + ". Every number above is listed with its "
      "source in report.json.</p></body></html>")
  path = out_dir / "index.html"
  runfiles.write_text(path, "\n".join(parts))
  return path

