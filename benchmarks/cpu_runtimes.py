"""CPU cost of the learned model per runtime, and what int8 would cost in accuracy.

    python benchmarks/cpu_runtimes.py            # CPU-s per 1152² tile (the slide path's tile), 1 thread
    python benchmarks/cpu_runtimes.py --int8     # also: calibrated static int8 (ONNX Runtime's quantizer),
                                                 # run in OpenVINO and ONNX Runtime, through the accuracy gate

CPU-seconds (process time, minimum of 3 after a warm-up), so another job on the machine inflates
them less than wall time. "network" is the U-Net alone (its maps, not the embedding levels); "segment_batch" is what the slide path
calls: network, post-processing, colour gate, renumbering. Every runtime's labels are compared
with torch's on the same tile.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation import cpu_runtimes
from wsi_assets.segmentation.torchscript import TorchScriptSegmenter, read_embedded_file
from wsi_assets.training.data import at_mpp
from wsi_assets.training.evaluate import labelled_images

REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data" / "nuclei_train"


def cpu_seconds(fn, repeats: int = 3):
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def test_tile(data: Path, side: int = 1152) -> np.ndarray:
    item = max(labelled_images(data), key=lambda i: i.rgb.size)  # a held-out MoNuSeg image
    rgb, _ = at_mpp(item, 0.5)
    reps = -(-side // min(rgb.shape[:2]))
    return np.ascontiguousarray(np.tile(rgb, (reps, reps, 1))[:side, :side])


def int8_network(onnx: bytes, data: Path) -> bytes:
    """The embedded network quantized to int8 (QDQ, per-channel, calibrated on 48 training images)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from wsi_assets.training.split import is_held_out

    train = [i for i in labelled_images(data, held_out_only=False) if not is_held_out(i.dataset, i.stem)]
    picked = np.random.default_rng(0).choice(len(train), 48, replace=False)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            crops = []
            for k in picked:
                rgb, _ = at_mpp(train[k], 0.5)
                h, w = rgb.shape[0] // 16 * 16, rgb.shape[1] // 16 * 16
                if h >= 64 and w >= 64:
                    crops.append({"rgb": rgb[:h, :w].transpose(2, 0, 1)[None].astype(np.float32)})
            self.crops = iter(crops)

        def get_next(self):
            return next(self.crops, None)

    with tempfile.TemporaryDirectory() as folder:
        plain, prepared, quantized = (Path(folder) / n for n in ("f32.onnx", "pre.onnx", "int8.onnx"))
        plain.write_bytes(onnx)
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Calibration(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return quantized.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tile = test_tile(args.data)
    x = np.ascontiguousarray(tile.transpose(2, 0, 1)[None], np.float32)
    print(
        f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}; one {tile.shape[0]}² tile, 1 thread"
    )
    print("| runtime | network CPU-s | segment_batch CPU-s | nuclei | labels equal to torch's |")
    print("| --- | --- | --- | --- | --- |")
    reference = None
    for runtime in ("torch", "openvino", "onnxruntime"):
        try:
            segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu", cpu_runtime=runtime)
        except ValueError as error:
            print(f"| {runtime} | skipped: {error} | | | |")
            continue
        if segmenter.runner is None and runtime != "torch":
            print(f"| {runtime} | not installed | | | |")
            continue
        if segmenter.runner is None:
            from wsi_assets.training.train import load_trained_net

            # the same freezing the segmenter applies to the whole module, on the U-Net alone
            module = torch.jit.freeze(torch.jit.script(load_trained_net(SHIPPED_MODEL_FILE).eval()))
            network = lambda: module(torch.from_numpy(x).contiguous(memory_format=torch.channels_last) / 255.0)  # noqa: E731
            with torch.inference_mode():
                net_s, _ = cpu_seconds(network)
        else:
            net_s, _ = cpu_seconds(lambda: segmenter.runner.run(x, 1))
        whole_s, labels = cpu_seconds(lambda: segmenter.segment_batch(tile[None]))
        reference = labels if reference is None else reference
        print(f"| {segmenter.runtime} | {net_s:.3f} | {whole_s:.3f} | {int(labels.max())} | {np.mean(labels == reference):.6f} |")
    if args.int8:
        from wsi_assets.training.accuracy_gate import gate_failures, held_out_summary

        onnx = read_embedded_file(SHIPPED_MODEL_FILE, cpu_runtimes.NETWORK_ONNX)
        quantized = int8_network(onnx, args.data)
        held_out = labelled_images(args.data)
        reference_scores = held_out_summary(TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu", cpu_runtime="torch"), held_out)
        for runtime in ("openvino", "onnxruntime"):
            segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu", cpu_runtime=runtime)
            if segmenter.runner is None:
                continue
            segmenter.runner = cpu_runtimes._BUILDERS[runtime](quantized, 1)
            net_s, _ = cpu_seconds(lambda: segmenter.runner.run(x, 1))
            failures = gate_failures(reference_scores, held_out_summary(segmenter, held_out))
            print(f"\n{runtime} int8: network {net_s:.3f} CPU-s; accuracy gate: {'passed' if not failures else 'FAILED'}")
            for line in failures:
                print(f"  {line}")


if __name__ == "__main__":
    main()
