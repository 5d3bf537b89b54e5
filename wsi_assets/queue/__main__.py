"""`python -m wsi_assets.queue`: the queue table (wsi_assets.cli.queue)."""

from wsi_assets.cli.queue import main

main()
