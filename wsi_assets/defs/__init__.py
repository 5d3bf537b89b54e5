"""The orchestration layer: Dagster assets, checks, jobs, sensors and resources per domain.

Only this package, wsi_assets.definitions, the command-line tools that talk to an instance
(wsi_assets.cli) and the queue adapter (wsi_assets.queue.dagster_adapter) import Dagster.
"""

from wsi_assets.defs.warnings import silence_chosen_preview_warnings

silence_chosen_preview_warnings()
