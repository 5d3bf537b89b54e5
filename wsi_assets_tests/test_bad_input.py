"""Bad input: a clear one-line error, the input untouched, other slides and earlier results kept."""

from __future__ import annotations

import hashlib

from wsi_assets_tests.conftest import run_process_slide


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_slide_fails_clearly_and_harms_nothing(tmp_path, user_files_root, dagster_instance, small_slide):
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(small_slide.read_bytes()[:4000])  # a truncated upload
    _, good = run_process_slide(dagster_instance, user_files_root, "erin", "main", small_slide, "good")
    assert good.success
    good_csv = user_files_root / "erin/outputs/main/good/cells.csv"
    good_digest = _digest(good_csv)

    uploaded = user_files_root / "erin/inputs/main/bad.svs"
    _, bad = run_process_slide(dagster_instance, user_files_root, "erin", "main", corrupt, "bad")
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "bad.svs" in message and "OpenSlide cannot read" in message
    assert len(message.splitlines()) == 1
    assert _digest(uploaded) == _digest(corrupt)
    assert _digest(good_csv) == good_digest


def test_failed_rerun_keeps_the_previous_export(user_files_root, dagster_instance, small_slide):
    _, first = run_process_slide(dagster_instance, user_files_root, "erin", "keep", small_slide, "slide")
    assert first.success
    folder = user_files_root / "erin/outputs/keep/slide"
    before = _digest(folder / "cells.csv")
    (folder / "segmentation" / "cells.parquet").write_bytes(b"damaged")  # disk trouble after the run
    from wsi_assets.definitions import defs

    rerun = defs.resolve_job_def("export_cells").execute_in_process(
        instance=dagster_instance, partition_key="erin/keep/slide", raise_on_error=False
    )
    assert not rerun.success
    failure = next(e for e in rerun.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "cells.parquet cannot be read" in message and "cell_segmentation" in message and len(message.splitlines()) == 1
    # A damaged file is permanent: no retries (each would wait out the back-off).
    assert not [e for e in rerun.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert _digest(folder / "cells.csv") == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_slide_without_pixel_size_is_inferred_and_flagged(user_files_root, dagster_instance, tmp_path):
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    source = tmp_path / "nompp.svs"
    write_synthetic_slide(source, SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=3, write_mpp=False))
    from wsi_assets.definitions import defs

    dagster_instance.add_dynamic_partitions("slides", ["erin/main/nompp"])
    (user_files_root / "erin/inputs/main").mkdir(parents=True, exist_ok=True)
    (user_files_root / "erin/inputs/main/nompp.svs").write_bytes(source.read_bytes())
    result = defs.resolve_job_def("tissue_mask_only").execute_in_process(
        instance=dagster_instance, partition_key="erin/main/nompp"
    )
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}[
        "slide_metadata"
    ]
    assert metadata["mpp_inferred"].value is True
    assert metadata["mpp_source"].value == "objective power"
    assert metadata["mpp"].value == 0.25
    warnings = [r.user_message for r in dagster_instance.all_logs(result.run_id) if "no µm/px metadata" in r.user_message]
    assert warnings
