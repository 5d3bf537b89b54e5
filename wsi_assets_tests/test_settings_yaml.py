"""Settings files that cannot hang anything: hostile YAML is refused in one line, messages stay short,
and a bad model or classifier in branch.yaml fails the run's first step, before any segmentation."""

from __future__ import annotations

import os
import threading
import time

import pytest

from wsi_assets.cells.lymphocyte_rule import BadRuleSetting, parse_rule
from wsi_assets.core.branch_settings import checked_mpp, read_branch_settings
from wsi_assets.core.quoting import short_repr
from wsi_assets.segmentation.settings import ConfigError, check_device_name
from wsi_assets.slides.errors import SlideSettingsError
from wsi_assets.slides.resolution import stated_mpp
from wsi_assets_tests.conftest import run_process_slide

FILE = "alice/inputs/main/branch.yaml"


def billion_laughs() -> str:
    """296 bytes of YAML: nine levels of nine aliases, 9⁹ strings once expanded."""
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefgh", "abcdefg"):
        levels.append(f"&{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "mpp: [" + ", ".join(levels) + "]\n"


def shared_laughs(depth: int = 9):
    """The structure the YAML above loads as: nine references to one list, nine levels deep."""
    value = ["lol"] * 9
    for _ in range(depth - 1):
        value = [value] * 9
    return value


@pytest.fixture
def branch_yaml(tmp_path):
    folder = tmp_path / "alice" / "inputs" / "main"
    folder.mkdir(parents=True)
    return folder / "branch.yaml"


def finishes_within(seconds: float, call):
    """What `call()` raised or returned, or a failure when it is still running after `seconds`."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome


def test_billion_laughs_is_refused_at_once_in_one_line(branch_yaml):
    branch_yaml.write_text(billion_laughs())
    assert branch_yaml.stat().st_size < 300
    started = time.perf_counter()
    outcome = finishes_within(10, lambda: read_branch_settings(branch_yaml))
    assert time.perf_counter() - started < 1.0
    assert str(outcome["error"]) == f"{FILE}, line 1: uses a YAML anchor or alias (&name, *name): write each value out in full"


def test_deep_nesting_is_refused_without_recursion(branch_yaml):
    branch_yaml.write_text("exports: " + "[" * 30000 + "]" * 30000 + "\n")  # under the 64 KiB cap
    with pytest.raises(SlideSettingsError, match=r"line 1: nests lists or mappings deeper than any setting"):
        read_branch_settings(branch_yaml)


def test_a_slide_sidecar_is_read_by_the_same_rules(branch_yaml):
    slide = branch_yaml.with_name("slide01.svs")
    branch_yaml.with_name("slide01.yaml").write_text("mpp: 0.5\nmpp: 7\n")
    with pytest.raises(SlideSettingsError) as caught:
        stated_mpp(slide)
    assert str(caught.value) == "alice/inputs/main/slide01.yaml, line 2: key 'mpp' is given twice (first on line 1): keep one"


@pytest.mark.parametrize(
    "text, message",
    [
        ("tile_size: " + "9" * 5000 + "\n", f"{FILE}, line 1: has a value that cannot be read (Exceeds the limit (4300 digits)"),
        ("mpp: 2024-13-01\n", f"{FILE}, line 1: has a value that cannot be read (month must be in 1..12)"),
        ("? [a, b]\n: 1\n", f"{FILE}, line 1: has a list as a key: a key is a plain name"),
        ("mpp: 0.5\n" + "#" * (64 * 1024) + "\n", f"{FILE} is larger than 64 KB: a settings file holds a few 'key: value' lines"),
        ("exports: !!python/object/apply:os.system [true]\n", f"{FILE} is not valid YAML (line 1)"),
    ],
)
def test_values_yaml_cannot_build_are_one_line(branch_yaml, text, message):
    branch_yaml.write_text(text)
    with pytest.raises(SlideSettingsError) as caught:
        read_branch_settings(branch_yaml)
    assert str(caught.value).startswith(message) and len(str(caught.value)) < 300


def test_a_fifo_is_refused_without_waiting_for_a_writer(branch_yaml):
    os.mkfifo(branch_yaml)
    outcome = finishes_within(10, lambda: read_branch_settings(branch_yaml))
    assert str(outcome["error"]) == f"{FILE} is not a regular file: a settings file holds a few 'key: value' lines"


def test_a_hard_linked_settings_file_is_refused_like_an_upload(tmp_path, branch_yaml):
    others = tmp_path / "bob" / "inputs" / "main" / "branch.yaml"
    others.parent.mkdir(parents=True)
    others.write_text("model: bobs_private.pt\n")
    os.link(others, branch_yaml)
    with pytest.raises(SlideSettingsError) as caught:
        read_branch_settings(branch_yaml)
    assert (
        str(caught.value)
        == f"{FILE} is hard-linked (2 names for one file), so whose file it is cannot be told; upload a copy instead"
    )
    assert "bob" not in str(caught.value)


def test_registering_a_model_refuses_a_hard_linked_branch_yaml(tmp_path):
    from wsi_assets.finetuning.branch_model import set_branch_setting

    root = tmp_path / "files"
    (root / "alice/inputs/main").mkdir(parents=True)
    (root / "bob/inputs/main").mkdir(parents=True)
    (root / "bob/inputs/main/branch.yaml").write_text("mpp: 0.25   # bob's\n")
    os.link(root / "bob/inputs/main/branch.yaml", root / "alice/inputs/main/branch.yaml")
    with pytest.raises(SlideSettingsError, match="is hard-linked"):
        set_branch_setting(root, "alice", "main", "model", "new.pt")
    assert not (root / "alice/models/main").exists(), "bob's file was not copied beside alice's models"


# ---------------------------------------------------------------- messages quote values briefly


def test_short_repr_is_bounded_whatever_the_value():
    started = time.perf_counter()
    for value in (shared_laughs(), list(range(10**6)), "x" * 10**6, {str(i): i for i in range(10**5)}, int("1" * 4000) ** 3):
        text = short_repr(value)
        assert len(text) <= 80
    assert time.perf_counter() - started < 2.0
    assert short_repr("exprots") == "'exprots'" and short_repr([1]) == "[1]" and short_repr(0.5) == "0.5"


@pytest.mark.parametrize(
    "check",
    [
        lambda value: checked_mpp(value, FILE),
        lambda value: parse_rule({"max_area_um2": value}, FILE),
        lambda value: check_device_name(value),
    ],
    ids=["branch mpp", "lymphocyte_rule", "segmentation device"],
)
def test_validators_quote_a_huge_value_in_a_short_line(check):
    outcome = finishes_within(10, lambda: check(shared_laughs()))
    assert isinstance(outcome["error"], (SlideSettingsError, BadRuleSetting, ConfigError))
    assert len(str(outcome["error"])) < 300 and "\n" not in str(outcome["error"])


# ---------------------------------------------------------------- the run's first step


def _first_failure(result):
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    return failures[0].step_key, failures[0].step_failure_data.user_failure_data.description, started


@pytest.mark.parametrize(
    "settings, extra, message",
    [
        (
            "classifier: absent.npz\n",
            None,
            "dave/inputs/{branch}/branch.yaml names classifier 'absent.npz', which is in neither dave/models/{branch}/ nor dave/inputs/{branch}/: "
            "put the .npz there, or set classifier: default",
        ),
        ("classifier: junk.npz\n", ("junk.npz", b"not a classifier"), "junk.npz cannot be read as a cell classifier"),
        (
            "model: weights.pt\n",
            ("../../models/{branch}/weights.pt", b"not torchscript"),
            "dave/inputs/{branch}/branch.yaml names model 'weights.pt', which is not a TorchScript model: "
            "register one with finetune_from_reviews, or set model: default",
        ),
        (
            billion_laughs(),
            None,
            "dave/inputs/{branch}/branch.yaml, line 1: uses a YAML anchor or alias (&name, *name): write each value out in full",
        ),
    ],
    ids=["missing classifier", "unreadable classifier", "not a model", "billion laughs"],
)
def test_bad_branch_files_fail_the_first_step_before_segmentation(
    small_slide, user_files_root, dagster_instance, settings, extra, message, request
):
    branch = "bad-" + request.node.callspec.id.replace(" ", "-")
    inputs = user_files_root / "dave" / "inputs" / branch
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "branch.yaml").write_text(settings)
    if extra is not None:
        target = inputs / extra[0].format(branch=branch)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(extra[1])
    started = time.perf_counter()
    _, result = run_process_slide(dagster_instance, user_files_root, "dave", branch, small_slide, "s1")
    assert not result.success
    step, description, steps_started = _first_failure(result)
    assert step == "slide_metadata" and description.startswith(message.format(branch=branch)), description
    assert "cell_segmentation" not in steps_started
    assert time.perf_counter() - started < 60
