"""The report of a batch job, written by the client at the end of every run (a rerun with nothing left to do too)
from the committed rows (DIR/frames/<key>.parquet, one file per input named in the manifest) and the manifest:

DIR/summary.csv, DIR/summary.parquet  one row per input (SUMMARY_BASE columns, share_<class> per class, episodes,
                                      timeline)
DIR/episodes.csv                      one row per episode (EPISODE_COLUMNS)
DIR/timelines/<key>.png               per video: stacked probabilities over time and a strip of the smoothed label
DIR/index.html                        a self-contained page: the summary table, each video linking its timeline

Definitions (docs/BATCH.md says them to the reader):
- the label of a row: smoothed_label where the row has one (smoothing on), else label;
- share_<class>: the share of the input's face rows (one per frame in a video: its share of the time a face was
  there) whose label is the class; the shares of an input sum to 1, and are empty when it has no face row;
- faces_lost: frames with no face found plus frames whose face was held (not seen, its last box kept);
- an episode: a maximal run of consecutive frames (no frame missing, one track) with the same label lasting at least
  MIN_EPISODE_S seconds; start_s is its first frame's time, end_s its last frame's time plus one frame (1 / fps);
  mean_score: the mean over its frames of the probability of its expression (the smoothed one where present).
Timelines already written are kept on a rerun (a committed input's rows never change).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ..classes import CLASSES

MIN_EPISODE_S = 0.5
SUMMARY_BASE = ("source", "kind", "duration_s", "frames", "faces_lost")
EPISODE_COLUMNS = ("source", "start_s", "end_s", "expression", "mean_score")

# one fixed colour per class (the same in every timeline); other class names get the tab10 colours
COLOURS = {"neutral": "#9e9e9e", "happiness": "#f2c12e", "surprise": "#ff7f0e", "sadness": "#1f77b4",
           "anger": "#d62728", "disgust": "#2ca02c", "fear": "#9467bd", "contempt": "#8c564b"}
NO_FACE = "#ffffff"
MAX_POINTS = 3000            # a longer video's timeline shows means over equal bins of frames


def colour(cls: str, classes: Sequence[str]) -> str:
    if cls in COLOURS:
        return COLOURS[cls]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex
    return to_hex(colormaps["tab10"](list(classes).index(cls) % 10))


def classes_of(columns: Sequence[str]) -> list[str]:
    """The class names of a rows table (vrfer.batch.rows.columns): the columns between score and smoothed_*."""
    cols = list(columns)
    start = cols.index("score") + 1
    end = next(i for i, c in enumerate(cols) if c.startswith("smoothed_"))
    return cols[start:end]


def labels(rows):
    """The label of each row: smoothed_label where present, else label."""
    return rows["smoothed_label"].where(rows["smoothed_label"].notna(), rows["label"])


def shares(rows, classes: Sequence[str]) -> dict[str, float]:
    """share_<class> of an input's rows (NaN for every class when it has none)."""
    n = len(rows)
    counts = labels(rows).value_counts() if n else {}
    return {f"share_{c}": (float(counts.get(c, 0)) / n if n else math.nan) for c in classes}


def episodes(rows, fps: float | None, min_s: float = MIN_EPISODE_S):
    """The episodes of one video's rows (a DataFrame of vrfer.batch.rows columns) as a DataFrame of EPISODE_COLUMNS:
    maximal runs of consecutive frames of one track with the same label (smoothed where present) lasting >= min_s."""
    import pandas as pd
    out = []
    if fps and len(rows):
        r = rows.sort_values("frame", kind="stable").reset_index(drop=True)
        lab = labels(r)
        frame, track = r["frame"].to_numpy(), r["track_id"].to_numpy()
        start = 0
        for i in range(1, len(r) + 1):
            if i < len(r) and lab.iat[i] == lab.iat[start] and frame[i] == frame[i - 1] + 1 and \
                    track[i] == track[start]:
                continue
            expr = lab.iat[start]
            t0, t1 = frame[start] / fps, (frame[i - 1] + 1) / fps
            if t1 - t0 >= min_s - 1e-9:
                col = f"smoothed_{expr}"
                p = r[col].iloc[start:i] if col in r and r[col].iloc[start:i].notna().all() else r[expr].iloc[start:i]
                out.append({"source": r["source"].iat[start], "start_s": round(t0, 6), "end_s": round(t1, 6),
                            "expression": expr, "mean_score": round(float(p.mean()), 6)})
            start = i
    return pd.DataFrame(out, columns=list(EPISODE_COLUMNS))


def summary_row(entry: dict, rows, classes: Sequence[str], n_episodes: int, timeline: str | None) -> dict:
    """One input's summary row from its manifest entry (frames read, frames without a face, fps) and its rows."""
    kind, fps, frames = entry.get("kind"), entry.get("fps"), int(entry.get("frames") or 0)
    duration = 0.0 if kind == "image" else (round(frames / fps, 6) if fps else math.nan)
    held = int(rows["held"].fillna(False).astype(bool).sum()) if len(rows) else 0
    return {"source": entry.get("source"), "kind": kind, "duration_s": duration, "frames": frames,
            "faces_lost": int(entry.get("lost") or 0) + held, **shares(rows, classes), "episodes": n_episodes,
            "timeline": timeline}


def draw_timeline(rows, frames: int, fps: float | None, classes: Sequence[str], title: str, path: Path) -> None:
    """The timeline PNG of one video: its probabilities stacked over time (a frame without a face: none) and a strip
    of its label (smoothed where present; white: no face), time in seconds (in frames when the rate is unknown)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    n = max(frames, int(rows["frame"].max()) + 1 if len(rows) else 0, 1)
    probs = np.zeros((len(classes), n))
    lab = np.full(n, -1)
    if len(rows):
        r = rows.drop_duplicates("frame", keep="first")              # one face per frame (the tracked one)
        idx = r["frame"].to_numpy(dtype=int)
        probs[:, idx] = r[list(classes)].to_numpy(dtype=float).T
        names = labels(r).to_numpy()
        lab[idx] = [classes.index(x) if x in classes else -1 for x in names]
    bins = math.ceil(n / MAX_POINTS)
    m = math.ceil(n / bins)
    pad = m * bins - n
    probs_b = np.pad(probs, ((0, 0), (0, pad))).reshape(len(classes), m, bins).mean(axis=2)
    lab_b = np.pad(lab, (0, pad), constant_values=-1).reshape(m, bins)[:, 0]     # a bin's first frame's label
    unit = 1 / fps if fps else 1.0
    x = np.append(np.arange(m) * bins, n) * unit                 # bin edges: each bin drawn flat over its frames
    probs_b = np.concatenate([probs_b, probs_b[:, -1:]], axis=1)
    end = n * unit
    cols = [colour(c, classes) for c in classes]
    fig = Figure(figsize=(12, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.7], hspace=0.08, left=0.075, right=0.83, top=0.9, bottom=0.14)
    ax, strip = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax.stackplot(x, probs_b, colors=cols, labels=list(classes), step="post", linewidth=0)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=11)
    ax.tick_params(labelbottom=False)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.colors import to_rgb
    rgb = np.array([to_rgb(NO_FACE)] + [to_rgb(c) for c in cols])[lab_b + 1][None, :, :]
    strip.imshow(rgb, aspect="auto", extent=(0, m * bins * unit, 0, 1), interpolation="nearest")
    strip.set_xlim(0, end)
    smoothed = bool(len(rows)) and rows["smoothed_label"].notna().any()
    strip.set_yticks([0.5], ["smoothed\nlabel" if smoothed else "label"])
    strip.set_xlabel("time (s)" if fps else "frame (frame rate unknown)")
    handles = [Patch(facecolor=c, label=k) for k, c in zip(classes, cols)]
    handles.append(Patch(facecolor=NO_FACE, edgecolor="black", linewidth=0.5, label="no face"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.845, 0.55), frameon=False, fontsize=10)
    tmp = path.with_name("_" + path.name)
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def write_report(job, progress: bool = False) -> dict:
    """Write summary.csv/.parquet, episodes.csv, the timelines and index.html of a job (vrfer.batch.job.Job) from
    its committed inputs. Returns {"summary": rows, "episodes": n}."""
    import pandas as pd
    import pyarrow.parquet as pq
    from tqdm import tqdm
    entries = sorted(job.committed().values(), key=lambda e: (str(e.get("source")), e["key"]))
    classes = _job_classes(job, entries)
    summary, eps = [], []
    for e in tqdm(entries, unit="input", desc="vrfer batch report", disable=None if progress else True):
        rows = pq.read_table(job.frames / f"{e['key']}.parquet").to_pandas()
        timeline = None
        if e.get("kind") == "image":
            ep = episodes(rows.iloc[:0], None)
        else:
            ep = episodes(rows, e.get("fps"))
            png = job.timelines / f"{e['key']}.png"
            if not png.exists():
                draw_timeline(rows, int(e.get("frames") or 0), e.get("fps"), classes, str(e.get("source")), png)
            timeline = f"timelines/{png.name}"
        if len(ep):
            ep["source"] = e.get("source")
        eps.append(ep)
        summary.append(summary_row(e, rows, classes, len(ep), timeline))
    cols = [*SUMMARY_BASE, *(f"share_{c}" for c in classes), "episodes", "timeline"]
    table = pd.DataFrame(summary, columns=cols)
    table["frames"] = table["frames"].astype("int64")
    table["faces_lost"] = table["faces_lost"].astype("int64")
    table["episodes"] = table["episodes"].astype("int64")
    _atomic(job.dir / "summary.csv", lambda p: table.to_csv(p, index=False))
    _atomic(job.dir / "summary.parquet", lambda p: table.to_parquet(p, index=False))
    ep_table = pd.concat(eps, ignore_index=True) if eps else pd.DataFrame(columns=list(EPISODE_COLUMNS))
    _atomic(job.dir / "episodes.csv", lambda p: ep_table.to_csv(p, index=False))
    files = [f for f in ("summary.csv", "summary.parquet", "episodes.csv", "failures.csv") if (job.dir / f).exists()]
    _atomic(job.dir / "index.html", lambda p: Path(p).write_text(index_html(table, classes, files), encoding="utf-8"))
    return {"summary": len(table), "episodes": len(ep_table)}


def index_html(table, classes: Sequence[str], files: Sequence[str] = ()) -> str:
    """The self-contained index page: the summary table, each video's source linking its timeline; links to `files`
    (names in the job folder)."""
    esc = html.escape
    head = ["source", "kind", "duration (s)", "frames", "faces lost", *classes, "episodes"]

    def cell(v, digits=3):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    body = []
    for r in table.to_dict("records"):
        name = esc(str(r["source"]))
        link = f'<a href="{esc(quote(r["timeline"]))}">{name}</a>' if isinstance(r["timeline"], str) \
            else name
        tds = [link, esc(str(r["kind"])), cell(r["duration_s"], 2), cell(r["frames"]), cell(r["faces_lost"]),
               *(cell(r[f"share_{c}"]) for c in classes), cell(r["episodes"])]
        body.append("<tr>" + "".join(f"<td>{t}</td>" for t in tds) + "</tr>")
    legend = " ".join(f'<span class="sw" style="background:{esc(colour(c, classes))}"></span>{esc(c)}'
                      for c in classes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vrfer batch report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child, th:first-child {{ text-align: left; }}
.sw {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.25em 0 0.8em; vertical-align: middle; }}
</style></head><body>
<h1>vrfer batch report</h1>
<p>{len(table)} inputs. Share of the time with a face per expression (smoothed label where present), faces lost
(frames with no face or a held face), episodes (runs of one expression lasting at least {MIN_EPISODE_S} s). Click a
video for its timeline. Files: {", ".join(f'<a href="{esc(quote(f))}">{esc(f)}</a>' for f in files)}</p>
<p>{legend}</p>
<table>
<tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>
{chr(10).join(body)}
</table>
</body></html>
"""


def _job_classes(job, entries) -> list[str]:
    import pyarrow.parquet as pq
    if entries:                            # the model's classes, as its rows name them
        return classes_of(pq.read_schema(job.frames / f"{entries[0]['key']}.parquet").names)
    return list(CLASSES)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name("_" + path.name)
    write(tmp)
    os.replace(tmp, path)
