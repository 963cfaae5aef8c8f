"""Reports of a run directory: what people look at after `raybench run`.

One module per concern, all reading the run directory and nothing else:
load (result JSONs, run.json), bootstrap (intervals over queries), tables (md/csv/json),
plots (heatmaps, in-domain vs cross-domain), paper (the study's numbers beside ours),
ranklist (HTML pages of top-10 galleries), build (writes DIR/report/ from all of them).
Heavy imports (numpy, pyarrow, matplotlib, PIL) happen inside functions, so the CLI stays fast.
"""
