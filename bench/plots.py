"""PNG figures: per-stream language timelines and the load curve (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def _colour(lang: str, palette: dict) -> str:
    base = lang.split("-")[0].lower()
    if base not in palette:
        palette[base] = _COLOURS[len(palette) % len(_COLOURS)]
    return palette[base]


def timeline(trace, finals, path: Path) -> None:
    """Reference languages vs emitted finals over stream time; ticks mark when each final arrived."""
    palette: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(10, 2.6))
    for ref in trace.entry.segments:
        ax.barh(1, ref.end_s - ref.start_s, left=ref.start_s, height=0.6, color=_colour(ref.language, palette))
    for f in finals:
        ax.barh(0, f.end_s - f.start_s, left=f.start_s, height=0.6, color=_colour(f.language, palette),
                edgecolor="black", linewidth=0.5)
        if trace.realtime:
            ax.plot([f.arrival_s, f.arrival_s], [-0.4, 0.4], color="black", linewidth=1)
    ax.set_yticks([0, 1], ["Tandem finals\n(| = arrival)", "reference"])
    ax.set_xlabel("stream time (s)")
    ax.set_title(trace.entry.id)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
    ax.legend(handles, list(palette), loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_curve(rows: list[dict], path: Path, bound_s: float = 1.5) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label in sorted({r["label"] for r in rows}):
        pts = [r for r in rows if r["label"] == label and r["final_latency_s"]["p95"] is not None]
        ax.plot([r["streams"] for r in pts], [r["final_latency_s"]["p95"] for r in pts], marker="o", label=f"{label} p95")
        ax.plot([r["streams"] for r in pts], [r["final_latency_s"]["p50"] for r in pts], marker=".", linestyle="--",
                label=f"{label} p50")
    ax.axhline(bound_s, color="red", linewidth=0.8)
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("end of speech → final (s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
