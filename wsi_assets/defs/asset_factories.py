"""What every per-partition asset (one slide, stack or batch, keyed <user>/<branch>/<name>) shares.

Each is a step of one partition, in its domain's group, and shows a user-fixable failure as one
line (fails_clearly); `partition_asset` makes a domain's decorator once, so an asset states only
what is its own (deps, kinds, checks, tags, description). Each writes into its run's own result
set (wsi_assets.results.staged_sets), staged only by a run that is the partition's only one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, PartitionsDefinition, asset

from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.active_runs import refuse_if_another_run_is_active
from wsi_assets.defs.errors import fails_clearly

AssetDecorator = Callable[[Callable[..., Any]], AssetsDefinition]


def partition_asset(partitions_def: PartitionsDefinition, group_name: str) -> Callable[..., AssetDecorator]:
    """A domain's @asset: `stack_asset = partition_asset(stacks_partitions, "stacks")`, then `@stack_asset(deps=[...], description=...)`."""

    def domain_asset(**asset_args: Any) -> AssetDecorator:
        def decorate(fn: Callable[..., Any]) -> AssetsDefinition:
            return asset(partitions_def=partitions_def, group_name=group_name, **asset_args)(fails_clearly(fn))

        return decorate

    return domain_asset


def key_to_stage(context: AssetExecutionContext) -> SlideKey:
    """The partition's key, once no earlier run of it is in progress: staging a set sweeps the key's other sets, that run's too."""
    key = SlideKey.parse(context.partition_key)
    refuse_if_another_run_is_active(context)
    return key
