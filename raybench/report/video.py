"""The report's video table: each video cell (MARS, iLIDS-VID, ...) with what it embedded and
how it pooled, beside its tracklet metrics.

A video cell's result says what was embedded (``video``: tracklets, frames, the
``embed_frames`` rule, the frames of the copy it left out, tracklets that lost frames to
unreadable files, the copy's note) and how each block pooled the frames (the protocol's and each
variant's ``pool`` and ``frames``). The grids above already show its mAP / Rank-1 (over
tracklets); this table puts the rest beside them, so that a reader sees which pooling a number
belongs to and whether every frame was there.
"""

from __future__ import annotations

from raybench.report.load import Run
from raybench.report.tables import md_table, pct


def video_section(run: Run) -> list[str]:
    """The section's Markdown parts (none for a run without video cells)."""
    cells = [c for c in run.cells if c.ok and c.result.video is not None]
    if not cells:
        return []
    variants = list(dict.fromkeys(name for c in cells for name in (c.result.variants or {})))
    header = ["model", "dataset", "pooling", "valid / query tracklets", "gallery tracklets", "frames embedded",
              "mAP", "R1", *(f"mAP ({name})" for name in variants), "unreadable frames"]
    lines = [[c.model, c.dataset, pooling(c.result.protocol or {}), f"{c.result.num_valid_query} / {c.result.num_query}",
              str(c.result.num_gallery), frames(c.result.video), pct(c.value("mAP")), pct(c.value("R1")),
              *(pct(c.value("mAP", name)) for name in variants), lost(c.result.video)] for c in cells]
    parts = ["## Video ReID: tracklets",
             "Each tracklet's frames are embedded as images, then pooled into one vector (pooling: how, over "
             "which frames; L2-normalised after pooling where the eval block normalises) and tracklets are "
             "ranked: the counts and metrics are over tracklets. `evenly:N` is torchreid's test sampling (N "
             "frames at a fixed stride, a short tracklet's last frame repeated); each variant re-scores the "
             "same stored frames with its own pooling (docs/video.md).", md_table(header, lines)]
    variant_poolings = {name: pooling(scores.scoring or {}) for c in cells for name, scores in
                        (c.result.variants or {}).items()}
    if variant_poolings:
        parts.append("Variants' pooling: " + "; ".join(f"`{n}` {p}" for n, p in variant_poolings.items()) + ".")
    notes = sorted({f"{c.dataset}: {c.result.video['note']}" for c in cells if c.result.video.get("note")})
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes))
    return parts


def pooling(stated) -> str:
    """"mean of all frames", "max of evenly:15 frames"."""
    return f"{stated.get('pool', 'mean')} of {stated.get('frames', 'all')} frames"


def frames(video) -> str:
    """Frames embedded, and the rule that chose them where it left frames of the copy out."""
    text = f"{video.get('frames', 0):,}"
    if video.get("embed_frames", "all") != "all":
        text += f" of {video.get('frames_in_copy', 0):,} ({video['embed_frames']})"
    return text


def lost(video) -> str:
    """Tracklets scored from part of their frames, and tracklets left out (no frame readable)."""
    parts = []
    if video.get("partial_count"):
        parts.append(f"{video['partial_count']} tracklet(s) partly: " + ", ".join(
            f"{name} ({kept})" for name, kept in video.get("partial", {}).items()))
    if video.get("skipped_count"):
        parts.append(f"{video['skipped_count']} tracklet(s) skipped: " + ", ".join(video.get("skipped", [])))
    return "; ".join(parts) or "-"
