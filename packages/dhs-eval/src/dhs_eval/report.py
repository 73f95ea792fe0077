"""The run report: MODEL_CARD.md, its long companions (CSV) and one self-contained report.html.

:func:`write_report` is what both the ``report`` stage and ``dhs report RUN_DIR`` call, so a report
regenerated later (after an interrupted run, or with newer dhs-eval) is the one the pipeline would
have written. It reads only artifacts: parts whose artifact is absent say "Not run", a damaged one
"unreadable: <reason>", and the rest renders.

report.html is one file that opens from disk with no network: every figure is embedded as a
``data:`` URI, the style and the table-sorting script are inline, and the page names no
http(s) URL (the browser test in tests/browser checks this in headless Chromium).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from pathlib import Path
from typing import Any, Sequence

from dhs_core import layout
from dhs_core.cards import NOT_RUN, load_json, read_jsonl
from dhs_core.errors import UserError
from dhs_core.io import write_text
from dhs_eval.layout import (
    CELLS_CSV,
    COMPLETENESS_HEATMAP,
    EVALUATE_ARTIFACTS,
    EVALUATE_DIR,
    HEATMAP_AXES,
    MODEL_CARD,
    REPORT_DIR,
    REPORT_HTML,
    STRATA_CSV,
    TRAINING_CURVES,
)


def _artifact(stage: str, key: str) -> str | None:
    from dhs_core import artifact
    from dhs_core.errors import PluginError

    try:
        return artifact(stage, key)
    except PluginError:
        return None


# --- the run's stages -----------------------------------------------------------------------


def run_stages(run_dir: Path) -> list[Any]:
    """The stage components a run directory was made by, in pipeline order: the stages its
    run_info.json records that are installed now (the report stage always). A directory without
    run_info.json is not a run: :class:`UserError` (exit 2)."""
    from dhs_core import plugins
    from dhs_core.runner import order_stages

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such directory; dhs report expects a run directory (one holding "
                        f"{layout.RUN_INFO}, written by dhs run)")
    info, problem = load_json(run_dir / layout.RUN_INFO)
    if not isinstance(info, dict) or "stages" not in info:
        why = "it has no" if problem == NOT_RUN else f"its {layout.RUN_INFO} is {problem or 'not a run record'};"
        raise UserError(f"{run_dir} is not a run directory: {why} {layout.RUN_INFO} (dhs run writes one in "
                        "every run directory; for a sweep, pass one of its point directories)")
    installed = plugins.components("stage")
    names = [n for n in info["stages"] if n in installed]
    if "report" not in names and "report" in installed:
        names.append("report")
    return order_stages([installed[n] for n in names])


# --- figures and long tables ----------------------------------------------------------------


def write_figures(run_dir: Path) -> None:
    """Training curves and completeness heatmaps, from whichever inputs exist."""
    from dhs_eval import plots, selection

    metrics = _artifact("train", "metrics")
    if metrics and (run_dir / metrics).is_file():
        try:
            rows = read_jsonl(run_dir / metrics)
        except ValueError:
            rows = []
        if rows:
            plots.training_curves_figure(run_dir / REPORT_DIR / TRAINING_CURVES, rows)
    cells = _read_cells(run_dir)
    if cells is not None:
        cells = selection.at_threshold(cells)  # the primary threshold of long-form cells
        for x, y in HEATMAP_AXES:
            if {x, y, *selection.COUNT_COLUMNS} <= set(cells):
                plots.completeness_heatmap(run_dir / REPORT_DIR / COMPLETENESS_HEATMAP.format(x=x, y=y), cells, x, y)


def _read_cells(run_dir: Path) -> Any:
    ref = _artifact("selection_function", "cells")
    if not ref or not (run_dir / ref).is_file():
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_table(run_dir / ref)
    except Exception:  # damaged: the card's section says why
        return None


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_tables(run_dir: Path) -> None:
    """report/strata.csv (every stratum) and report/selection_cells.csv (every grid cell, and every
    threshold of long-form cells, with k/n and the posterior recomputed from the counts) — what
    the card links instead of printing."""
    from dhs_eval import card, selection

    evaluation, _ = load_json(run_dir / EVALUATE_ARTIFACTS["metrics"])
    if isinstance(evaluation, dict):
        rows = card.strata_rows(evaluation)
        if rows:
            write_text(run_dir / REPORT_DIR / STRATA_CSV, _csv(rows))
    cells = _read_cells(run_dir)
    if cells is not None and set(selection.COUNT_COLUMNS) <= set(cells.column_names):
        cols = selection._columns(cells)
        k, n = cols["n_detected"], cols["n_ok"]
        post = selection.completeness_posterior(k, n)
        keep = [c for c in ("cell_id", "threshold_name", "threshold", *selection.AXES, "n_unique_hosts") if c in cols]
        out = [{**{c: cols[c][i].item() if hasattr(cols[c][i], "item") else cols[c][i] for c in keep},
                "n_detected": int(k[i]), "n_ok": int(n[i]), **{name: float(v[i]) for name, v in post.items()}}
               for i in range(len(k))]
        write_text(run_dir / REPORT_DIR / CELLS_CSV, _csv(out))


# --- Markdown to HTML (the subset the card uses) ---------------------------------------------


def _inline(text: str, run_dir: Path) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)

    def link(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"[a-z]+://", target):  # the card never links the network; keep the text only
            return label
        return f'<a href="{html.escape(target)}">{label}</a>'

    return re.sub(r"\[([^\[\]]+)\]\(([^)\s]+)\)", link, out)


def markdown_to_html(text: str, run_dir: Path) -> str:
    """Headings, paragraphs, bullet lists, fenced code and pipe tables (made sortable)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        m = re.match(r"(#{1,4}) (.*)", line)
        if m:
            level = len(m.group(1))
            anchor = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{_inline(m.group(2), run_dir)}</h{level}>')
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append(_table(rows, run_dir))
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:], run_dir)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line, run_dir)}</p>")
        i += 1
    return "\n".join(out)


def _cells(row: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _table(rows: list[str], run_dir: Path) -> str:
    header = _cells(rows[0])
    body = [r for r in rows[1:] if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
    head = "".join(f'<th title="click to sort">{_inline(h, run_dir)}</th>' for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{_inline(c, run_dir)}</td>" for c in _cells(r)) + "</tr>" for r in body)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>'


# --- the page --------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
code,pre{background:#f6f6f6} pre{padding:.6em;overflow-x:auto}
figure{display:inline-block;margin:.5em;vertical-align:top} figure img{max-width:520px;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555;max-width:520px}
nav a{margin-right:.8em} .missing{color:#a33}
figure.stamp img{width:128px;height:128px;image-rendering:pixelated;max-width:none}
figure.stamp figcaption{max-width:140px}
"""

# Sorting without external scripts: a click on a header sorts that table's rows by the column,
# numerically when every cell of the column starts with a number, else as text; a second click
# reverses. Numbers are read from the start of the cell, so "0.93 [0.90, 0.95]" sorts as 0.93.
_SCRIPT = """
(function(){
  function key(td){var t=td.textContent.trim();var m=t.match(/^[-+]?[0-9][0-9,]*\\.?[0-9]*(e[-+]?[0-9]+)?/i);
    return m?parseFloat(m[0].replace(/,/g,'')):null;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        var asc=!th.classList.contains('asc');
        table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
        th.classList.add(asc?'asc':'desc');
        var numeric=rows.every(function(r){return r.cells[col]&&key(r.cells[col])!==null;});
        rows.sort(function(a,b){
          var x=a.cells[col]?a.cells[col].textContent.trim():'',y=b.cells[col]?b.cells[col].textContent.trim():'';
          var c=numeric?key(a.cells[col])-key(b.cells[col]):x.localeCompare(y);
          return asc?c:-c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
})();
"""


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figure_list(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(group, relative path, caption)`` of every figure the report shows, in reading order."""
    figs: list[tuple[str, str, str]] = [
        ("Training", f"{REPORT_DIR}/{TRAINING_CURVES}", "Training and validation loss and validation metrics per epoch."),
    ]
    evaluation, _ = load_json(run_dir / EVALUATE_ARTIFACTS["metrics"])
    for key, res in ((evaluation or {}).get("evaluators") or {}).items() if isinstance(evaluation, dict) else []:
        for f in res.get("figures") or []:
            caption = ("ROC on a log false-positive-rate axis with the operating points marked"
                       if "roc" in f else "Reliability diagram (calibration) with the score histogram"
                       if "calibration" in f else f"{key} figure")
            figs.append(("Evaluation", f"{EVALUATE_DIR}/{f}", caption + f" ({f})."))
    for x, y in HEATMAP_AXES:
        figs.append(("Selection function", f"{REPORT_DIR}/{COMPLETENESS_HEATMAP.format(x=x, y=y)}",
                     f"Completeness (posterior median) over {x} × {y}, pooled over the other axes, and the "
                     "width of its 68 % interval."))
    meta_ref = _artifact("selection_function", "meta")
    if meta_ref:
        meta, _ = load_json(run_dir / meta_ref)
        for f in (meta or {}).get("figures") or [] if isinstance(meta, dict) else []:
            if "heatmap" in f or f.count("_") > 2:
                continue  # the report's own heatmaps above replace the stage's
            figs.append(("Selection function", f"{Path(meta_ref).parent.as_posix()}/{f}",
                         "Marginal completeness against θE per source-magnitude bin with 68 % and 95 % bands."))
    return figs


def _qa(run_dir: Path) -> str:
    """Quality checks a reader wants before trusting the numbers: exclusions, split balance and
    leakage, injection failures."""
    rows = []
    ref = _artifact("data", "data_report")
    rep, problem = load_json(run_dir / ref) if ref else (None, NOT_RUN)
    if isinstance(rep, dict):
        excl = rep.get("exclusions") or {}
        rows.append(("Cutouts excluded (missing / unreadable / non-finite)",
                     f"{excl.get('total', 'not recorded')} {excl.get('by_reason') or ''}"))
        ver = rep.get("split_verification") or {}
        rows.append(("Galaxies shared between splits", str(ver.get("shared_galaxies", "not recorded"))))
        rows.append(("HEALPix pixels shared between splits", str(ver.get("shared_pixels", "not recorded"))))
        rows.append(("PSF / depth balanced across splits (KS)", str(ver.get("balanced", "not recorded"))))
    else:
        rows.append(("Data report", problem or "unreadable"))
    meta_ref = _artifact("selection_function", "meta")
    meta, problem = load_json(run_dir / meta_ref) if meta_ref else (None, NOT_RUN)
    if isinstance(meta, dict):
        rows.append(("Injections failed / attempted", f"{meta.get('n_failed')}/{meta.get('n_attempted')} "
                     f"{meta.get('failures_by_reason') or ''}"))
        rows.append(("Grid cells without hosts", str(meta.get("n_cells_without_hosts", "not recorded"))))
    else:
        rows.append(("Selection-function meta", problem or "unreadable"))
    info, _ = load_json(run_dir / layout.RUN_INFO)
    if isinstance(info, dict):
        rows.append(("Stage status", ", ".join(f"{k}: {v.get('status')}" for k, v in (info.get("stages") or {}).items())))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in rows)
    return f'<table class="sortable"><thead><tr><th>check</th><th>value</th></tr></thead><tbody>{body}</tbody></table>'


def asinh_rgb(stamp: Any) -> Any:
    """An (H, W, 3) colour image of a (3, H, W) g, r, z stamp: z → red, r → green, g → blue,
    with the asinh stretch of Lupton et al. (2004). Scaling all three bands by one function of the
    summed intensity keeps the colours of faint and bright pixels alike, so a blue arc stays blue
    next to a red lens galaxy; the per-band weights bring g, r and z of a typical galaxy to
    similar brightness. Normalised per stamp (a gallery shows morphology, not photometry)."""
    import numpy as np

    g, r, z = (np.nan_to_num(np.asarray(b, np.float64)) for b in stamp)
    bands = np.stack([z * 1.0, r * 1.5, g * 2.5])
    intensity = np.clip(bands.mean(0), 1e-12, None)
    # the stretch turns from linear to logarithmic a few sky-noise sigma above zero (robust MAD),
    # so an arc a few sigma above the sky is visible next to a bright galaxy core
    mad = 1.4826 * float(np.median(np.abs(intensity - np.median(intensity))))
    soft = max(3 * mad, float(intensity.max()) / 1000, 1e-12)
    scale = np.arcsinh(intensity / soft) / intensity
    rgb = np.clip(bands * scale, 0, None)
    peak = float(rgb.max()) or 1.0
    return np.moveaxis(np.clip(rgb / peak, 0, 1), 0, -1)


def _stamp_img(stamp: Any, caption: str) -> str:
    import matplotlib.image

    buf = io.BytesIO()
    matplotlib.image.imsave(buf, asinh_rgb(stamp), format="png")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure class="stamp"><img alt="{html.escape(caption)}" src="{src}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _gallery(run_dir: Path) -> str:
    """Injected examples per θE (detected / missed at the selection function's threshold) and the
    highest-scoring false positives, from the selection-function stage's gallery.npz."""
    import numpy as np

    ref = _artifact("selection_function", "gallery")
    if not ref or not (run_dir / ref).is_file():
        return f"<p>{NOT_RUN} (no {ref or 'gallery stamps'}: the selection-function stage did not write them).</p>"
    try:
        data = dict(np.load(run_dir / ref, allow_pickle=False))
    except Exception as exc:  # damaged: say so, render the rest
        return f"<p>unreadable: {html.escape(f'{type(exc).__name__}: {exc}')} ({html.escape(ref)})</p>"
    threshold = float(data.get("threshold", np.nan))
    out = [f"<p>Colour: z, r, g as red, green, blue, asinh stretch. Detection threshold p ≥ {threshold:.4g} "
           "(the selection function's).</p>"]
    if "inj_images" in data:
        rows = []
        for theta in np.unique(data["inj_theta_e"]):
            cells = []
            for want, label in ((True, "detected"), (False, "missed")):
                sel = np.flatnonzero((data["inj_theta_e"] == theta) & (data["inj_detected"] == want))
                cells.append("".join(_stamp_img(data["inj_images"][i], f"{label}, p = {data['inj_scores'][i]:.3g}")
                                     for i in sel) or "none drawn")
            rows.append(f"<tr><td>{theta:g}</td><td>{cells[0]}</td><td>{cells[1]}</td></tr>")
        out.append('<h3>Injected arcs</h3><table class="sortable"><thead><tr><th>θE (arcsec)</th><th>detected</th>'
                   f"<th>missed</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        out.append(f"<h3>Injected arcs</h3><p>{NOT_RUN}</p>")
    if "fp_images" in data:
        figs = "".join(_stamp_img(img, f"{gid}: p = {s:.3g}" + (" (above threshold)" if s >= threshold else ""))
                       for img, s, gid in zip(data["fp_images"], data["fp_scores"], data["fp_ids"]))
        out.append(f"<h3>Highest-scoring non-lenses (test split)</h3>{figs}")
    else:
        out.append(f"<h3>Highest-scoring non-lenses (test split)</h3><p>{NOT_RUN}</p>")
    return "".join(out)


def render_html(run_dir: Path, card_text: str, title: str) -> str:
    run_dir = Path(run_dir)
    groups: dict[str, list[str]] = {}
    for group, rel, caption in _figure_list(run_dir):
        f = run_dir / rel
        if f.is_file():
            item = (f'<figure><img alt="{html.escape(rel)}" src="{embed_png(f)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        else:
            item = f'<p class="missing">{html.escape(rel)}: {NOT_RUN}</p>'
        groups.setdefault(group, []).append(item)
    figures = "".join(f"<h3>{html.escape(g)}</h3>{''.join(items)}" for g, items in groups.items())
    gallery = _gallery(run_dir)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("figures", "Figures"), ("qa", "QA"),
                                                          ("gallery", "Gallery")))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<nav>{nav}</nav>{markdown_to_html(card_text, run_dir)}"
            f'<h2 id="figures">Figures</h2>{figures}'
            f'<h2 id="qa">QA</h2>{_qa(run_dir)}'
            f'<h2 id="gallery">Gallery</h2>{gallery}'
            f"<script>{_SCRIPT}</script></body></html>\n")


def write_report(run_dir: Path, stages: Sequence[Any] | None = None) -> Path:
    """Figures, CSVs, MODEL_CARD.md and report.html of ``run_dir``; returns report.html's path.
    ``stages``: the enabled stage components in pipeline order (default: from run_info.json)."""
    from dhs_eval import model_card

    run_dir = Path(run_dir)
    stages = run_stages(run_dir) if stages is None else stages
    write_figures(run_dir)
    write_tables(run_dir)
    text = model_card.render(run_dir, stages)
    write_text(run_dir / MODEL_CARD, text)
    title = text.splitlines()[0].lstrip("# ").strip()
    write_text(run_dir / REPORT_HTML, render_html(run_dir, text, title))
    return run_dir / REPORT_HTML
