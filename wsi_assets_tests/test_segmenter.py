import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import openslide
import pytest

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.classical import ClassicalParams, ClassicalSegmenter
from wsi_assets.segmentation.image import segment_image, segment_images
from wsi_assets.segmentation.metrics import f1_at_iou
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.segmentation.registry import default_segmenter, get_segmenter
from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
from wsi_assets.slides import synthetic

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CMU_SLIDE = DATA / "slides" / "CMU-1-Small-Region.svs"

PINK = (235, 170, 200)
NUCLEUS = (90, 60, 150)
GLASS = (242, 242, 242)


def draw_tile(seed=0, size=512, mpp=0.5, spacing_um=14.0):
    """H&E-like RGB tile and its true labels: dark purple ellipses (radius 3-5.5 µm) on pink
    tissue, with the left quarter left as glass and some nuclei pushed into touching pairs."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((size, size, 3), np.float32)
    rgb[:] = PINK
    glass_width = size // 4
    rgb[:, :glass_width] = GLASS
    labels = np.zeros((size, size), np.int32)
    spacing = spacing_um / mpp
    n = 0
    for cy in np.arange(spacing / 2, size - spacing / 2, spacing):
        for cx in np.arange(glass_width + spacing / 2, size - spacing / 2, spacing):
            if rng.random() > 0.9:
                continue
            major = rng.uniform(3.0, 5.5) / mpp
            minor = max(major * rng.uniform(0.6, 0.95), 3.0 / mpp)
            # every fifth nucleus leans towards its right neighbour, so pairs touch
            shift = spacing * 0.3 if n % 5 == 0 else rng.uniform(-0.1, 0.1) * spacing
            centre = (round(cx + shift), round(cy + rng.uniform(-0.1, 0.1) * spacing))
            axes = (round(major), round(minor))
            angle = float(rng.uniform(0, 180))
            stamp = np.zeros((size, size), np.uint8)
            cv2.ellipse(stamp, centre, axes, angle, 0, 360, 1, -1)
            inside = (stamp > 0) & (labels == 0)
            n += 1
            labels[inside] = n
            rgb[inside] = np.array(NUCLEUS) * rng.uniform(0.85, 1.15)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.7) + rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def tile():
    return draw_tile()


def test_finds_the_drawn_nuclei(tile):
    rgb, true = tile
    pred = ClassicalSegmenter().segment_batch(rgb[None])[0]
    assert pred.dtype == np.int32
    assert abs(int(pred.max()) - int(true.max())) <= 0.03 * true.max()
    scores = f1_at_iou(pred, true, 0.5)
    assert scores["f1"] > 0.9, scores
    # every found nucleus lies on a true one
    found = np.unique(pred[pred > 0])
    on_truth = np.unique(pred[(pred > 0) & (true > 0)])
    assert np.array_equal(found, on_truth)


def test_glass_and_nucleus_free_tissue_give_no_nuclei():
    rng = np.random.default_rng(1)
    segmenter = ClassicalSegmenter()
    for colour in (GLASS, (255, 255, 255), PINK, (200, 100, 150)):
        flat = np.clip(np.array(colour) + rng.normal(0, 8, (512, 512, 3)), 0, 255).astype(np.uint8)
        assert segmenter.segment_batch(flat[None])[0].max() == 0, colour
    white_and_pink = np.full((256, 256, 3), 255, np.uint8)
    white_and_pink[:, 128:] = PINK
    assert segmenter.segment_batch(white_and_pink[None]).max() == 0


def test_segment_image_at_another_resolution(tile):
    rgb, true = tile
    upsampled = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    labels = segment_image(upsampled, mpp=0.25)
    assert labels.dtype == np.int32 and labels.shape == upsampled.shape[:2]
    assert labels[:, : upsampled.shape[1] // 4].max() == 0  # the glass strip
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(ids.size))  # consecutive 1..n
    assert abs(ids.size - 1 - int(true.max())) <= 0.03 * true.max()
    true_up = cv2.resize(true, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    assert f1_at_iou(labels, true_up)["f1"] > 0.9


def test_segment_image_accepts_float_images(tile):
    rgb, _ = tile
    expected = segment_image(rgb, 0.5)
    assert np.array_equal(segment_image(rgb / 255.0, 0.5), expected)
    assert np.array_equal(segment_image(rgb.astype(np.float32), 0.5), expected)


def test_segment_image_is_deterministic(tile):
    rgb, _ = tile
    assert np.array_equal(segment_image(rgb, 0.4), segment_image(rgb.copy(), 0.4))


class CallRecorder:
    """A segmenter that passes every call on to `inner` and keeps the shapes it was given."""

    def __init__(self, inner: Segmenter):
        self.inner, self.calls = inner, []
        self.name, self.version, self.mpp, self.device = inner.name, inner.version, inner.mpp, inner.device

    def segment_batch(self, tiles):
        self.calls.append(tuple(tiles.shape))
        return self.inner.segment_batch(tiles)


def test_segment_images_stacks_same_shapes_into_one_call_with_the_same_labels(tile):
    rgb, _ = tile
    images = [rgb[:256, :256], rgb[256:, 256:], rgb[:200, :256], rgb[256:, :256]]
    mpps = [0.5, 0.5, 0.5, 0.5]
    recorder = CallRecorder(default_segmenter())
    labels = segment_images(images, mpps, recorder)
    # Three 256x256 fields go through the network together; the 200x256 one alone.
    assert sorted(recorder.calls) == sorted([(3, 256, 256, 3), (1, 200, 256, 3)])
    for image, mpp, found in zip(images, mpps, labels):
        assert np.array_equal(found, segment_image(image, mpp)), "stacking must not change an image's labels"
    with pytest.raises(ValueError, match="one mpp per image"):
        segment_images(images, mpps[:2])


@pytest.mark.parametrize(
    ("image", "mpp", "message"),
    [
        (np.zeros((32, 32, 3, 1), np.uint8), 0.5, "dimensions"),  # a 2-D array is a fluorescence channel (test_fluorescence_api)
        (np.zeros((32, 32, 4), np.uint8), 0.5, "3 channels"),
        (np.zeros((32, 32, 3), np.int16), 0.5, "uint8 or float"),
        (np.full((32, 32, 3), 300.0), 0.5, r"\[0,255\]"),
        (np.full((32, 32, 3), np.nan), 0.5, r"\[0,1\]"),
        (np.zeros((0, 32, 3), np.uint8), 0.5, "empty"),
        (np.zeros((32, 32, 3), np.uint8), 0.0, "mpp"),
        (np.zeros((32, 32, 3), np.uint8), -0.5, "mpp"),
        (np.zeros((32, 32, 3), np.uint8), float("nan"), "mpp"),
        (np.zeros((32, 32, 3), np.uint8), "half", "mpp"),
    ],
)
def test_segment_image_rejects_bad_input(image, mpp, message):
    with pytest.raises(ValueError, match=message):
        segment_image(image, mpp)


def test_segment_batch_contract(tile):
    rgb, _ = tile
    segmenter = ClassicalSegmenter()
    batch = np.stack([rgb, rgb[::-1].copy(), np.full_like(rgb, 255)])
    labels = segmenter.segment_batch(batch)
    assert labels.shape == batch.shape[:3] and labels.dtype == np.int32
    assert labels[0].max() == labels[1].max() > 0 and labels[2].max() == 0
    with pytest.raises(ValueError):
        segmenter.segment_batch(batch.astype(np.float32))
    with pytest.raises(ValueError):
        segmenter.segment_batch(rgb)


def test_default_segmenter_is_shared_and_classical_stays_available_by_name():
    segmenter = default_segmenter()
    assert segmenter is default_segmenter()
    assert isinstance(segmenter, Segmenter)
    assert isinstance(segmenter, TorchScriptSegmenter) and segmenter.path == SHIPPED_MODEL_FILE
    classical = get_segmenter("classical")
    assert (classical.name, classical.version, classical.mpp, classical.device) == (
        "classical-hed-watershed",
        "1",
        0.5,
        "cpu",
    )
    assert ClassicalSegmenter(ClassicalParams(min_area_um2=5)).version.startswith("1+")


def test_import_stays_light_and_exposes_segment_image():
    code = (
        "import sys, wsi_assets; "
        "assert 'cv2' not in sys.modules and 'skimage' not in sys.modules; "
        "assert wsi_assets.__all__ == ['segment_image', 'segment_and_classify']; "
        "import numpy as np; "
        "assert wsi_assets.segment_image(np.zeros((8, 8, 3), np.uint8), 0.5).shape == (8, 8)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_real_slide_region():
    if not CMU_SLIDE.exists():
        pytest.skip(f"{CMU_SLIDE} not available")
    with openslide.OpenSlide(str(CMU_SLIDE)) as slide:
        mpp = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
        tissue = np.asarray(slide.read_region((1024, 1024), 0, (1024, 1024)).convert("RGB"))
        glass = np.asarray(slide.read_region((150, 0), 0, (550, 900)).convert("RGB"))
        # the slide's top-left corner: a scrap of tissue with dark blue-black debris
        debris = np.asarray(slide.read_region((0, 0), 0, (150, 900)).convert("RGB"))
    labels = segment_image(tissue, mpp)
    assert labels.shape == (1024, 1024)
    assert 300 < labels.max() < 3000
    areas_um2 = np.bincount(labels.ravel())[1:] * mpp**2
    assert 15 < np.median(areas_um2) < 80  # nucleus-sized, not fragments or tissue blobs
    assert segment_image(glass, mpp).max() <= 2
    # The learned model alone outlines 8 of the dark debris blobs as nuclei (v4; v3: 12); the colour
    # gate (segmentation/colour_gate.py) drops the blue-green ink and glass among them, leaving 3
    # purple blobs of the tissue scrap (v3: 6). Bounded so a model or gate that gets worse fails.
    gated = segment_image(debris, mpp).max()
    assert gated <= 4
    ungated = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu", colour_gate=False)
    assert segment_image(debris, mpp, model=ungated).max() >= gated + 3  # the gate does the work
    assert segment_image(debris, mpp, model="classical").max() <= 2


def test_synthetic_slide_counts(tmp_path):
    spec = synthetic.SyntheticSlideSpec(width=2048, height=2048, mpp=0.25, seed=3)
    path = tmp_path / "synthetic.svs"
    synthetic.write_synthetic_slide(path, spec)
    with openslide.OpenSlide(str(path)) as slide:
        rgb = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    found = segment_image(rgb, spec.mpp).max()
    expected = synthetic.count_synthetic_nuclei(spec)
    assert expected > 100
    assert abs(found - expected) <= 0.05 * expected
