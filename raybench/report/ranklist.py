"""Rank lists: one self-contained HTML page per cell, showing what the metrics summarise.

For a seeded sample of a cell's valid queries, the page shows the query and its top-10
gallery images from the stored embeddings, bordered green (same identity) or red (another
identity), with pid and camera under each. Thumbnails are embedded as base64 JPEG, so a page
can be mailed or committed on its own.

The ranking is recomputed for the sampled queries with the metrics' own distance code and the
cell's recorded protocol (distance, L2 normalisation, same-camera filtering; the first trial of
multi-trial datasets; no re-ranking). On a dataset with scoring settings the page ranks as the
headline setting (the main figures) does: its queries and gallery cameras, and its clothes
rule (cc drops the query's person in the query's outfit, sc in any other); each image shows
its clothes key where the dataset has one.
The numbers on the page (AP, rank of the first true match) are the result JSON's; the page
says so where its own ranking disagrees with them. A cell whose gallery held a distractor set
(its result's ``distractors``) ranks the set too, a block of it at a time: each block's top-k
merged (eval.shard.block_top_k, merge_top_k, ordered as the metrics order: by distance, then
the dataset's gallery before the set), and the distractors before the first true match
counted, so no more than a block of the set is in memory. A dataset without image queries (scored
leave-one-out) samples its test images as queries, each ranked against the others. A cell
with text queries also gets a caption page (textrank.py). A video cell ranks tracklets: its
stored frames are pooled as its result says (protocol ``pool`` and ``frames``,
raybench.eval.tracklets) and each tracklet is shown as a strip of a few of its frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from raybench.errors import RaybenchError
from raybench.report.load import Cell, Run
from raybench.report.rankhtml import CSS, STRIP_FRAMES, TOP_K, Thumbs, escape, figure, pct, strip

@dataclass(frozen=True)
class Shown:
    """One rank-list line: a query and its top-k gallery rows (indices into the gallery)."""

    query: int
    top: tuple[int, ...]
    first_match: int | None  # 1-based rank of the first true match in this page's ranking
    stored: Mapping[str, Any]  # the result's per-query numbers (ap, first_match), may be empty


def write_ranklists(run: Run, out: Path, n_queries: int, seed: int, notes: list[str]) -> list[Path]:
    """A page per ok cell that has stored embeddings, and an index page."""
    pages = []
    for cell in run.cells:
        if not cell.ok:
            continue
        try:
            meta, emb = load_embeddings(run.store, cell.dataset, cell.model)
            strips = None
            if "tracklet" in meta:
                meta, emb, strips = tracklets(meta, emb, cell.result.protocol or {})
            extra = Distractors(run.store, cell.result.distractors["name"], cell.model) \
                if cell.result.distractors else None
            page = cell_page(cell, meta, emb, n_queries, seed, strips, extra)
        except (OSError, KeyError, ValueError, RaybenchError) as exc:
            # one unreadable embeddings folder (a truncated part, an older layout) costs that
            # cell its page, not the whole report: the tables come from the result JSONs
            folder = run.store.path(run.store.embeddings_dir(cell.dataset, cell.model))
            notes.append(f"No rank list for {cell.model} x {cell.dataset}: its embeddings in {folder} could "
                         f"not be read ({exc}); delete that folder and run the matrix again to rebuild it.")
            continue
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{_slug(cell.dataset)}__{_slug(cell.model)}.html"
        path.write_text(page)
        pages.append((cell, path))
        if cell.result.text is not None:
            from raybench.report.textrank import text_page

            try:
                page = text_page(cell, run.store, n_queries, seed)
            except (OSError, KeyError, ValueError, RaybenchError) as exc:
                notes.append(f"No caption rank list for {cell.model} x {cell.dataset}: {exc}")
                continue
            path = out / f"{_slug(cell.dataset)}__{_slug(cell.model)}__text.html"
            path.write_text(page)
            pages.append((cell, path))
    if not pages:
        return []
    index = out / "index.html"
    index.write_text(_index_page(run, pages))
    return [index, *(p for _, p in pages)]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def load_embeddings(store, dataset: str, model: str):
    """(columns as numpy arrays, embeddings [N, dim] float32) of a committed cell, read through
    the store's one reader."""
    from raybench.rundir.store import embedding_matrix

    table = store.read_embeddings(dataset, model)
    meta = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names if k != "embedding"}
    return meta, embedding_matrix(table)


def tracklets(meta: Mapping[str, Any], emb, protocol: Mapping[str, Any]):
    """A video cell's frames as its scoring saw them: (tracklet columns, their pooled
    embeddings, each tracklet's frame paths in frame order), pooled by the result's pool and
    frames (raybench.eval.tracklets)."""
    import numpy as np

    from raybench.eval.tracklets import pool_tracklets

    pooled = pool_tracklets({**meta, "embedding": emb, "trial": meta.get("trial")}, protocol.get("pool", "mean"),
                            protocol.get("frames", "all"))
    keep = ("path", "pid", "camid", "split") + (("trial",) if pooled["trial"] is not None else ())
    frames: dict[str, list[tuple[int, str]]] = {}
    for name, frame, path in zip(meta["tracklet"], meta["frame"], meta["path"]):
        frames.setdefault(str(name), []).append((int(frame), str(path)))
    strips = {name: [p for _, p in sorted(set(pairs))] for name, pairs in frames.items()}
    return {k: np.asarray(pooled[k]) for k in keep}, pooled["embedding"], strips


def rank(query, gallery, distance: str = "euclidean", normalize: bool = True):
    """[Q, G] distances exactly as the metrics computed them (raybench.eval's arithmetic, on
    the CPU), so that the page's ranking is the scored one. Smaller is closer."""
    from raybench.eval.distance import DistanceRows, prepare_features

    q, g = prepare_features(query, gallery, distance=distance, normalize=normalize, device="cpu")
    return DistanceRows(g, distance)(q).numpy()


def _not_shown(protocol: Mapping[str, Any]) -> list[str]:
    """The eval steps the metrics took that a page's plain distances leave out."""
    return (["query expansion"] if protocol.get("aqe_k") else []) + (["re-ranking"] if protocol.get("rerank") else [])


class Distractors:
    """A cell's distractor set, read a block of rows at a time (the module docstring)."""

    BLOCK = 1 << 16

    def __init__(self, store, name: str, model: str):
        self.store, self.name, self.model = store, name, model
        rows = store.read_rows(name, model)
        self.rows = rows.column("row").to_numpy()
        self.paths = rows.column("path").to_numpy(zero_copy_only=False)

    def rank(self, queries, first: list[float | None], distance: str, normalize: bool, k: int):
        """(top-k distances [Q, k], top-k set rows [Q, k], how many of the set rank before each
        query's first true match at distance ``first`` (None: no match)) over the whole set."""
        import numpy as np

        from raybench.eval.shard import block_top_k, merge_top_k

        tops, before = [], np.zeros(len(queries), np.int64)
        bound = np.array([np.inf if f is None else f for f in first])
        for a in range(0, len(self.rows), self.BLOCK):
            block = self.store.read_embedding_rows(self.name, self.model, self.rows[a:a + self.BLOCK])
            d = rank(queries, block, distance, normalize)
            tops.append(block_top_k(d, a, k))
            before += (d < bound[:, None]).sum(axis=1)  # the dataset's own gallery comes first on ties
        values, idx = merge_top_k(tops, k)
        return values, idx, before


def sample_lines(cell: Cell, meta: Mapping[str, Any], emb, n_queries: int, seed: int,
                 extra: Distractors | None = None) -> tuple[list[Shown], Any, Any]:
    """The sampled queries' top-k lists, for the first trial; returns (lines, query idx, gallery
    idx). With ``extra`` (the cell's distractor set), a top-k index past the table's rows is the
    set's row ``index - len(emb)``."""
    import numpy as np

    per_query = cell.result.per_query or {}
    protocol = cell.result.protocol or {}
    in_trial = np.ones(len(emb), bool)
    trial = None
    if "trial" in meta:
        trial = int(min(per_query.get("trial") or meta["trial"]))
        in_trial = meta["trial"] == trial
    setting = headline_scoring(cell)
    q_idx = np.flatnonzero(in_trial & (meta["split"] == "query") & _cameras(meta, setting.get("query_cameras")))
    g_idx = np.flatnonzero(in_trial & (meta["split"] == "gallery") & _cameras(meta, setting.get("gallery_cameras")))
    leave_one_out = not len(q_idx)
    if leave_one_out:  # each test image a query against the others (eval.protocol)
        q_idx = g_idx
    stored = _stored_by_path(per_query, trial)
    candidates = [i for i, p in enumerate(meta["path"][q_idx]) if p in stored] if stored else list(range(len(q_idx)))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(candidates, size=min(n_queries, len(candidates)), replace=False).tolist())
    dist = rank(emb[q_idx[chosen]], emb[g_idx], protocol.get("distance", "euclidean"), protocol.get("normalize", True))
    g_pid = meta["pid"][g_idx]
    junk = None if leave_one_out or not chosen else \
        _junk(meta, q_idx[chosen], g_idx, protocol.get("camera_filter", True), setting.get("rule"))
    orders, hits = [], []
    for row, qi in enumerate(chosen):
        q_pid = meta["pid"][q_idx[qi]]
        order = np.argsort(dist[row], kind="stable")
        if leave_one_out:
            order = order[g_idx[order] != q_idx[qi]]
        else:
            order = order[~np.isin(order, junk.junk[row, :junk.njunk[row]])]
        orders.append(order)
        hits.append(np.flatnonzero(g_pid[order] == q_pid))
    top = [tuple(int(g_idx[j]) for j in order[:TOP_K]) for order in orders]
    first = [int(h[0]) + 1 if len(h) else None for h in hits]
    if extra is not None:
        top, first = _with_distractors(extra, emb, emb[q_idx[chosen]], dist, orders, hits, g_idx, protocol)
    lines = [Shown(query=int(q_idx[qi]), top=top[row], first_match=first[row],
                   stored=stored.get(meta["path"][q_idx[qi]], {})) for row, qi in enumerate(chosen)]
    return lines, q_idx, g_idx


def _with_distractors(extra: Distractors, emb, queries, dist, orders, hits, g_idx, protocol):
    """The lines' top-k and first-match ranks once the distractor set joins the gallery: its
    rows are numbered after the table's (``len(emb) + set row``)."""
    import numpy as np

    from raybench.eval.shard import merge_top_k

    first_d = [float(dist[r, order[h[0]]]) if len(h) else None for r, (order, h) in enumerate(zip(orders, hits))]
    values, idx, before = extra.rank(queries, first_d, protocol.get("distance", "euclidean"),
                                     protocol.get("normalize", True), TOP_K)
    own = [order[:TOP_K] for order in orders]
    width = max(len(o) for o in own)
    own_values = np.full((len(own), width), np.inf)
    own_idx = np.full((len(own), width), -1)
    for r, order in enumerate(own):  # the dataset's gallery keeps its own order: index = its rank
        own_values[r, :len(order)], own_idx[r, :len(order)] = dist[r, order], np.arange(len(order))
    _, merged = merge_top_k([(own_values, own_idx), (values, np.where(idx >= 0, idx + width, -1))], TOP_K)
    top = [tuple(int(g_idx[own[r][j]]) if j < width else len(emb) + int(j - width) for j in row if j >= 0)
           for r, row in enumerate(merged)]
    first = [int(h[0]) + 1 + int(before[r]) if len(h) else None for r, h in enumerate(hits)]
    return top, first


def _stored_by_path(per_query: Mapping[str, Any], trial: int | None) -> dict[str, dict[str, Any]]:
    paths = per_query.get("path") or []
    trials = per_query.get("trial") or [trial] * len(paths)
    out = {}
    for i, path in enumerate(paths):
        if trial is None or trials[i] == trial:
            out.setdefault(path, {k: per_query[k][i] for k in ("ap", "first_match") if per_query.get(k)})
    return out


# ---------------------------------------------------------------------------------------------
# HTML


def headline_scoring(cell: Cell) -> Mapping[str, Any]:
    """How the main figures were scored where the dataset has settings (its headline setting's
    ``scoring``: rule, cameras, and its name as ``setting``), else {}."""
    headline = (cell.result.protocol or {}).get("headline")
    scores = (cell.result.settings or {}).get(headline) if headline else None
    return {**(scores.scoring or {}), "setting": headline} if scores is not None else {}


def _cameras(meta: Mapping[str, Any], cameras) -> Any:
    import numpy as np

    return np.isin(meta["camid"], cameras) if cameras else True


def _junk(meta: Mapping[str, Any], queries, gallery, camera_filter: bool, rule: str | None):
    """What the metrics removed from each of ``queries``' lists (row indices, against the
    ``gallery`` rows): the scorer's own rule (eval.matches.SamePid: its person under its camera
    with camera filtering, and by the clothes rule in its outfit (cc) or in another (sc)), as
    RowMatches whose ``junk`` are positions in ``gallery``."""
    from raybench.eval.matches import SamePid, clothes_codes
    from raybench.specs import CLOTHES_RULES

    clothes = clothes_codes(meta["clothes"][queries], meta["clothes"][gallery], rule) \
        if rule in CLOTHES_RULES and "clothes" in meta else None
    return SamePid(meta["pid"][queries], meta["pid"][gallery], meta["camid"][queries], meta["camid"][gallery],
                   camera_filter, clothes).rows(0, len(queries))


def cell_page(cell: Cell, meta: Mapping[str, Any], emb, n_queries: int, seed: int,
              strips: Mapping[str, list[str]] | None = None, extra: Distractors | None = None) -> str:
    """``strips``: a video cell's frames per tracklet (``tracklets``); ``meta`` is then per
    tracklet. ``extra``: the cell's distractor set, ranked with its gallery."""
    lines, q_idx, g_idx = sample_lines(cell, meta, emb, n_queries, seed, extra)
    thumbs = Thumbs()
    r = cell.result
    protocol = r.protocol or {}
    title = f"{cell.model} x {cell.dataset}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>Rank list: {escape(title)}</h1>",
        "<p class='meta'>"
        f"mAP {pct(r.mAP)}, Rank-1 {pct(cell.value('R1'))} over "
        f"{r.num_valid_query} valid queries and {r.num_gallery} gallery {'tracklets' if strips else 'images'}. "
        f"{len(lines)} queries sampled (seed {seed}) of {len(q_idx)}"
        + (f", trial {int(meta['trial'][q_idx[0]])} of {protocol.get('trials', '?')}" if "trial" in meta else "")
        + f". Distance {escape(protocol.get('distance', 'euclidean'))}"
        + (", L2-normalised" if protocol.get("normalize", True) else ", not normalised")
        + (f". Tracklets pooled by {escape(protocol.get('pool', 'mean'))} over {escape(protocol.get('frames', 'all'))} "
           f"frames; each shown by up to {STRIP_FRAMES} of its frames" if strips else "")
        + (", same-identity same-camera gallery images removed" if protocol.get("camera_filter", True) else "")
        + _setting_text(headline_scoring(cell))
        + (f". Metrics used {escape(' and '.join(_not_shown(protocol)))}; this page does not"
           if _not_shown(protocol) else "")
        + ". Borders: <b style='color:#2ca02c'>green</b> same identity, "
        "<b style='color:#d62728'>red</b> another identity (pid 0 = distractor). "
        "AP and first-match rank are the result's.</p>",
    ]
    cameras = bool(protocol.get("camera_filter", True))
    if extra is not None:  # the set's rows after the table's, as the lines number them
        import numpy as np

        from raybench.eval.protocol import DISTRACTOR_PID

        n = len(extra.paths)
        meta = {**meta, "path": np.concatenate([meta["path"], extra.paths]),
                "pid": np.concatenate([meta["pid"], np.full(n, DISTRACTOR_PID)]),
                "camid": np.concatenate([meta["camid"], np.full(n, -1)])}
        parts[-1] = parts[-1].replace("</p>", f" The gallery holds the distractor set {escape(extra.name)} "
                                              f"({n:,} images) too.</p>")
    for line in lines:
        parts.append(_line_html(line, meta, thumbs, cameras, strips))
    parts.append("</body></html>")
    return "\n".join(parts)


def _setting_text(setting: Mapping[str, Any]) -> str:
    """What the headline setting adds to the page's ranking, in words."""
    if not setting:
        return ""
    text = f". Setting {escape(setting.get('setting'))!s} (the main figures)"
    if setting.get("rule") == "cc":
        text += ": same-identity images in the query's outfit removed too"
    elif setting.get("rule") == "sc":
        text += ": same-identity images in another outfit removed too"
    for side in ("query", "gallery"):
        if setting.get(f"{side}_cameras"):
            text += f"; {side} cameras {', '.join(str(c + 1) for c in setting[f'{side}_cameras'])}"
    return text


def camera_label(camid: int, cameras: bool = True) -> str:
    """The camera as the dataset's file names number it: manifests hold camid 0-based (every
    adapter subtracts 1 from the file's 1-based camera, e.g. Market's ``_c1s6_`` is camid 0), so
    the page adds it back. Datasets without cameras (camid is a row number) show none."""
    return f"cam {int(camid) + 1}" if cameras else ""


def _line_html(line: Shown, meta: Mapping[str, Any], thumbs: Thumbs, cameras: bool = True,
               strips: Mapping[str, list[str]] | None = None) -> str:
    def shown(cls: str, path: str, caption: str) -> str:
        return strip(cls, strips[path], caption, thumbs) if strips else figure(cls, path, caption, thumbs)

    path, pid = meta["path"][line.query], meta["pid"][line.query]
    cam = camera_label(meta["camid"][line.query], cameras)
    ap, first = line.stored.get("ap"), line.stored.get("first_match", line.first_match)
    cam_text = f" &middot; {cam}" if cam else ""
    text = f"query<br>pid {pid}{cam_text}{_clothes_text(meta, line.query)}<br>AP {pct(ap)}<br>first match #{first or '-'}"
    if line.stored.get("first_match") not in (None, line.first_match):
        text += f"<br><span class='warn'>(#{line.first_match} here: ties or re-ranking)</span>"
    cells = [f"<div class='q'>{shown('query', path, text)}</div><div class='sep'></div>"]
    for k, gi in enumerate(line.top, 1):
        g_pid, g_cam = meta["pid"][gi], camera_label(meta["camid"][gi], cameras and meta["camid"][gi] >= 0)
        cls = "hit" if g_pid == pid else "miss"
        caption = f"#{k}<br>" + ("distractor" if g_pid < 0 else f"pid {g_pid}") + (f"<br>{g_cam}" if g_cam else "") \
            + _clothes_text(meta, gi)
        cells.append(shown(cls, meta["path"][gi], caption))
    return "<div class='row'>" + "".join(cells) + "</div>"


def _clothes_text(meta: Mapping[str, Any], row: int) -> str:
    """An image's clothes key under its caption, where the dataset has clothes labels."""
    shown = "clothes" in meta and row < len(meta["clothes"])  # a distractor set's rows come after, unlabelled
    return f"<br>clothes {escape(meta['clothes'][row])}" if shown else ""


def _index_page(run: Run, pages: Sequence[tuple[Cell, Path]]) -> str:
    def numbers(cell: Cell, path: Path) -> tuple[str, Any, Any]:
        if path.name.endswith("__text.html"):  # text queries: the text-to-image numbers
            return "text queries", cell.value("mAP", "t2i"), cell.value("R1", "t2i")
        return "images", cell.value("mAP"), cell.value("R1")

    rows = "".join(
        f"<tr><td><a href='{escape(p.name)}'>{escape(c.model)}</a></td><td>{escape(c.dataset)}</td><td>{kind}</td>"
        f"<td>{pct(mAP)}</td><td>{pct(r1)}</td></tr>"
        for c, p in pages for kind, mAP, r1 in [numbers(c, p)]
    )
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Rank lists: {escape(run.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>Rank lists: {escape(run.name)}</h1>"
            "<table><tr><th>model</th><th>dataset</th><th>queries</th><th>mAP %</th><th>Rank-1 %</th></tr>"
            f"{rows}</table></body></html>\n")
