"""Batches: a sub-folder `<user>/inputs/<branch>/<batch>/` of plain PNG/JPEG/TIFF images is one unit of work.

One `batches` partition per folder (key `<user>/<branch>/<batch>`), one run per change of the
folder, and each run segments only the images that are new or changed since the batch's last
published result. Plain functions; `wsi_assets/defs/batches.py` is the Dagster edge.
"""
