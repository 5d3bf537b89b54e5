"""Per-stack assets (partitions of `stacks`): metadata, the OME-Zarr copy, channel statistics, PCA, previews and nuclei.

Each asset writes into its run's own result set; `stack_results` publishes the set at
<user>/outputs/<branch>/<stack>/ once every step succeeded. Every asset after `stack_zarr`
reads the OME-Zarr copy, a chunk at a time.
"""

import json
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from wsi_assets.core.atomic import write_bytes_atomic
from wsi_assets.core.branch_settings import BRANCH_SETTINGS
from wsi_assets.core.images import encode_png, markdown_image, small_jpeg
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import key_to_stage, partition_asset
from wsi_assets.defs.metadata_tables import metadata_table
from wsi_assets.defs.partitions import stacks_partitions
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.results.slide_identity import ensure_unchanged, slide_identity
from wsi_assets.stacks.axes import GUESSED, StackInfo, read_stack_info
from wsi_assets.stacks.nuclear_channel import choose_nuclear_channel
from wsi_assets.stacks.nuclei import segment_stack_nuclei
from wsi_assets.stacks.nuclei_preview import nuclei_outline_preview
from wsi_assets.stacks.ome_zarr import open_level, smallest_level_within, write_ome_zarr
from wsi_assets.stacks.pca import channel_pca as compute_pca
from wsi_assets.stacks.pca import component_images
from wsi_assets.stacks.plane_segmenter import stack_segmenter
from wsi_assets.stacks.previews import side_by_side
from wsi_assets.stacks.previews import stack_previews as draw_previews
from wsi_assets.stacks.result_set import (
    StackOutputs,
    publish_stack_set,
    stage_stack_set,
)
from wsi_assets.stacks.slices import check_indices
from wsi_assets.stacks.stats import channel_stats as compute_stats
from wsi_assets.stacks.stats import shown_rows
from wsi_assets.stacks.tables import (
    write_component_images,
    write_json,
    write_png_folder,
    write_stats_csv,
)
from wsi_assets.uploads.stack_file import find_stack_file

STACKS_GROUP = "stacks"
stack_asset = partition_asset(stacks_partitions, STACKS_GROUP)
PCA_IMAGE_MAX_SIDE = 1024
AXES_CHECK = "stack_axes_named"
NUCLEAR_CHANNEL_CHECK = "stack_nuclear_channel"


def _key_and_set(context: AssetExecutionContext, user_files: UserFilesResource) -> tuple[SlideKey, StackOutputs]:
    key = key_to_stage(context)
    return key, stage_stack_set(user_files.root_path, key, context.run.run_id, context.run.parent_run_id)


def _info(outputs: StackOutputs) -> StackInfo:
    if not outputs.metadata.exists():
        raise FileNotFoundError(f"{outputs.folder.name}: this run has no stack_metadata; launch process_stack (the whole job)")
    return StackInfo.from_json(json.loads(outputs.metadata.read_text()))


def _zarr(outputs: StackOutputs) -> Path:
    if not outputs.zarr.is_dir():
        raise FileNotFoundError("this run has no OME-Zarr copy of the stack; launch process_stack (the whole job)")
    return outputs.zarr


@stack_asset(
    kinds={"tiff"},
    check_specs=[
        AssetCheckSpec(
            AXES_CHECK,
            asset="stack_metadata",
            description="The stack's T, C and Z axes were named by the file (OME or ImageJ), not guessed.",
        )
    ],
    description="What the stack is: TCZYX shape, dtype, µm per voxel, time step, channel names, and where the axes came from (OME, ImageJ or guessed).",
)
def stack_metadata(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    path = find_stack_file(user_files.root_path, key)
    identity = slide_identity(path)
    info = read_stack_info(path)
    outputs.save_identity(identity)
    write_json(outputs.metadata, info.to_json())
    context.log.info(f"{key}: TCZYX {info.shape} {info.dtype}, axes from {info.axes_source}")
    if info.images_in_file > 1:
        context.log.warning(
            f"{key}: the file holds {info.images_in_file} images; only the first is read (upload one image per file)"
        )
    guessed = info.axes_source == GUESSED
    if guessed:
        context.log.warning(
            f"{key}: the file names no axes; its {info.shape[2]} pages were read as Z (Fiji reads such a stack as T)"
        )
    check = AssetCheckResult(
        check_name=AXES_CHECK,
        passed=not guessed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "axes_source": info.axes_source,
            "result": "guessed: pages read as Z; save as OME-TIFF or ImageJ hyperstack to name T and Z"
            if guessed
            else f"named by {info.axes_source}",
        },
    )
    return MaterializeResult(
        metadata={
            "stack_file": MetadataValue.path(str(path)),
            "axes": info.axes,
            "shape": MetadataValue.json(dict(zip(info.axes, info.shape))),
            "dtype": info.dtype,
            "axes_source": info.axes_source,
            "file_axes": info.file_axes,
            "physical_size_um": MetadataValue.json(info.physical_size_um),
            "time_step_s": info.time_step_s if info.time_step_s is not None else "unknown",
            "channel_names": MetadataValue.json(list(info.channel_names)),
            "size_gb": round(info.nbytes / 1e9, 3),
            "images_in_file": info.images_in_file,
        },
        check_results=[check],
    )


@stack_asset(
    deps=[stack_metadata],
    kinds={"zarr"},
    description="The stack as OME-Zarr (NGFF 0.5, Zarr v3), chunks (1, 1, ≤16, 512, 512), with a Y/X pyramid: opens lazily in napari, dask and zarr.",
)
def stack_zarr(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    info = _info(outputs)
    path = Path(info.path)
    written = write_ome_zarr(path, info, outputs.zarr)
    ensure_unchanged(outputs.load_identity(), path, user_files.root_path)
    context.log.info(f"{key}: OME-Zarr with {written.levels} levels, {written.bytes_on_disk / 1e6:.1f} MB")
    return MaterializeResult(
        metadata={
            "levels": written.levels,
            "level_shapes": MetadataValue.json(written.level_shapes),
            "chunks": MetadataValue.json(written.chunks),
            "size_mb": round(written.bytes_on_disk / 1e6, 2),
            "path_in_result_set": outputs.zarr.name,
        }
    )


@stack_asset(
    deps=[stack_zarr],
    kinds={"numpy", "csv"},
    description="Per channel, and per channel and time point: count, mean, std, min, max and percentiles, exact for 8- and 16-bit stacks, in one streaming pass.",
)
def channel_stats(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    info, folder = _info(outputs), _zarr(outputs)
    stats = compute_stats(open_level(folder, 0), info.channel_names)
    write_json(outputs.stats_json, stats)
    write_stats_csv(outputs.stats_csv, stats["rows"])
    context.log.info(f"{key}: statistics of {info.shape[1]} channels over {info.shape[0]} time points")
    columns, rows = shown_rows(stats)
    # A table, not markdown: channel names come from the uploaded file's metadata, shown as typed.
    metadata = {"table": metadata_table(rows, columns), "percentiles_exact": stats["percentiles_exact"]}
    if len(stats["rows"]) > len(rows):
        metadata["rows_not_shown"] = f"{len(stats['rows']) - len(rows)} more rows in {outputs.stats_csv.name}"
    return MaterializeResult(metadata=metadata)


class ChannelPcaConfig(Config):
    n_components: int | None = Field(default=None, description="Components kept; empty means one per channel")
    t: int = Field(default=0, description="Time point of the slice whose component images are drawn")
    z: int | None = Field(default=None, description="Z plane of that slice; empty means the middle plane")


@stack_asset(
    deps=[stack_zarr],
    kinds={"numpy"},
    description="PCA over channels (voxels as samples) from a streamed covariance: explained variance per component and component images of one slice.",
)
def channel_pca(context: AssetExecutionContext, config: ChannelPcaConfig, user_files: UserFilesResource) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    info, folder = _info(outputs), _zarr(outputs)
    if info.shape[1] < 2:
        reason = "one channel: no PCA over channels (needs at least two)"
        write_json(outputs.pca_json, {"skipped": reason})
        context.log.warning(f"{key}: {reason}")
        return MaterializeResult(metadata={"skipped": reason})
    z = info.shape[2] // 2 if config.z is None else config.z
    check_indices(info.shape, config.t, z, 0)
    pca = compute_pca(open_level(folder, 0), config.n_components)
    level = open_level(folder, smallest_level_within(folder, PCA_IMAGE_MAX_SIDE))
    images = component_images(pca, level[config.t, :, z])
    write_component_images(outputs.pca_images, images)
    write_json(
        outputs.pca_json,
        {**pca.to_json(info.channel_names), "slice": {"t": config.t, "z": z, "shape_yx": list(images.shape[1:])}},
    )
    ratios = ", ".join(f"PC{i + 1} {r:.2%}" for i, r in enumerate(pca.explained_variance_ratio))
    context.log.info(f"{key}: explained variance {ratios}")
    jpeg = small_jpeg(side_by_side(images), 768)
    return MaterializeResult(
        metadata={
            "explained_variance": MetadataValue.json(pca.explained_variance.tolist()),
            "explained_variance_ratio": MetadataValue.json(pca.explained_variance_ratio.tolist()),
            "components": MetadataValue.json(pca.components.tolist()),
            "n_voxels": pca.n_voxels,
            "component_images": MetadataValue.md(markdown_image(jpeg, f"PC1..PC{len(images)} at t={config.t}, z={z}")),
        }
    )


@stack_asset(
    deps=[stack_zarr],
    kinds={"image"},
    description="Previews at t=0: each channel's middle Z plane and maximum-intensity projection, and a colour composite.",
)
def stack_previews(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    info, folder = _info(outputs), _zarr(outputs)
    previews = draw_previews(folder, info.channel_names)
    write_png_folder(outputs.previews, previews)
    composite = previews["composite MIP"]
    context.log.info(f"{key}: {len(previews)} previews")
    return MaterializeResult(
        metadata={
            "composite": MetadataValue.md(markdown_image(small_jpeg(composite, 384), "composite MIP")),
            "previews": MetadataValue.json(sorted(previews)),
        }
    )


@stack_asset(
    deps=[stack_zarr],
    kinds={"zarr", "parquet"},
    check_specs=[
        AssetCheckSpec(
            NUCLEAR_CHANNEL_CHECK,
            asset="stack_nuclei",
            description="The nuclear channel was stated (nuclear_channel) or found by name (DAPI, Hoechst, ...), not guessed as channel 0.",
        )
    ],
    description="Nuclei in every (t, z) plane of the nuclear channel, linked in 3-D and over time: NGFF labels at stack.ome.zarr/labels/nuclei "
    "and nuclei.parquet (one row per nucleus per time point, with track_id and per-channel mean and sum).",
)
def stack_nuclei(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    key, outputs = _key_and_set(context, user_files)
    info, folder = _info(outputs), _zarr(outputs)
    upload = Path(info.path)
    channel = choose_nuclear_channel(info.channel_names, upload.parent / f"{key.stem}.yaml", upload.parent / BRANCH_SETTINGS)
    if channel.guessed:
        context.log.warning(
            f"{key}: no channel is named like a nuclear stain; nuclei are segmented in channel 0 ({channel.name}). State it with 'nuclear_channel:' in {key.stem}.yaml or branch.yaml"
        )
    segmenter = stack_segmenter(segmentation.model, info.physical_size_um.get("x"), segmentation.device)
    context.log.info(
        f"{key}: nuclei in {channel.describe()}, segmented by {segmenter.model} at {segmenter.mpp or 'estimated'} µm/px"
    )
    summary = segment_stack_nuclei(
        folder,
        info,
        channel.index,
        segmenter.segment,
        outputs.nuclei_table,
        progress=lambda text: context.log.info(f"{key}: {text}"),
    )
    preview = nuclei_outline_preview(folder, channel.index)
    write_bytes_atomic(outputs.nuclei_preview, encode_png(preview))
    record = {
        "nuclear_channel": {"index": channel.index, "name": channel.name, "source": channel.source},
        "segmenter": segmenter.model,
        "mpp": segmenter.mpp,
        "nuclei_rows": summary.nuclei_rows,
        "nuclei_per_t": summary.nuclei_per_t,
        "z_linked": summary.z_linked,
        "z_link_skipped": summary.z_link_skipped,
        "tracks": summary.tracks,
        "channels": summary.channels,
    }
    write_json(outputs.nuclei_json, record)
    if summary.z_link_skipped:
        context.log.warning(
            f"{key}: {summary.z_link_skipped} plane pairs not linked: the Z step is longer than a nucleus is wide"
        )
    check = AssetCheckResult(
        check_name=NUCLEAR_CHANNEL_CHECK,
        passed=not channel.guessed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "channel": channel.name,
            "index": channel.index,
            "source": channel.source,
            "result": "guessed: channel 0; state nuclear_channel in the stack's .yaml or branch.yaml"
            if channel.guessed
            else f"from {channel.source}",
        },
    )
    per_t = [{"t": t, "nuclei": n} for t, n in enumerate(summary.nuclei_per_t)]
    metadata = {
        "nuclear_channel": channel.describe(),
        "nuclei": summary.nuclei_rows,
        "nuclei_per_t": metadata_table(per_t[:50], ["t", "nuclei"]),
        "segmenter": segmenter.model,
        "z_linked": summary.z_linked,
        # A table, not markdown: channel names come from the uploaded file's metadata, shown as typed.
        "channels": metadata_table(
            summary.channels, ["channel", "column", "mean_of_means", "median_of_means", "sum_over_nuclei"]
        ),
        "outlines": MetadataValue.md(markdown_image(small_jpeg(preview, 512), f"nuclei outlines over {channel.name} MIP, t=0")),
        "table": MetadataValue.path(str(outputs.nuclei_table)),
    }
    if summary.tracks:
        metadata["tracks"] = MetadataValue.json({k: v for k, v in summary.tracks.items() if k != "length_histogram"})
    return MaterializeResult(metadata=metadata, check_results=[check])


@stack_asset(
    deps=[stack_metadata, stack_zarr, channel_stats, channel_pca, stack_previews, stack_nuclei],
    kinds={"folder"},
    description="The stack's published results (<user>/outputs/<branch>/<stack>/): switched to this run's whole set in one step.",
)
def stack_results(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    root = user_files.root_path
    published, files = publish_stack_set(root, key, context.run.run_id, find_stack_file(root, key))
    context.log.info(f"{key}: published {files} files at {published}")
    return MaterializeResult(
        metadata={"folder": MetadataValue.path(str(published)), "files": files, "result_set": context.run.run_id}
    )


stack_assets = [stack_metadata, stack_zarr, channel_stats, channel_pca, stack_previews, stack_nuclei, stack_results]
