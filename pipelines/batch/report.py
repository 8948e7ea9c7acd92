"""Static reports of a scored batch: one HTML page per call, ``index.html`` and ``summary.csv``.

Pages are self-contained (CSS inline, plots as base64 PNG data URIs, no scripts or fonts
fetched), so they open offline from the folder or a zip.  Plots are drawn with matplotlib's
Agg backend with a CJK font (``pipelines.batch.fonts``: Debian ``fonts-noto-cjk``), so stage
names are drawn in Chinese; without one they fall back to ASCII labels and a warning says so.  Everything textual
(stage names, transcript, complaint reason) is HTML, which the browser renders with its own
fonts.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from pipelines.batch import fonts
from pipelines.batch.records import SUMMARY_COLUMNS
from pipelines.fusion.rules import default_rules

logger = logging.getLogger("nuqi.batch.report")

STAGE_COLORS = {0: "#e8f5e9", 1: "#fff59d", 2: "#ffd54f", 3: "#ffa726", 4: "#ff7043", 5: "#e53935", 6: "#8e24aa"}
ROLE_COLORS = {"customer": "#d62728", "agent": "#1f77b4"}
ROLE_LABELS = {"customer": "客户", "agent": "坐席"}
MIN_SPEECH_S = 0.25  # chunks with less speech of a role do not plot its F0 / rate / loudness


# --- matplotlib --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _pyplot() -> Any:
    # matplotlib is imported here, not at module top, on purpose: it is heavy (~0.5 s and its font cache) and
    # only the HTML pages with plots need it; the Agg backend must be chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def cjk_font() -> str | None:
    """Name of an installed CJK font matplotlib can use, or None (plots then stay ASCII-only; warned once)."""
    _pyplot()
    return fonts.cjk_font()


def _stage_name(level: int) -> str:
    """The stage's Chinese name from the rules (``pipelines/fusion/rules.yaml``), "" for an unknown level."""
    return default_rules().stage_names.get(level, "")


def _stage_label(level: int) -> str:
    return f"{level} {_stage_name(level)}" if cjk_font() else f"stage {level}"


def _png(fig: Any, dpi: int = 80) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # fixed layout: tight bbox/layout would double the draw time
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _font_rc() -> dict[str, Any]:
    _pyplot()
    return fonts.font_rc(9)


# --- per-call data -----------------------------------------------------------------------------

def _nan(x: Any) -> float:
    return float(x) if x is not None else math.nan


def stage_spans(payload: dict[str, Any]) -> list[tuple[float, float, int]]:
    """``[(start, end, level)]`` covering the call, from the stage transitions of the summary."""
    duration = float(payload.get("duration_s") or 0.0)
    history = sorted((payload.get("summary", {}).get("stage") or {}).get("history") or [],
                     key=lambda t: float(t.get("at", 0.0)))
    spans, t, level = [], 0.0, 0
    for tr in history:
        at = min(max(float(tr.get("at", 0.0)), 0.0), duration)
        if at > t:
            spans.append((t, at, level))
        t, level = at, int(tr.get("level", 0))
    if duration > t:
        spans.append((t, duration, level))
    return spans


def is_calming(hit: dict[str, Any]) -> bool:
    """Calming / polite phrases carry a negative weight in the lexicon."""
    return float(hit.get("weight") or 0.0) < 0.0


def keyword_marks(payload: dict[str, Any]) -> list[tuple[float, int, str]]:
    """``[(time, utterance number, terms)]`` of utterances with (non-negated, non-calming) keyword hits."""
    marks = []
    for i, u in enumerate(payload.get("utterances") or [], start=1):
        hits = [h for h in u.get("keywords") or [] if not h.get("negated") and not is_calming(h)]
        if hits:
            t = u.get("start") if u.get("start") is not None else u.get("end")
            marks.append((float(t or 0.0), i, "、".join(str(h.get("text") or h.get("term")) for h in hits)))
    return marks


def alerts_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in list(payload.get("timeline") or []) + list(payload.get("utterances") or []):
        out.extend(e.get("alerts") or [])
    return sorted(out, key=lambda a: float(a.get("at") or 0.0))


def alert_why(alert: dict[str, Any]) -> str:
    """Why an alert was raised: its explanation (anger, stage change and the cues behind it, e.g.
    「怒气 0.31，阶段升至显化抱怨（…）。依据：语速比开场快 38%；提到“12315”。」), not just the stage name."""
    expl = alert.get("explanation")
    if isinstance(expl, dict):
        expl = expl.get("text")
    if expl:
        return str(expl)
    cues = [str(c.get("text_zh")) for c in alert.get("cues") or [] if isinstance(c, dict) and c.get("text_zh")]
    name = alert.get("stage_name") or (alert.get("stage") or {}).get("name") or ""
    return f"{name}：" + "；".join(cues) if cues else str(name or "–")


def timeline_plot(payload: dict[str, Any]) -> str:
    """The call's timeline as a PNG data URI: anger, F0, speech rate and loudness per role over stage bands."""
    plt = _pyplot()
    timeline = payload.get("timeline") or []
    roles = [r for r in ("customer", "agent") if r in (payload.get("channels") or {})]
    t = [0.5 * (float(e["t_start"]) + float(e["t_end"])) for e in timeline]
    with plt.rc_context(_font_rc()):
        fig, axes = plt.subplots(4, 1, figsize=(13, 8.2), sharex=True,
                                 gridspec_kw={"height_ratios": [1.5, 1, 1, 1]})
        spans = stage_spans(payload)
        for ax in axes:
            for a, b, level in spans:
                if level > 0:
                    ax.axvspan(a, b, color=STAGE_COLORS.get(level, "#ccc"), alpha=0.35, lw=0, zorder=0)
            ax.grid(True, alpha=0.3, lw=0.5)
        ax = axes[0]
        for role in roles:
            entries = [e["roles"].get(role) or {} for e in timeline]
            acoustic = [_nan((x.get("anger") or {}).get("acoustic")) for x in entries]
            fused = [_nan((x.get("anger") or {}).get("fused")) for x in entries]
            c = ROLE_COLORS[role]
            ax.plot(t, acoustic, color=c, lw=0.8, alpha=0.45, ls="--", label=f"{role} acoustic")
            ax.plot(t, fused, color=c, lw=1.6, marker=".", ms=3, label=f"{role} fused")
            utt = [(u.get("end"), u.get("anger_fused")) for u in payload.get("utterances") or []
                   if u.get("role") == role and u.get("anger_fused") is not None and u.get("end") is not None]
            if utt:
                ax.scatter([x for x, _ in utt], [y for _, y in utt], color=c, marker="D", s=22, zorder=4,
                           edgecolors="black", linewidths=0.5, label=f"{role} turn (fused)")
        for at, num, _terms in keyword_marks(payload):
            ax.annotate(str(num), (at, 1.04), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize=7, color="#6a1b9a")
            ax.axvline(at, color="#6a1b9a", lw=0.8, ls=":", alpha=0.8)
        alerts = alerts_of(payload)
        if alerts:
            ax.scatter([float(a.get("at") or 0.0) for a in alerts], [0.97] * len(alerts), marker="v", s=50,
                       color="black", zorder=5, label="alert", transform=ax.get_xaxis_transform())
        ax.set_ylim(0, 1)
        ax.set_ylabel("anger (0-1)")
        handles, labels = ax.get_legend_handles_labels()
        from matplotlib.patches import Patch

        for level in sorted({lv for _, _, lv in spans if lv > 0}):
            handles.append(Patch(color=STAGE_COLORS[level], alpha=0.5))
            labels.append(_stage_label(level))
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, framealpha=0.9,
                  borderaxespad=0.0)
        for ax, key, label in ((axes[1], "f0_median_hz", "F0 median (Hz)"),
                               (axes[2], "speech_rate", "speech rate (syl/s)"),
                               (axes[3], "loudness_db", "loudness (dBFS)")):
            for role in roles:
                ys = []
                for e in timeline:
                    f = (e["roles"].get(role) or {}).get("features") or {}
                    ys.append(_nan(f.get(key)) if float(f.get("speech_s") or 0.0) >= MIN_SPEECH_S else math.nan)
                ax.plot(t, ys, color=ROLE_COLORS[role], lw=1.1, marker=".", ms=2.5, label=role)
            ax.set_ylabel(label)  # role colours as in the anger legend (one legend: each costs a layout pass)
        axes[-1].set_xlabel("call time (s)")
        axes[-1].set_xlim(0, max(float(payload.get("duration_s") or 0.0), 1.0))
        fig.subplots_adjust(left=0.06, right=0.84, top=0.965, bottom=0.06, hspace=0.1)
        return _png(fig)


def stage_distribution_plot(records: list[Any]) -> str:
    plt = _pyplot()
    counts = [sum(1 for r in records if r.ok and int(r.peak_stage or 0) == lv) for lv in range(7)]
    errors = sum(1 for r in records if not r.ok)
    with plt.rc_context(_font_rc()):
        fig, ax = plt.subplots(figsize=(8, 3))
        labels = [_stage_label(lv) for lv in range(7)] + (["error"] if errors else [])
        values = counts + ([errors] if errors else [])
        colors = [STAGE_COLORS[lv] for lv in range(7)] + (["#9e9e9e"] if errors else [])
        bars = ax.bar(range(len(values)), values, color=colors, edgecolor="#555", lw=0.6)
        for b, v in zip(bars, values):
            ax.annotate(str(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(values)), labels, rotation=20 if cjk_font() else 0, fontsize=8)
        ax.set_ylabel("calls")
        ax.set_title("peak stage per call")
        ax.set_ylim(0, max(values + [1]) * 1.2)
        fig.subplots_adjust(left=0.08, right=0.99, top=0.9, bottom=0.2)
        return _png(fig, dpi=90)


# --- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:24px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px} .muted{color:#777;font-size:12px}
table{border-collapse:collapse;font-size:13px;width:100%} th,td{border-bottom:1px solid #e0e0e0;padding:4px 6px;
text-align:left;vertical-align:top} th{background:#fafafa;cursor:pointer;white-space:nowrap}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}.card{border:1px solid #e0e0e0;border-radius:6px;
padding:6px 10px;min-width:120px}.card b{display:block;font-size:16px}.card span{font-size:11px;color:#666}
.stage{display:inline-block;padding:1px 6px;border-radius:4px;border:1px solid #0002;white-space:nowrap}
mark{background:#ffe082;padding:0 1px;border-radius:2px} mark.calm{background:#c8e6c9} mark.neg{background:#eee;
text-decoration:line-through} .scroll{overflow-x:auto} img.plot{max-width:100%;height:auto;border:1px solid #eee}
.bar{display:inline-block;height:8px;background:#d62728;vertical-align:middle;margin-right:4px}
.err{color:#b71c1c} .role-customer{color:#d62728;font-weight:600} .role-agent{color:#1f77b4;font-weight:600}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].innerText,y=b.cells[i].dataset.v||b.cells[i].innerText;
var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});});});
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(x: Any, nd: int = 2, suffix: str = "") -> str:
    if x is None or x == "":
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}{suffix}"
    return f"{x}{suffix}"


def _stage_chip(level: Any, name: Any = None) -> str:
    if level is None:
        return "–"
    lv = int(level)
    fg = "#fff" if lv >= 5 else "#222"
    return (f'<span class="stage" style="background:{STAGE_COLORS.get(lv, "#eee")};color:{fg}">'
            f'{lv} {_e(name or _stage_name(lv))}</span>')


def _page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}{js}</body></html>\n")


def highlight(text: str, hits: list[dict[str, Any]]) -> str:
    """HTML of ``text`` with each keyword hit wrapped in ``<mark>`` (offsets, else first occurrence)."""
    spans: list[tuple[int, int, dict[str, Any]]] = []
    for h in hits:
        s, e = h.get("start"), h.get("end")
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)):
            needle = str(h.get("text") or h.get("term") or "")
            s = text.find(needle) if needle else -1
            if s < 0:
                continue
            e = s + len(needle)
        spans.append((s, e, h))
    spans.sort(key=lambda x: (x[0], -x[1]))
    out, pos = [], 0
    for s, e, h in spans:
        if s < pos:  # overlapping hit: already inside a mark
            continue
        out.append(_e(text[pos:s]))
        tip = f"{h.get('category', '')} (stage {h.get('stage_hint', '')}, weight {h.get('weight', '')})"
        if h.get("negated"):
            tip += " negated"
        cls = ' class="calm"' if is_calming(h) else (' class="neg"' if h.get("negated") else "")
        out.append(f'<mark{cls} title="{_e(tip)}">{_e(text[s:e])}</mark>')
        pos = e
    out.append(_e(text[pos:]))
    return "".join(out)


def _anger_cell(x: Any) -> str:
    if x is None:
        return "<td>–</td>"
    v = float(x)
    return (f'<td data-v="{v:.4f}"><span class="bar" style="width:{int(round(v * 40))}px;'
            f'opacity:{0.3 + 0.7 * v:.2f}"></span>{v:.2f}</td>')


def render_call_html(payload: dict[str, Any]) -> str:
    """One call's page: summary cards, timeline plots, alerts and the transcript."""
    rec = payload.get("record") or {}
    s = payload.get("summary") or {}
    complaint = s.get("complaint") or {}
    cards = [
        (_stage_chip(rec.get("peak_stage"), rec.get("peak_stage_name")), "peak stage"),
        (_e(complaint.get("type") or "–"), "complaint type 投诉类型"),
        (_fmt(rec.get("max_anger_customer")), "max customer anger"),
        (_fmt(rec.get("anger_seconds_customer"), 1, " s"), "customer anger seconds"),
        (_fmt(rec.get("time_to_first_escalation_s"), 1, " s"), "first escalation at"),
        (_fmt(rec.get("alert_count")), "alerts"),
        (_fmt(rec.get("agent_max_anger")), "max agent anger"),
        (_fmt(rec.get("talk_ratio")), "talk ratio (cust/agent)"),
        (_fmt(rec.get("silence_pct"), 1, " %"), "silence"),
        (_fmt(rec.get("overtalk_pct"), 1, " %"), "overtalk"),
        (_fmt(rec.get("speech_rate_customer")), "customer syl/s"),
        (_fmt(rec.get("speech_rate_agent")), "agent syl/s"),
        (_fmt(payload.get("duration_s"), 1, " s"), "duration"),
    ]
    card_html = "".join(f'<div class="card"><b>{v}</b><span>{_e(k)}</span></div>' for v, k in cards)
    legend = " ".join(_stage_chip(lv) for lv in range(1, 7))
    parts = [
        f"<h1>{_e(payload.get('call'))}</h1>",
        f'<div class="muted">{_e(payload.get("file"))} · {_e(payload.get("input_rate"))} Hz · '
        f'channels {_e(", ".join(f"{k}={v}" for k, v in (payload.get("channels") or {}).items()))} · '
        f'transcript: {_e(payload.get("transcript_source"))} · scored {_e(payload.get("scored_at"))} · '
        f'<a href="../index.html">batch overview</a> · '
        f'<a href="{_e(payload.get("call"))}.json">timeline JSON</a></div>',
        f'<div class="cards">{card_html}</div>',
        f'<div class="muted">投诉类型 (complaint type, the call\'s outcome: 无投诉 / 普通投诉 / 重大投诉 / 升级投诉 / '
        f'疑难投诉) is not the stage (阶段 0 平静 … 5 投诉, 6 投诉升级) · reason: '
        f'{_e(complaint.get("reason") or "–")}</div>',
        "<h2>Timeline</h2>",
        f'<div class="muted">stage background: {legend} · dashed = acoustic anger, solid = fused anger, '
        f'◆ = fused anger of a finished turn, ▼ = alert, purple numbers = turns with keywords (see transcript); '
        f'<span class="role-customer">red = customer</span>, <span class="role-agent">blue = agent</span></div>',
        f'<img class="plot" alt="call timeline: anger, F0, speech rate, loudness" src="{timeline_plot(payload)}">',
    ]
    alerts = alerts_of(payload)
    if alerts:
        rows = "".join(
            f"<tr><td>{_fmt(float(a.get('at') or 0.0), 1)} s</td><td>{_stage_chip(a.get('level'))}</td>"
            f"<td>{_e(a.get('kind'))}</td><td>{_e(alert_why(a))}</td></tr>"
            for a in alerts)
        parts.append(f"<h2>Alerts ({len(alerts)})</h2><table><thead><tr><th>at</th><th>level</th><th>kind</th>"
                     f"<th>why</th></tr></thead><tbody>{rows}</tbody></table>")
    utts = payload.get("utterances") or []
    if utts:
        rows = []
        for i, u in enumerate(utts, start=1):
            role = str(u.get("role"))
            hits = u.get("keywords") or []
            stage = u.get("stage") or {}
            rows.append(
                f"<tr><td>{i}</td><td>{_fmt(u.get('start'), 1)}–{_fmt(u.get('end'), 1)}</td>"
                f'<td class="role-{_e(role)}">{_e(ROLE_LABELS.get(role, role))}</td>'
                f"<td>{highlight(str(u.get('text') or ''), hits)}</td>{_anger_cell(u.get('anger'))}"
                f"{_anger_cell(u.get('anger_fused'))}"
                f"<td>{_stage_chip(stage.get('level'), stage.get('name')) if stage else '–'}</td>"
                f"<td>{_e(', '.join(str(h.get('term')) for h in hits if not h.get('negated') and not is_calming(h)))}"
                "</td></tr>")
        parts.append("<h2>Transcript</h2><table><thead><tr><th>#</th><th>time (s)</th><th>role</th><th>text</th>"
                     "<th>text anger</th><th>fused anger</th><th>stage</th><th>keywords</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    else:
        parts.append('<h2>Transcript</h2><p class="muted">no transcript (no sidecar, ASR off or not available): '
                     "scored on audio only.</p>")
    return _page(f"nuqi · {payload.get('call')}", "".join(parts))


def ranked(records: Iterable[Any]) -> list[Any]:
    """Scored calls angriest first (peak stage, max customer anger, anger seconds), errors last."""
    recs = list(records)
    ok = sorted((r for r in recs if r.ok), key=lambda r: r.anger_key(), reverse=True)
    return ok + [r for r in recs if not r.ok]


def render_index_html(records: list[Any]) -> str:
    """The batch overview: peak-stage distribution, calls angriest first with links, errors."""
    ok = [r for r in records if r.ok]
    errors = [r for r in records if not r.ok]
    total_s = sum(float(r.duration_s or 0.0) for r in ok)
    head = ("<tr><th>#</th><th>call</th><th>peak stage</th><th>max cust. anger</th><th>anger s</th>"
            "<th>1st escalation (s)</th><th>complaint</th><th>alerts</th><th>talk ratio</th><th>silence %</th>"
            "<th>overtalk %</th><th>cust. syl/s</th><th>duration (s)</th><th>transcript</th></tr>")
    rows = []
    for i, r in enumerate(ranked(ok), start=1):
        rows.append(
            f"<tr><td>{i}</td><td><a href=\"calls/{_e(r.call)}.html\" title=\"{_e(r.file)}\">{_e(r.call)}</a></td>"
            f'<td data-v="{int(r.peak_stage or 0)}">{_stage_chip(r.peak_stage, r.peak_stage_name)}</td>'
            f"{_anger_cell(r.max_anger_customer)}<td>{_fmt(r.anger_seconds_customer, 1)}</td>"
            f"<td>{_fmt(r.time_to_first_escalation_s, 1)}</td><td>{_e(r.complaint_type)}</td>"
            f"<td>{_fmt(r.alert_count)}</td><td>{_fmt(r.talk_ratio)}</td><td>{_fmt(r.silence_pct, 1)}</td>"
            f"<td>{_fmt(r.overtalk_pct, 1)}</td><td>{_fmt(r.speech_rate_customer)}</td>"
            f"<td>{_fmt(r.duration_s, 1)}</td><td>{_e(r.transcript_source)}</td></tr>")
    parts = [
        "<h1>nuqi QA batch</h1>",
        f'<div class="muted">{len(records)} call(s): {len(ok)} scored, {len(errors)} error(s) · '
        f"{total_s / 60:.1f} min of audio · generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} · "
        '<a href="summary.csv">summary.csv</a></div>',
        "<h2>Peak stage distribution</h2>",
        f'<img class="plot" alt="peak stage distribution" src="{stage_distribution_plot(records)}">',
        "<h2>Calls, angriest first</h2>",
        f'<div class="scroll"><table class="sortable" id="calls"><thead>{head}</thead><tbody>{"".join(rows)}'
        "</tbody></table></div>",
    ]
    if errors:
        erows = "".join(f"<tr><td>{_e(r.file)}</td><td class=\"err\">{_e(r.error)}</td></tr>" for r in errors)
        parts.append(f"<h2>Errors ({len(errors)})</h2><table id=\"errors\"><thead><tr><th>file</th><th>reason</th>"
                     f"</tr></thead><tbody>{erows}</tbody></table>")
    return _page("nuqi QA batch", "".join(parts), SORT_JS)


def write_summary_csv(records: list[Any], path: Path) -> None:
    """One row per call (input order), UTF-8 with BOM so spreadsheet programs read the Chinese right."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SUMMARY_COLUMNS))
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if v is None else v) for k, v in r.to_row().items()})
    os.replace(tmp, path)
