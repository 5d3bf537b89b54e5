"""A light code location for the queue benchmark: one short slide-partitioned step in the gpu pool.

It shares the `slides` partitions and the instance's queue settings with the product, but its
run workers import only Dagster (and the small gpu_slots module), so 1,000 runs fit on a small
machine.
"""

import time

from dagster import AssetExecutionContext, Definitions, DynamicPartitionsDefinition, asset, define_asset_job, in_process_executor

from wsi_assets.queue.dagster_adapter import gpu_slot
from wsi_assets.queue.tags import DEVICE_TAG, GPU_POOL

slides = DynamicPartitionsDefinition(name="slides")


@asset(partitions_def=slides, pool=GPU_POOL, op_tags={DEVICE_TAG: GPU_POOL})
def queue_probe(context: AssetExecutionContext) -> None:
    """Stands in for a segmentation step: holds a gpu slot briefly, as cell_segmentation does."""
    with gpu_slot(context.instance, context.log.info):
        time.sleep(0.2)


probe_job = define_asset_job("probe_job", selection=[queue_probe], executor_def=in_process_executor)

defs = Definitions(assets=[queue_probe], jobs=[probe_job])
