"""The run directory: one typed contract between the pipeline (which writes it), the planner
and the report (which read it), and a user's scripts. Its layout is described in one place,
docs/run-folder.md.

records.py declares its JSON files (RunRecord: run.json, built by provenance.py; CellMarker:
a committed cell's _SUCCESS; CellResult: results/<dataset>/<model>.json); store.RunStore reads
and writes all of it, on a local path or any pyarrow filesystem URI (file://, s3://, gs://,
...); lock.py keeps one writer per run directory.
"""
