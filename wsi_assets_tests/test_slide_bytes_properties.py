"""Damaged slide bytes (flipped, cut, inserted) only ever give a one-line SlideReadError, and quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsi_assets.slides.reader import (
    SlideReadError,
    open_slide,
    read_level_rgb,
    read_whole_slide_at_downsample,
)
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

SECONDS_PER_FILE = 10.0


@pytest.fixture(scope="module")
def slide_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("bytes") / "small.svs"
    write_synthetic_slide(path, SyntheticSlideSpec(width=1280, height=1024, mpp=0.25, seed=6))
    return path.read_bytes()


def _mutations(size: int):
    position = st.integers(0, size - 1)
    flip = st.tuples(st.just("flip"), position, st.integers(1, 255))
    cut = st.tuples(st.just("cut"), position, st.just(0))
    insert = st.tuples(st.just("insert"), position, st.integers(1, 4096))
    return st.lists(st.one_of(flip, cut, insert), min_size=1, max_size=4)


def _mutate(data: bytes, mutations) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in mutations:
        position = min(position, max(0, len(buffer) - 1))
        if kind == "flip" and buffer:
            buffer[position] ^= value
        elif kind == "cut":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = bytes((position + i) % 251 for i in range(value))
    return bytes(buffer)


def _use_everything(path: Path) -> None:
    info = read_slide_info(path)
    with open_slide(path) as slide:
        read_level_rgb(slide, info.width // 3, info.height // 3, 0, 300, 300)
        read_whole_slide_at_downsample(slide, max(info.width, info.height) / 512)


# 25 files: each can take seconds (damaged strips are retried one by one), and CI has a 40-minute budget.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_bytes_give_only_a_one_line_slide_read_error(tmp_path, slide_bytes, data):
    mutations = data.draw(_mutations(len(slide_bytes)))
    path = tmp_path / "mutated.svs"
    path.write_bytes(_mutate(slide_bytes, mutations))
    started = time.perf_counter()
    try:
        _use_everything(path)
    except SlideReadError as error:
        message = str(error)
        assert message.startswith("mutated.svs") and len(message.splitlines()) == 1, message
    assert time.perf_counter() - started < SECONDS_PER_FILE
