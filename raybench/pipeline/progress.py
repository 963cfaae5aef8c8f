"""What a run tells the person watching it: a progress line on the terminal and metrics on
the Ray dashboard.

The progress line (cells done/total, images/s, ETA; in a run with video datasets, frames and
the tracklets whose frames have all been embedded) goes to stderr: rewritten in place on a
terminal, one line every few seconds otherwise (Ray Jobs logs, CI). Ray Data's own per-operator
bars are off by default, since two progress displays interleave badly. Cells an earlier run
finished (kept) count as done.

Metrics use ray.util.metrics, so every node's metrics agent exports them to Prometheus (what the
dashboard's Metrics view and Grafana read), tagged with the run's name: ``METRICS`` declares
them, ``exported_names`` gives the names a Prometheus endpoint shows, and cluster/grafana/
holds a Grafana dashboard of them (images/s per model, cells done and failed, ETA; its test
checks every query against ``exported_names``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

from raybench.console import notice


@dataclass(frozen=True)
class Metric:
    """One of the run's metrics as ray.util.metrics declares it."""

    kind: str  # "counter" or "gauge"
    name: str
    description: str
    tags: tuple[str, ...]

    @property
    def exported(self) -> str:
        """Its name at a Prometheus endpoint: Ray prefixes ``ray_``; a counter ends ``_total``."""
        return f"ray_{self.name}" + ("_total" if self.kind == "counter" else "")


METRICS = (
    Metric("counter", "raybench_images_embedded", "Images embedded", ("run", "model")),
    Metric("gauge", "raybench_images_per_second", "Embedding throughput of a model, since its first batch",
           ("run", "model")),
    Metric("counter", "raybench_cells_done", "Cells scored", ("run", "model", "dataset")),
    Metric("counter", "raybench_cells_failed", "Cells failed", ("run", "model", "dataset")),
    # with the images' rate, the ETA; with the cells, the progress
    Metric("gauge", "raybench_images_remaining", "Images of the run still to embed", ("run",)),
    Metric("gauge", "raybench_cells_remaining", "Cells of the run not finished yet", ("run",)),
)


def exported_names() -> dict[str, tuple[str, ...]]:
    """{name at a Prometheus endpoint: tag keys} of every metric a run records."""
    return {metric.exported: metric.tags for metric in METRICS}


class RunMetrics:
    """The run's counters and gauges (needs a connected Ray; one instance per process: the
    driver records images and what remains, the reducer the cells)."""

    def __init__(self, run: str):
        from ray.util.metrics import Counter, Gauge

        kinds = {"counter": Counter, "gauge": Gauge}
        self.run = run
        self._metrics = {m.name: kinds[m.kind](m.name, m.description, tag_keys=m.tags) for m in METRICS}

    def embedded(self, model: str, count: int, rate: float) -> None:
        tags = {"run": self.run, "model": model}
        if count:
            self._metrics["raybench_images_embedded"].inc(count, tags=tags)
        self._metrics["raybench_images_per_second"].set(rate, tags=tags)

    def remaining(self, images: int, cells: int) -> None:
        tags = {"run": self.run}
        self._metrics["raybench_images_remaining"].set(images, tags=tags)
        self._metrics["raybench_cells_remaining"].set(cells, tags=tags)

    def cell(self, model: str, dataset: str, ok: bool) -> None:
        name = "raybench_cells_done" if ok else "raybench_cells_failed"
        self._metrics[name].inc(1, tags={"run": self.run, "model": model, "dataset": dataset})


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts cells and images; prints a status line at most every ``interval`` seconds."""

    def __init__(self, cells_total: int, cells_done: int, images_total: int,
                 metrics: RunMetrics | None = None, echo: Callable[[str], None] = notice,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 tracklets_total: int = 0, frames_total: int = 0):
        self.cells_total, self.cells_done, self.cells_failed = cells_total, cells_done, 0
        self.images_total, self.images_done = images_total, 0
        # video cells: their tracklets, and how many of images_total are their frames
        self.tracklets_total, self.tracklets_done, self.frames_total = tracklets_total, 0, frames_total
        self.metrics, self.echo, self.clock = metrics, echo, clock
        self.tty = sys.stderr.isatty() and echo is notice
        self.interval = interval if interval is not None else (1.0 if self.tty else 10.0)
        self.model, self.model_images = "", 0
        self.model_start: tuple[float, int] | None = None  # (time, images) of the first batch
        self._printed = clock()
        self._unsent = 0

    def start_model(self, model: str) -> None:
        self._send_metrics()  # the previous model's last images
        self.model, self.model_images, self.model_start = model, 0, None

    def rate(self) -> float:
        """Images/s of the current model since its first batch (model loading is not throughput)."""
        if self.model_start is None:
            return 0.0
        start, first = self.model_start
        elapsed = self.clock() - start
        return (self.model_images - first) / elapsed if elapsed > 0 else 0.0

    def add_images(self, count: int, tracklets: int = 0) -> None:
        """``count`` images (frames) embedded, completing ``tracklets`` video tracklets."""
        if self.model_start is None and count:
            self.model_start = (self.clock(), count)
        self.images_done += count
        self.tracklets_done += tracklets
        self.model_images += count
        self._unsent += count
        if self.clock() - self._printed >= self.interval:
            self.show()

    def line(self) -> str:
        rate = self.rate()
        left = self.images_total - self.images_done
        eta = format_seconds(left / rate) if rate > 0 and left > 0 else "-"
        failed = f", {self.cells_failed} failed" if self.cells_failed else ""
        speed = f"{rate:,.1f}" if rate > 0 else "-"  # "-" until two batches give a rate
        what = "images" if not self.frames_total else \
            "frames" if self.frames_total == self.images_total else "images and frames"
        images = f"{what} {self.images_done:,}/{self.images_total:,}"
        if self.tracklets_total:
            images += f", tracklets {self.tracklets_done:,}/{self.tracklets_total:,}"
        return (f"cells {self.cells_done}/{self.cells_total}{failed} | {self.model}: "
                f"{images} | {speed} img/s | ETA {eta}")

    def _send_metrics(self) -> None:
        if self.metrics is not None:
            if self.model:
                self.metrics.embedded(self.model, self._unsent, self.rate())
            self.metrics.remaining(max(0, self.images_total - self.images_done), self.cells_total - self.cells_done)
        self._unsent = 0

    def show(self) -> None:
        self._printed = self.clock()
        self._send_metrics()
        if self.tty:
            sys.stderr.write("\r\033[K" + self.line())
            sys.stderr.flush()
        else:
            self.echo(self.line())

    def cell_kept(self) -> None:
        """A cell an earlier run finished: done, without a line of its own (the plan line
        counted it as kept)."""
        self.cells_done += 1
        self._send_metrics()

    def cell_finished(self, result) -> None:
        """A scored (or failed) cell (records.CellResult): counted, and printed on its own line
        with the live metrics of each of its blocks (raybench.metrics, records.BLOCK_KINDS)."""
        from raybench.metrics import HEADLINE, percent

        self.cells_done += 1
        self._send_metrics()
        if not result.ok:
            self.cells_failed += 1
            text = f"FAILED {result.dataset} x {result.model}: {result.error}"
        else:
            text = f"done   {result.dataset} x {result.model}: " + "  ".join(
                f"{m.name} {percent(result.main.value(m.name), 2)}%" for m in HEADLINE)
            for kind, name, scores in result.blocks():
                text += f"  {name} " + " ".join(f"{m} {percent(scores.value(m), 2)}%" for m in kind.live)
        if self.tty:
            sys.stderr.write("\r\033[K")
        self.echo(f"[{self.cells_done}/{self.cells_total}] {text}")

    def close(self) -> None:
        self._send_metrics()
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
