"""A Reducer whose process dies (os._exit) whenever it scores one dataset, as a segfault or an
OOM kill would end it; it leaves a marker file to show that it did. For test_pipeline_rerun.py."""

from __future__ import annotations

import os

from raybench.pipeline.reducer import Reducer


class CrashOnce(Reducer):
    def __init__(self, store, spec, run: str, marker: str, dataset: str):
        super().__init__(store, spec, run)
        self.marker, self.dataset = marker, dataset

    def evaluate(self, job):
        if job.dataset.name == self.dataset:
            open(self.marker, "w").close()
            os._exit(1)
        return super().evaluate(job)
