"""Rank lists of text queries: for a seeded sample of a caption cell's query captions, the
caption and its top-10 test images, as raybench.eval.text ranked them.

The ranking is recomputed from the stored embeddings with the scorer's arithmetic (cosine:
both sides L2-normalised, ties by image index, the lower first), against the same images
(``store.text_gallery``). Borders: green, an image of the caption's identity; red, another.
The numbers in the header are the result JSON's ``text`` block.
"""

from __future__ import annotations

from raybench.report.load import Cell
from raybench.report.rankhtml import CSS, TOP_K, Thumbs, escape, figure, pct


def text_page(cell: Cell, store, n_queries: int, seed: int) -> str:
    """The page of one caption cell (its result has a ``text`` block)."""
    import numpy as np

    from raybench.eval.text import unit_rows
    from raybench.rundir.store import embedding_matrix, text_gallery

    images = text_gallery(store.read_embeddings(cell.dataset, cell.model))
    captions = store.read_text_embeddings(cell.dataset, cell.model)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(captions.num_rows, size=min(n_queries, captions.num_rows), replace=False))
    sim = unit_rows(embedding_matrix(captions.take(chosen), "text embeddings")) @ unit_rows(embedding_matrix(images)).T
    paths, pids = images.column("path").to_pylist(), images.column("pid").to_numpy()
    text = cell.result.text
    title = f"{cell.model} x {cell.dataset}: text queries"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{CSS}.caption{{width:220px;flex:none;font-size:12px}}</style></head><body>",
        f"<h1>Rank list: {escape(title)}</h1><p class='meta'>Text-to-image R1 {pct(text.value('R1'))}, "
        f"R5 {pct(text.value('R5'))}, R10 {pct(text.value('R10'))}, mAP {pct(text.mAP)} over "
        f"{text.num_query} captions and {text.num_gallery} images. {len(chosen)} "
        f"captions sampled (seed {seed}). Cosine similarity. Borders: <b style='color:#2ca02c'>green</b> "
        "the caption's identity, <b style='color:#d62728'>red</b> another identity.</p>",
    ]
    thumbs = Thumbs()
    for row, index in enumerate(chosen.tolist()):
        order = np.argsort(-sim[row], kind="stable")
        pid = int(captions.column("pid")[index].as_py())
        hits = np.flatnonzero(pids[order] == pid)
        first = int(hits[0]) + 1 if len(hits) else None
        cells = [f"<div class='caption'>&ldquo;{escape(captions.column('caption')[index].as_py())}&rdquo;<br>"
                 f"pid {pid}<br>first match #{first or '-'}</div><div class='sep'></div>"]
        for k, gi in enumerate(order[:TOP_K].tolist(), 1):
            cls = "hit" if pids[gi] == pid else "miss"
            cells.append(figure(cls, paths[gi], f"#{k}<br>pid {pids[gi]}<br>{sim[row, gi]:.3f}", thumbs))
        parts.append("<div class='row'>" + "".join(cells) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)

