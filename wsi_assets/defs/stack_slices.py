"""`stack_slice_png`: one (t, z, c) plane of a published stack as a PNG, on demand (job `stack_slice`)."""

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from wsi_assets.core.images import markdown_image, small_jpeg
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import partition_asset
from wsi_assets.defs.partitions import stacks_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.stacks import stack_results
from wsi_assets.stacks.previews import stretch
from wsi_assets.stacks.result_set import require_published
from wsi_assets.stacks.slices import write_slice_png

STACK_SLICES_GROUP = "stack_slices"
stack_slice_asset = partition_asset(stacks_partitions, STACK_SLICES_GROUP)


class StackSliceConfig(Config):
    t: int = Field(default=0, description="Time point, from 0")
    z: int = Field(default=0, description="Z plane, from 0")
    c: int = Field(default=0, description="Channel, from 0")


@stack_slice_asset(
    deps=[stack_results],
    kinds={"png"},
    description="One full-resolution (t, z, c) plane of the published stack as PNG (16-bit values kept), in <stack>/slices/.",
)
def stack_slice_png(context: AssetExecutionContext, config: StackSliceConfig, user_files: UserFilesResource) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    outputs = require_published(user_files.root_path, key)
    target = outputs.slices / f"t{config.t}-z{config.z}-c{config.c}.png"
    path, plane, how = write_slice_png(outputs.zarr, config.t, config.z, config.c, target)
    context.log.info(f"{key}: wrote {path.name} ({plane.shape[1]}x{plane.shape[0]}, {how})")
    return MaterializeResult(
        metadata={
            "png": MetadataValue.path(str(path)),
            "t": config.t,
            "z": config.z,
            "c": config.c,
            "values": how,
            "preview": MetadataValue.md(
                markdown_image(small_jpeg(side_by_side_gray(plane.preview), 512), f"t={config.t} z={config.z} c={config.c}")
            ),
        }
    )


def side_by_side_gray(plane):
    gray = stretch(plane)
    return gray[..., None].repeat(3, axis=2)


stack_slice_assets = [stack_slice_png]
