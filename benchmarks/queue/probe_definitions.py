"""A light code location for the queue benchmark: one short slide-partitioned step in the gpu pool.

It shares the `slides` partitions and the instance's queue settings with the product, but its
run workers import only Dagster, so 1,000 runs fit on a small machine.
"""

import time

from dagster import Definitions, DynamicPartitionsDefinition, asset, define_asset_job, in_process_executor

slides = DynamicPartitionsDefinition(name="slides")


@asset(partitions_def=slides, pool="gpu", op_tags={"wsi/device": "gpu"})
def queue_probe() -> None:
    """Stands in for a segmentation step: holds a gpu slot briefly."""
    time.sleep(0.2)


probe_job = define_asset_job("probe_job", selection=[queue_probe], executor_def=in_process_executor)

defs = Definitions(assets=[queue_probe], jobs=[probe_job])
