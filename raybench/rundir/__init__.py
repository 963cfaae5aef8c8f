"""The run directory: one typed contract between the pipeline (which writes it), the planner
and the report (which read it), and a user's scripts.

    run.json                                   records.RunRecord (provenance.py builds it)
    embeddings/<dataset>/<model>/_SUCCESS      records.CellMarker: the committed attempt and its files
    embeddings/<dataset>/<model>/attempt-*/    part-*.parquet (written by the embedding workers),
                                               manifest.parquet, spec.json
    results/<dataset>/<model>.json             records.CellResult
    cache/pixels/<dataset>/<pixel_key>/...     decoded pixels shared by models (pipeline/embed.py)

store.RunStore reads and writes all of it, on a local path or any pyarrow filesystem URI
(file://, s3://, gs://, ...); store.embedding_matrix decodes the stored embeddings.
"""
