"""Peak resident memory of `process_slide` on one slide, run in this process (for the memory test).

python benchmarks/peak_memory.py SLIDE      -> prints {"peak_rss_mb": ..., "nuclei": ...}
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    source = Path(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="wsi_mem_"))
    os.environ["WSI_USER_FILES"] = str(work)
    from dagster import DagsterInstance

    from wsi_assets.definitions import defs

    target = work / "mem" / "inputs" / "main" / source.name
    target.parent.mkdir(parents=True)
    # A copy, not a link: uploads that are links out of the user's folder are refused.
    shutil.copyfile(source, target)
    key = f"mem/main/{source.stem}"
    try:
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("slides", [key])
            result = defs.resolve_job_def("process_slide").execute_in_process(instance=instance, partition_key=key)
            nuclei = next(
                e.materialization.metadata["nuclei"].value
                for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "cell_segmentation"
            )
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "nuclei": nuclei}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
