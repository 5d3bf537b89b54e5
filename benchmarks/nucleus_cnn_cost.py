"""CPU cost per 1,000 nuclei of the nucleus classifier network, by runtime (issue 33).

One thread each, CPU seconds (process time), best of 3, over 2,048 real nucleus crops (CoNSeP
held-out tiles, found outlines); the cutting of the crops (`nucleus_crops`) timed apart.

    python benchmarks/nucleus_cnn_cost.py --cnn wsi_assets/models/nucleus_classifier_cnn_v1.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from wsi_assets.cells.nucleus_cnn import BATCH, nucleus_crops
from wsi_assets.training.nucleus_cnn_cache import read_crop
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train" / "consep_train"


def best_of(run, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--count", type=int, default=2048)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from wsi_assets.segmentation.registry import get_segmenter
    from wsi_assets.training.nucleus_cnn_cache import found_labels

    segmenter = get_segmenter("learned", device="cpu")
    images = []
    for stem in sorted(p.stem for p in (args.data / "images").glob("*.png") if p.stem.rsplit("_", 1)[0] in HELD_OUT_CONSEP_TILES):
        rgb, _ = read_crop(args.data, stem)
        images.append((rgb, found_labels(segmenter, rgb)))
    nuclei = sum(len(np.unique(labels)) - 1 for _, labels in images)
    cut = best_of(lambda: [nucleus_crops(rgb, labels) for rgb, labels in images])
    crops = np.concatenate([nucleus_crops(rgb, labels)[1] for rgb, labels in images])
    crops = np.resize(crops, (args.count, *crops.shape[1:]))
    print(f"cutting crops: {cut * 1000 / nuclei:.3f} CPU-s per 1,000 nuclei ({nuclei} nuclei in {len(images)} images)")
    onnx = args.cnn.read_bytes()
    floats = crops.astype(np.float32)

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    runners = {"onnxruntime": lambda x: session.run(None, {"crops": x})[0]}
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(
            ov.Core().read_model(model=onnx, weights=b""),
            "CPU",
            {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
        )
        runners["openvino"] = lambda x: compiled(x)[0]
    except ImportError:
        print("openvino: not installed")
    reference = None
    for name, runner in runners.items():

        def run_all():
            return np.concatenate([runner(floats[i : i + BATCH]) for i in range(0, len(floats), BATCH)])

        out = run_all()
        reference = out if reference is None else reference
        seconds = best_of(run_all)
        print(
            f"{name}: {seconds * 1000 / len(floats):.3f} CPU-s per 1,000 nuclei (batch {BATCH}); max |Δp| vs onnxruntime {np.abs(out - reference).max():.1e}"
        )


if __name__ == "__main__":
    main()
