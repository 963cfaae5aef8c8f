"""The Ray pipeline that turns a model x dataset matrix into embeddings and results.

One module per stage: plan (which cells to do), embed (Ray Data: decode -> embedding actors),
store (the run directory on any pyarrow filesystem), reducer (the Ray actor that scores cells),
driver (ties them together: resume, failure isolation, progress). Sending a run to a cluster
(Ray Jobs) is raybench.jobs. Nothing here imports ray or torch at module level.
"""
