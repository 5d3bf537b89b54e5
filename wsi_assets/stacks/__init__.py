"""5D microscopy stacks (TCZYX): axes and metadata from tifffile, an OME-Zarr copy, and what is computed from it.

Plain functions over numpy, tifffile and zarr; every pass streams one chunk at a time, so memory
stays bounded whatever the stack's size. Dagster lives in `wsi_assets/defs/stacks.py`.
"""
