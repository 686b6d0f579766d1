"""Draw the documentation's figures from the library itself.

Every picture of a batch in these docs is computed by ``dask_cumbatch`` while the docs build
(``docs/conf.py`` calls :func:`main` when the builder starts), so a figure can never disagree
with the code. Run it by hand with::

    python docs/figures.py [OUTDIR]        # default: docs/_generated

Figures:

* ``mode-greedy.png``, ``mode-fill.png``, ``mode-floor.png``: the same twelve weights cut by
  each mode (limit 10);
* ``max-rows.png``, ``by.png``, ``padded.png``, ``multiple.png``, ``invalid.png``: one option
  each, drawn against the plain greedy cut of the same rows;
* ``plan-plot.png``: :meth:`BatchPlan.plot` on the demo data;
* ``task-graph.png``: the task graphs Dask actually runs for ``ids`` and ``repartition``;
* ``meet.png``: where a partition's speculative batch starts meet the true ones;
* ``follow-timeline.png``: a followed export's run as ``benchmarks/bench_follow.py`` recorded it
  (``docs/_bench_follow.json``): rows arrived and rows in closed batches against time. The one
  figure drawn from a recorded measurement rather than computed during the build.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import dask_cumbatch  # noqa: E402,F401  (registers the accessors)

#: The small weight sequence every semantics figure cuts.
WEIGHTS = [4, 3, 5, 2, 6, 1, 3, 7, 2, 4, 5, 1]
LIMIT = 10
KEYS = ["a"] * 3 + ["b"] * 4 + ["c"] * 5
INVALID = [4, 3, np.nan, 5, 2, -1, 6, 1, 3]

PALETTE = plt.get_cmap("tab10").colors
GRAPH_PALETTE = plt.get_cmap("tab20").colors
LIMIT_COLOR = "#c0392b"
DPI = 110


def batch_ids(weights, limit, keys=None, **options) -> list:
    """The ids the library gives ``weights`` (``None`` for a skipped row)."""
    df = pd.DataFrame({"w": weights})
    if keys is not None:
        df["k"] = keys
        options["by"] = "k"
    ids = df.cumbatch.ids("w", limit, **options)
    return [None if pd.isna(v) else int(v) for v in ids]


def _color(batch):
    return PALETTE[batch % len(PALETTE)] if batch is not None else "#bbbbbb"


def draw_strip(ax, weights, ids, limit, title, keys=None, grid=False):
    """The rows in order as a ribbon along the cumulative weight, coloured by batch."""
    x = 0.0
    starts = []
    prev = object()
    for i, (w, b) in enumerate(zip(weights, ids)):
        if b is None:  # a skipped row takes no room on the ribbon
            ax.plot([x], [1.12], marker="v", color=LIMIT_COLOR, markersize=7)
            label = "NaN" if np.isnan(w) else f"{w:g}"
            ax.text(x, 1.22, f"skipped: {label}", ha="center", va="bottom", fontsize=7, color=LIMIT_COLOR)
            continue
        if b != prev:
            starts.append(x)
            prev = b
        ax.add_patch(Rectangle((x, 0), w, 1, facecolor=_color(b), edgecolor="white", lw=1.2, alpha=0.9))
        ax.text(x + w / 2, 0.5, f"{w:g}", ha="center", va="center", fontsize=8, color="white", weight="bold")
        x += w
    for s in starts[1:]:
        ax.plot([s, s], [-0.15, 1.15], color="black", lw=2)
    if keys is not None:
        y = -0.45
        pos = 0.0
        run_start, run_key = 0.0, None
        for w, k, b in zip(weights, keys, ids):
            if k != run_key:
                if run_key is not None:
                    _key_band(ax, run_start, pos, y, run_key)
                run_start, run_key = pos, k
            pos += 0 if b is None else w
        _key_band(ax, run_start, pos, y, run_key)
    if grid:
        for m in np.arange(limit, x + limit, limit):
            ax.axvline(m, color=LIMIT_COLOR, ls="--", lw=1)
        ax.set_xticks(np.arange(0, x + limit, limit))
    ax.set_xlim(-0.5, max(x, 1) + 0.5)
    ax.set_ylim(-0.8 if keys is not None else -0.3, 1.6)
    ax.set_yticks([])
    ax.set_xlabel("cumulative weight" + (f" (dashed: multiples of the limit {limit})" if grid else ""))
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, loc="left", fontsize=10)


def _key_band(ax, a, b, y, key):
    ax.annotate("", xy=(a + 0.1, y), xytext=(b - 0.1, y), arrowprops=dict(arrowstyle="<->", color="0.35"))
    ax.text((a + b) / 2, y - 0.05, f"by = {key!r}", ha="center", va="top", fontsize=8, color="0.25",
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5))


def draw_columns(ax, weights, ids, limit, cost="sum", title="batches"):
    """Each batch as a column of its rows stacked, against the limit."""
    batches = {}
    for w, b in zip(weights, ids):
        if b is not None:
            batches.setdefault(b, []).append(w)
    top = 0.0
    for b, rows in batches.items():
        if cost == "padded":
            mx = max(rows)
            for j, w in enumerate(rows):
                ax.add_patch(Rectangle((b - 0.35, j * mx), 0.7, w, facecolor=_color(b), edgecolor="white"))
                ax.add_patch(Rectangle((b - 0.35, j * mx + w), 0.7, mx - w, facecolor="white",
                                       edgecolor="0.55", hatch="///", lw=0.5))
            height = mx * len(rows)
            label = f"{len(rows)}x{mx:g}={height:g}"
        else:
            y = 0.0
            for w in rows:
                ax.add_patch(Rectangle((b - 0.35, y), 0.7, w, facecolor=_color(b), edgecolor="white", lw=1.2))
                ax.text(b, y + w / 2, f"{w:g}", ha="center", va="center", fontsize=7, color="white")
                y += w
            height = y
            label = f"{height:g}"
        ax.text(b, height + 0.3, label, ha="center", va="bottom", fontsize=8)
        top = max(top, height)
    ax.axhline(limit, color=LIMIT_COLOR, ls="--", lw=1.2)
    ax.text(len(batches) - 0.4, limit, f" limit {limit:g}", color=LIMIT_COLOR, va="center", ha="left",
            fontsize=8, clip_on=False)
    ax.set_xlim(-0.6, max(len(batches), 1) - 0.4)
    ax.set_ylim(0, max(top, limit) * 1.25)
    ax.set_xticks(range(len(batches)))
    ax.set_xlabel("batch id")
    ax.set_ylabel("padded cost (rows x max)" if cost == "padded" else "batch total")
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, loc="left", fontsize=10)


def _save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def mode_figure(path, mode):
    ids = batch_ids(WEIGHTS, LIMIT, mode=mode)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.6), gridspec_kw={"height_ratios": [1, 1.6]})
    draw_strip(top, WEIGHTS, ids, LIMIT, f'mode="{mode}", limit={LIMIT}: ids {ids}', grid=(mode == "floor"))
    draw_columns(bottom, WEIGHTS, ids, LIMIT)
    fig.tight_layout()
    _save(fig, path)


def compare_figure(path, weights, limit, label, columns_cost="sum", keys=None, baseline=True, **options):
    """Plain greedy on top (``baseline``), the option below, and the option's batches as columns."""
    ids = batch_ids(weights, limit, keys=keys, **options)
    heights = ([1] if baseline else []) + [1.25 if keys else 1, 1.6]
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, 2.1 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    if baseline:
        plain = batch_ids(weights, limit)
        draw_strip(axes[0], weights, plain, limit, f'mode="greedy", limit={limit}: ids {_fmt(plain)}')
    draw_strip(axes[-2], weights, ids, limit, f"{label}, limit={limit}: ids {_fmt(ids)}", keys=keys)
    draw_columns(axes[-1], weights, ids, limit, cost=columns_cost, title=f"batches with {label}")
    fig.tight_layout()
    _save(fig, path)


def _fmt(ids):
    return "[" + ", ".join("NA" if b is None else str(b) for b in ids) + "]"


def plan_plot_figure(path):
    from dask_cumbatch.demo import make_frame

    plan = make_frame(100_000, seed=0).cumbatch.plan("tokens", 8192)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    plan.plot(ax=ax)
    fig.tight_layout()
    _save(fig, path)


def _ribbon(ax, weights, starts, y, colors, x0=0.0):
    """Rows end to end from ``x0`` at height ``y``; ``starts`` are the local rows that start a batch."""
    x, k = x0, -1
    for i, w in enumerate(weights):
        if i in starts:
            k += 1
            if i:
                ax.plot([x, x], [y - 0.1, y + 0.9], color="black", lw=2)
        ax.add_patch(Rectangle((x, y), w, 0.8, facecolor=colors(k), edgecolor="white", lw=1, alpha=0.9))
        ax.text(x + w / 2, y + 0.4, f"{w:g}", ha="center", va="center", fontsize=7, color="white", weight="bold")
        x += w


def meet_figure(path, seed=3, split=10, rows=30, limit=20):
    """Where the speculative path of a partition meets the true one (the scan's fix-up)."""
    w = np.random.default_rng(seed).integers(1, 10, rows)
    full = batch_ids(w, limit)
    spec = batch_ids(w[split:], limit)  # the partition on its own: from an empty batch
    part = w[split:]
    true_starts = {i for i in range(len(part)) if full[split + i] != full[split + i - 1]}
    spec_starts = {i for i in range(len(part)) if i == 0 or spec[i] != spec[i - 1]}
    common = sorted(true_starts & spec_starts)
    if not common:
        raise RuntimeError("pick data where the paths meet")
    meet = common[0]
    open_rows = [i for i in range(split) if full[i] == full[split - 1]]
    carried = int(sum(w[i] for i in open_rows)) if full[split] == full[split - 1] else 0
    # colour batches by their order after the meeting row, so shared batches share colours
    spec_k = sum(1 for i in spec_starts if i <= meet) - 1
    true_k = sum(1 for i in true_starts if i <= meet) - 1
    fig, ax = plt.subplots(figsize=(9, 3.4))
    greys = ("#8c8c8c", "#b5b5b5")  # before the meeting row the two paths' batches differ

    def colors(first):
        return lambda k: PALETTE[(k - first) % len(PALETTE)] if k >= first else greys[(first - k) % 2]

    _ribbon(ax, part, spec_starts, 1.4, colors(spec_k))
    _ribbon(ax, part, true_starts, 0.0, colors(true_k))
    if carried:
        ax.add_patch(Rectangle((-carried, 0), carried, 0.8, facecolor=colors(true_k)(-1 if 0 not in true_starts else -2),
                               edgecolor="white", hatch="..."))
        ax.text(-carried / 2, -0.12, f"carried in:\nopen batch,\ntotal {carried}", ha="center", va="top", fontsize=7)
    xm = float(sum(part[:meet]))
    ax.axvline(xm, color="#2ca02c", lw=2.5, ls="--")
    ax.text(xm + 0.5, 2.45, f"paths meet at row {meet} of the partition:\nfrom here on the speculative "
            "starts are the true ones", fontsize=8, color="#1a6e1a", va="bottom")
    ax.annotate("", xy=(0, -0.35), xytext=(xm, -0.35), arrowprops=dict(arrowstyle="<->", color="0.3"))
    ax.text(xm / 2, -0.45, "the scan walks only these rows", ha="center", va="top", fontsize=8)
    ax.text(-1.5 - carried, 1.8, "speculative: the partition\nalone, from an empty batch", ha="right",
            va="center", fontsize=8)
    ax.text(-1.5 - carried, 0.4, "true: with the state\ncarried from partition 0", ha="right", va="center",
            fontsize=8)
    ax.set_xlim(-carried - 1, sum(part) + 1)
    ax.set_ylim(-0.9, 3.1)
    ax.set_yticks([])
    ax.set_xlabel(f"cumulative weight inside partition 1 (greedy, limit {limit})")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- task graphs


def graph_edges(collection_or_graph) -> dict:
    """``{key: set(dependencies)}`` of a Dask collection's (or a graph's) tasks."""
    from dask.core import get_dependencies

    graph = collection_or_graph
    if hasattr(graph, "__dask_graph__"):
        graph = graph.__dask_graph__()
    graph = dict(graph)
    return {k: set(get_dependencies(graph, k)) for k in graph}


_TOKEN = re.compile(r"-(?:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{16,})")


def _prefix(key) -> str:
    """The readable part of a task key: ``('finish_frame-1a2b...', 3)`` -> ``finish_frame``."""
    name = str(key[0] if isinstance(key, tuple) else key)
    return _TOKEN.sub("", name).lstrip("_") or name


ALIASES = ("fromdelayed", "delayed-container", "finalize")


def _label(key, edges, shared) -> str:
    if key in shared:
        return "scan result"
    if len(edges.get(key, ())) > 1:
        return "gather"
    return _prefix(key)


def collapse(edges: dict):
    """Drop pass-through tasks (one input, renaming only) so the picture shows the work.

    Returns ``(edges, partition)`` where ``partition`` maps each task to the partition number
    it belongs to, taken from its key, from a pass-through that named it, or from its input.
    """
    edges = {k: set(v) for k, v in edges.items()}
    partition = {k: k[-1] for k in edges if isinstance(k, tuple) and isinstance(k[-1], int)}
    for key in [k for k in edges if _prefix(k).startswith(ALIASES) and len(edges[k]) == 1]:
        (dep,) = edges.pop(key)
        if key in partition and dep not in partition:
            partition[dep] = partition[key]
        partition.pop(key, None)
        for deps in edges.values():
            if key in deps:
                deps.discard(key)
                deps.add(dep)
    for k in sorted(edges, key=lambda k: _layers(edges)[k]):
        if k not in partition and len(edges[k]) == 1:
            (dep,) = edges[k]
            if dep in partition:
                partition[k] = partition[dep]
    return edges, partition


def graph_depth(edges: dict) -> int:
    """The longest chain of tasks (the number of tasks that must run one after the other)."""
    return 1 + max(_layers(edges).values(), default=-1)


def _layers(edges):
    memo = {}

    def level(k):
        if k not in memo:
            memo[k] = 1 + max((level(d) for d in edges[k] if d in edges), default=-1)
        return memo[k]

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    return {k: level(k) for k in edges}


def draw_graph(ax, graph, title, colors, extra_sink=None):
    """Layered drawing of a task graph: sources at the bottom, one row per depth.

    ``graph`` is ``(edges, partition)`` from :func:`collapse`. The tasks of partition k sit in
    column k; others over the mean column of their inputs. ``colors`` maps task names to
    colours and is shared by all panels of a figure.
    """
    edges, partition = graph
    layers = _layers(edges)
    if extra_sink:
        name, deps = extra_sink
        layers[name] = 1 + max(layers[d] for d in deps)
        edges = {**edges, name: set(deps)}
    # a source shared by many tasks (the scan's result shipped to every finish task) is drawn
    # between the rows, not in a partition's column
    users = {k: sum(k in deps for deps in edges.values()) for k in edges}
    shared = {k for k in edges if not edges[k] and users[k] > 1}
    partition = {k: v for k, v in partition.items() if k not in shared}
    ncols = max(partition.values(), default=0) + 1
    pos = {}
    for k in sorted(edges, key=lambda k: layers[k]):
        if k in partition:
            x = (partition[k] + 0.5) / ncols
        else:
            x = float(np.mean([pos[d][0] for d in edges[k] if d in pos] or [0.5]))
        pos[k] = [x, layers[k] + (0.5 if k in shared else 0)]
    cells = {}  # tasks of different names in one cell: put them side by side
    for k, (x, y) in pos.items():
        cells.setdefault((round(x, 6), y), []).append(k)
    width = {}
    for ks in cells.values():
        for i, k in enumerate(sorted(ks, key=_prefix)):
            pos[k][0] += (i - (len(ks) - 1) / 2) * 0.36 / ncols
            width[k] = (0.32 if len(ks) > 1 else 0.55) / ncols if k in partition else 0.2
    for k, deps in edges.items():
        for d in deps:
            if d in pos:
                (x0, y0), (x1, y1) = pos[d], pos[k]
                ax.annotate("", xy=(x1, y1 - 0.17), xytext=(x0, y0 + 0.17),
                            arrowprops=dict(arrowstyle="-|>", color="0.45", lw=0.8, shrinkA=0, shrinkB=0))
    for k, (x, y) in pos.items():
        name = _prefix(k)
        colors.setdefault(name, GRAPH_PALETTE[(2 * len(colors)) % 20 + (len(colors) // 10) % 2])
        ax.add_patch(Rectangle((x - width[k] / 2, y - 0.17), width[k], 0.34, facecolor=colors[name],
                               edgecolor="black", lw=0.6, alpha=0.9))
        label = str(partition[k]) if k in partition else _label(k, edges, shared)
        ax.text(x, y, label, ha="center", va="center", fontsize=7)
    names = sorted({_prefix(k) for k in pos}, key=lambda n: min(layers[k] for k in pos if _prefix(k) == n))
    for name in names:
        ax.plot([], [], "s", color=colors[name], label=name, markersize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    top = max(layers.values())
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, top + 0.5)
    ax.set_yticks(range(top + 1))
    ax.set_ylabel("depth")
    ax.set_xticks([(i + 0.5) / ncols for i in range(ncols)], [str(i) for i in range(ncols)])
    ax.set_xlabel("partition")
    ax.set_title(title, loc="left", fontsize=10)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)


def capture_summary_graph(ddf, weight, limit):
    """Run ``ids`` and record the graph of the summary pass: the first graph it computes.

    ``ids`` computes the summaries at once (step 1) and returns the finish lazily, so the
    first graph handed to Dask's ``compute`` is the summary pass.
    """
    import dask
    import dask.base

    captured = []
    original = dask.base.compute

    def recording(*args, **kw):
        graph = {}
        for a in args:
            if hasattr(a, "__dask_graph__"):
                graph.update(dict(a.__dask_graph__()))
        captured.append(graph)
        return original(*args, **kw)

    with mock.patch.object(dask.base, "compute", recording), mock.patch.object(dask, "compute", recording):
        ddf.cumbatch.ids(weight, limit)
    if not captured or not captured[0]:
        raise RuntimeError("could not record the summary pass: did dask_cumbatch.dask.summaries change how it computes?")
    return captured[0]


def task_graph_figure(path, npartitions=6):
    import dask.dataframe as dd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"w": rng.integers(1, 10, 12 * npartitions)})
    ddf = dd.from_pandas(df, npartitions=npartitions)
    summary = collapse(graph_edges(capture_summary_graph(ddf, "w", 40)))
    sinks = [k for k in summary[0] if not any(k in d for d in summary[0].values())]
    out = ddf.cumbatch.repartition("w", 40)
    finish = collapse(graph_edges(out))
    cumsum = collapse(graph_edges(ddf.w.cumsum()))
    depth = graph_depth(cumsum[0])
    fig, axes = plt.subplots(3, 1, figsize=(8.5, 10), gridspec_kw={"height_ratios": [3, 3, depth]})
    colors = {}
    draw_graph(axes[0], summary, f"steps 1 and 2: one summary per partition, gathered into one scan",
               colors, extra_sink=("scan (in the caller)", sinks))
    draw_graph(axes[1], finish, "step 3: finish, then repartition at batch boundaries (narrow, no shuffle)",
               colors)
    draw_graph(axes[2], cumsum, f"for comparison, ddf.w.cumsum(): a chain, depth {depth} for "
                                f"{npartitions} partitions", colors)
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- entry point

def follow_timeline_figure(path, record=Path(__file__).parent / "_bench_follow.json"):
    """Rows arrived and rows in committed batches against time, from bench_follow's record."""
    import json

    r = json.loads(Path(record).read_text())
    arrived = np.arange(1, len(r["arrivals"]) + 1) * r["rows_per_file"]
    fig, (ax, lag) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=[3, 2])
    ax.step(r["arrivals"], arrived / 1e6, where="post", label="rows arrived (input files)", color="#888")
    t = [c["t"] for c in r["commits"]]
    ax.step(t, [c["rows"] / 1e6 for c in r["commits"]], where="post", label="rows exported (each append's commit)",
            color="#1f77b4")
    ax.set_ylabel("million rows")
    ax.set_title(f"export --follow: {r['files']} files of {r['rows_per_file']:,} rows every {r['every']:g} s, "
                 f"poll {r['poll']:g} s", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    closed = r["latencies"]
    lag.plot(r["arrivals"][:len(closed)], closed, ".", ms=3, color="#1f77b4",
             label=f"arrival to closed batch (p50 {r['p50']:.2f} s, p99 {r['p99']:.2f} s)")
    lag.axhline(r["poll"] + 1, color="#d62728", lw=1, ls="--", label="target: poll + 1 s")
    lag.set_ylim(0, max(r["poll"] + 1.5, max(closed) * 1.1))
    lag.set_xlabel("seconds")
    lag.set_ylabel("latency (s)")
    lag.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = {
    "mode-greedy.png": lambda p: mode_figure(p, "greedy"),
    "mode-fill.png": lambda p: mode_figure(p, "fill"),
    "mode-floor.png": lambda p: mode_figure(p, "floor"),
    "max-rows.png": lambda p: compare_figure(p, WEIGHTS, 20, "max_rows=3", max_rows=3),
    "by.png": lambda p: compare_figure(p, WEIGHTS, LIMIT, 'by="k"', keys=KEYS),
    "padded.png": lambda p: compare_figure(p, WEIGHTS, 20, 'cost="padded"', columns_cost="padded", cost="padded"),
    "multiple.png": lambda p: compare_figure(p, WEIGHTS, 20, "multiple=4", multiple=4),
    "invalid.png": lambda p: compare_figure(p, INVALID, LIMIT, 'invalid="skip"', baseline=False, invalid="skip"),
    "plan-plot.png": plan_plot_figure,
    "task-graph.png": task_graph_figure,
    "meet.png": meet_figure,
    "follow-timeline.png": follow_timeline_figure,
}


def main(outdir=None, only_missing=False) -> list[Path]:
    """Write every figure into ``outdir`` (default ``docs/_generated``); return the paths."""
    outdir = Path(outdir) if outdir else Path(__file__).parent / "_generated"
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        path = outdir / name
        if only_missing and path.exists():
            continue
        draw(path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(sys.argv[1] if len(sys.argv) > 1 else None):
        print(p)
