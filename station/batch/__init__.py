"""Batch inspection: the station's inspection code over stored images (``linestation batch``).

Quality engineers re-run a model over a shift, a supplier lot or everything since an
incident. The same cycle the line runs (spec check -> detect -> decide) is driven over a
folder, a glob, an S3 prefix or a query over the local record, in worker processes,
resumable after any interruption, shardable across machines (AWS Batch array jobs), with
results in an Athena-friendly layout (:mod:`station.batch.layout`).
"""
