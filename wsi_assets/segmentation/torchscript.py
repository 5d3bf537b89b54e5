"""A `Segmenter` backed by any TorchScript file with the InstanSeg-style contract.

Contract: the module takes an RGB float32 tensor (B,3,H,W) at the model's µm/px and returns
instance labels (B,1,H,W) (any integer or float dtype holding whole numbers; 0 = background).
What the file says about itself comes from `model_card.json`, read in this order:
1. embedded in the TorchScript file (`torch.jit.save(..., _extra_files={"model_card.json": ...})`),
   as the models this project trains do;
2. a sidecar `<file stem>.model_card.json` beside the file (for foreign models, e.g. InstanSeg);
3. constructor arguments, which override both.
Card keys used: `name`, `version`, `mpp`, and `input.range`: "0..255" (default), "0..1", or
"percentile" (each channel scaled so its 0.1 and 99.9 percentiles map to 0 and 1, which is
how InstanSeg normalises images before its models).

This project's models also give each tile's decoder levels, which nucleus embeddings are read
from (`cells/embeddings.py`): the card's `embedding` names them, the module's exported
`labels_and_embedding_maps` gives them in torch, and `network.onnx`'s extra outputs in the CPU
runtimes. `segment_batch_with_embeddings` returns them; `segment_batch` never computes or copies them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch

from wsi_assets.segmentation import cpu_runtimes
from wsi_assets.segmentation.colour_gate import without_non_nuclear
from wsi_assets.cells.embeddings import EmbeddingMaps, embedding_identity
from wsi_assets.segmentation.maps_to_instances import instances_from_maps
from wsi_assets.segmentation.model_files import (  # noqa: F401 (re-exported: where callers that load models find them)
    CARD_NAME,
    CARD_SUFFIX,
    ModelLoadError,
    is_torchscript_archive,
    read_embedded_file,
    read_model_card,
)
from wsi_assets.segmentation.protocol import check_tile_batch

INPUT_RANGES = ("0..255", "0..1", "percentile")
# Inputs up to this many pixels (a 1024² field) run side by side, one per CPU core; a slide's
# 1152² tiles run one at a time with every core on each, as their activations are ~380 MB apiece.
SIDE_BY_SIDE_MAX_PX = 1024 * 1024
GPU_BATCH = 16  # small inputs per GPU call: 16 fields of 512² are ~4 Mpx, about a slide tile batch
EMBEDDING_METHOD = "labels_and_embedding_maps"  # the module's exported (labels, 1/4 level, 1/8 level)


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message (torch's are pages long), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> cuda when torch sees a GPU, else cpu; anything else as torch spells it."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU")
    return resolved


class TorchScriptSegmenter:
    """Nuclei from a TorchScript model file; batches on `device` ("auto": cuda if present, else cpu)."""

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        mpp: float | None = None,
        input_range: str | None = None,
        name: str | None = None,
        version: str | None = None,
        check: bool = True,
        cpu_runtime: str | None = None,
        colour_gate: bool | None = None,
    ):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        if not is_torchscript_archive(self.path):
            # Checked before the card: a checkpoint or a random file has no card either, and
            # "does not say its µm/px" would send the user after the wrong problem.
            raise ModelLoadError(
                f"model file {self.path.name} is not a TorchScript model (a state_dict checkpoint or another file?): "
                "save it with torch.jit.save(torch.jit.script(model), path) and give that file"
            )
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        card = read_model_card(self.path)
        self.card = card
        self.name = name or str(card.get("name") or self.path.stem)
        self.version = version or str(card.get("version") or "unversioned")
        mpp = mpp or card.get("mpp") or (card.get("input") or {}).get("resolution_um_per_px")
        if not mpp or not float(mpp) > 0:
            raise ModelLoadError(
                f"model {self.path.name} does not say its µm/px: give mpp (segmentation config model_mpp) "
                f'or write a {self.path.stem + CARD_SUFFIX} with {{"mpp": 0.5}} beside it'
            )
        self.mpp = float(mpp)
        self.input_range = input_range or str((card.get("input") or {}).get("range") or "0..255")
        if self.input_range not in INPUT_RANGES:
            raise ModelLoadError(f"model {self.path.name}: input range {self.input_range!r} is not one of {INPUT_RANGES}")
        try:
            with _torchscript_deprecation_silenced():
                module = torch.jit.load(str(self.path), map_location=self.torch_device)
        except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors... for bad files
            raise ModelLoadError(f"model file {self.path} is not a loadable TorchScript file: {_first_line(exc)}") from None
        self.module = _optimized_for_inference(module.eval())
        # This project's H&E models (their card carries the post-processing) drop ink and glass
        # blobs by colour; a foreign model may be for other stains, so it is left as it is.
        if colour_gate is None:
            colour_gate = bool(card.get("postprocessing")) and card.get("colour_gate", True) is not False
        self.colour_gate = colour_gate
        self.runner = self._cpu_runner(cpu_runtime)
        self.runtime = self.runner.label if self.runner else "torch"
        self.embedding = self._embedding_identity()
        if check:
            self._check_contract()

    def _cpu_runner(self, cpu_runtime: str | None) -> cpu_runtimes.NetworkRunner | None:
        """OpenVINO or ONNX Runtime for this project's own models on a CPU (see cpu_runtimes)."""
        chosen = cpu_runtimes.requested_runtime(cpu_runtime)
        post = self.card.get("postprocessing")
        if self.torch_device.type != "cpu" or chosen == "torch" or not post or self.input_range != "0..255":
            return None
        onnx = read_embedded_file(self.path, cpu_runtimes.NETWORK_ONNX)
        runner = cpu_runtimes.load_network_runner(onnx, chosen, threads=torch.get_num_threads())
        if runner is not None:
            self._post = {k: post[k] for k in ("fg_threshold", "seed_threshold", "grow_iterations", "min_area")}
            levels = len(self.card.get("widths") or ()) or 5  # the U-Net's levels; cards before widths: 5
            self._multiple = 2 ** (levels - 1)
        return runner

    def _embedding_identity(self) -> dict | None:
        """The card's embedding, named for this model, when the network that runs here gives it."""
        card_embedding = self.card.get("embedding")
        if not card_embedding:
            return None
        if self.runner is not None:
            names = self.runner.outputs
            if not all(name in names for name in card_embedding["outputs"]):
                return None  # a network.onnx older than its card's embedding: maps only
            self._embedding_outputs = [names.index(name) for name in card_embedding["outputs"]]
        elif not hasattr(self.module, EMBEDDING_METHOD):
            return None
        self._embedding_strides = tuple(int(s) for s in card_embedding["strides"])
        return embedding_identity(self.name, self.version, card_embedding)

    def _embedding_maps(self, levels: list[np.ndarray], height: int, width: int) -> list[EmbeddingMaps]:
        """Per tile, each (B,C,h,w) level cropped to (C, ceil(H/s), ceil(W/s)): the padding up to
        the U-Net's multiple goes, as it does from the labels."""
        strides = self._embedding_strides
        crops = [level[:, :, : -(-height // s), : -(-width // s)] for level, s in zip(levels, strides)]
        return [
            EmbeddingMaps(
                tuple(np.ascontiguousarray(crop[i]) for crop in crops), strides
            )  # float16 from OpenVINO, float32 elsewhere
            for i in range(len(levels[0]))
        ]

    def _forward_runner(self, tiles: np.ndarray, with_embedding: bool) -> tuple[np.ndarray, list[EmbeddingMaps] | None]:
        """The network in the CPU runtime, then the same post-processing as the TorchScript module's."""
        maps, levels = self._network_runner(tiles, with_embedding)
        out = np.zeros(tiles.shape[:3], np.int32)
        for i in range(len(tiles)):
            out[i] = self._instances(maps[i], *tiles.shape[1:3])
        return out, levels

    def _instances(self, maps: np.ndarray, height: int, width: int) -> np.ndarray:
        """One tile's (2,H',W') padded network maps as instance labels (H,W), as the TorchScript module's post-processing gives them."""
        return instances_from_maps(maps[0, :height, :width], maps[1, :height, :width], **self._post)

    def _network_runner(self, tiles: np.ndarray, with_embedding: bool) -> tuple[np.ndarray, list[EmbeddingMaps] | None]:
        """The network alone in the CPU runtime: its (B,2,H',W') maps (padded) and each tile's embedding maps when asked for."""
        height, width = tiles.shape[1:3]
        pad_h, pad_w = (-height) % self._multiple, (-width) % self._multiple
        x = np.pad(tiles, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else tiles
        wanted = 1 + max(self._embedding_outputs) if with_embedding else 1  # the maps come first
        outputs = self.runner.run_many(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32), wanted)
        if not with_embedding:
            return outputs[0], None
        return outputs[0], self._embedding_maps([outputs[k] for k in self._embedding_outputs], height, width)

    @property
    def inputs_side_by_side(self) -> int:
        """How many small same-sized inputs one `segment_batch` call runs at once on this device."""
        if self.device.startswith("cuda"):
            return GPU_BATCH
        return self.runner.streams if self.runner is not None and self.runner.run_side_by_side else 1

    @property
    def inputs_per_call(self) -> int:
        """Same-sized small inputs worth stacking into one `segment_batch` call: a GPU batch, or
        two per CPU stream where inputs run side by side (so no core waits at the end of a call)."""
        side_by_side = self.inputs_side_by_side
        return side_by_side if self.device.startswith("cuda") or side_by_side == 1 else 2 * side_by_side

    def _check_contract(self) -> None:
        """Run a tiny blank input: the output must be (B,1,H,W) whole-number labels."""
        probe = np.full((2, 64, 64, 3), 255, np.uint8)
        probe[1, 20:30, 20:30] = (80, 40, 140)
        try:
            self._forward(probe)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.path.name} breaks the contract RGB (B,3,H,W) -> labels (B,1,H,W): {_first_line(exc)}"
            ) from None

    def _to_input(self, tiles: np.ndarray) -> torch.Tensor:
        # (B,3,H,W) in channels-last memory, as the RGB tiles already are: convolutions run ~1.7x
        # faster on a CPU than on planar input, with the same labels.
        x = torch.from_numpy(tiles).to(self.torch_device).permute(0, 3, 1, 2).float()
        x = x.contiguous(memory_format=torch.channels_last)
        if self.input_range == "0..1":
            return x / 255.0
        if self.input_range == "percentile":
            flat = x.flatten(2)
            low = torch.quantile(flat, 0.001, dim=2, keepdim=True).unsqueeze(-1)
            high = torch.quantile(flat, 0.999, dim=2, keepdim=True).unsqueeze(-1)
            return (x - low) / (high - low).clamp_min(1e-3)
        return x

    def _forward(self, tiles: np.ndarray) -> np.ndarray:
        """Labels (B,H,W) int32 as the model gives them (before the colour gate and renumbering)."""
        return self._labels_and_maps(tiles, with_embedding=False)[0]

    def _labels_and_maps(self, tiles: np.ndarray, with_embedding: bool) -> tuple[np.ndarray, list[EmbeddingMaps] | None]:
        """Labels (B,H,W) int32 as the model gives them, and the embedding maps when asked for."""
        if self.runner is not None:
            return self._forward_runner(tiles, with_embedding)
        with torch.inference_mode():
            x = self._to_input(tiles)
            if with_embedding:
                labels, *levels = getattr(self.module, EMBEDDING_METHOD)(x)
            else:
                labels, levels = self.module(x), []
        labels = self._checked_labels(labels, tiles.shape)
        if not with_embedding:
            return labels, None
        return labels, self._embedding_maps([level.float().cpu().numpy() for level in levels], *tiles.shape[1:3])

    def _checked_labels(self, out, shape: tuple[int, ...]) -> np.ndarray:
        """The module's output as int32 (B,H,W) labels, or a one-line error saying how it breaks the contract."""
        batch, height, width = shape[:3]
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ModelLoadError(f"model {self.path.name} returned {type(out).__name__}, not a label tensor")
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if tuple(out.shape) != (batch, height, width):
            raise ModelLoadError(
                f"model {self.path.name} returned shape {tuple(out.shape)} for input {(batch, 3, height, width)}; "
                f"expected labels {(batch, 1, height, width)}"
            )
        if out.is_floating_point() and not bool(torch.all(out == torch.round(out))):
            raise ModelLoadError(f"model {self.path.name} returned non-integer values: not an instance label map")
        return out.to(torch.int32).cpu().numpy()

    def release_working_memory(self) -> None:
        """Give back the CPU runtime's activation buffers (~380 MB for a 1152² tile) until the next call."""
        if self.runner is not None:
            self.runner.release()

    def segment_batch(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 (B,H,W,3) RGB at `self.mpp` -> int32 (B,H,W), 0 background, 1..n per tile."""
        return self._segment(tiles, with_embedding=False)[0]

    def segment_batch_with_embeddings(self, tiles: np.ndarray) -> tuple[np.ndarray, list[EmbeddingMaps]]:
        """The labels `segment_batch` gives, and each tile's embedding maps (see `embedding`)."""
        if self.embedding is None:
            raise ValueError(f"model {self.path.name} ({self.runtime}) gives no embedding: use segment_batch")
        return self._segment(tiles, with_embedding=True)

    def segment_batch_deferred(
        self, tiles: np.ndarray, with_embedding: bool = False
    ) -> list[Callable[[], tuple[np.ndarray, EmbeddingMaps | None]]]:
        """The network on `tiles` now; for each tile, a function that finishes it: (labels, embedding
        maps or None), the same as `segment_batch`(`_with_embeddings`) give.

        On a CPU runtime the finishing (instances from the maps, colour gate, renumbering: ~0.15
        CPU-s a 1152² tile) is left to the caller, which runs it in other threads while the next
        tiles go through the network (`segment_slide`); elsewhere the module already did it.
        """
        tiles = check_tile_batch(tiles)
        if with_embedding and self.embedding is None:
            raise ValueError(f"model {self.path.name} ({self.runtime}) gives no embedding: use segment_batch")
        if self.runner is None or tiles.shape[1] * tiles.shape[2] <= SIDE_BY_SIDE_MAX_PX:
            labels, maps = self._segment(tiles, with_embedding)
            return [partial(_done, labels[i], maps[i] if maps is not None else None) for i in range(len(tiles))]
        finishers = []
        for i in range(len(tiles)):  # one at a time, as _segment does: a 1152² tile's activations are hundreds of MB
            maps, levels = self._network_runner(tiles[i : i + 1], with_embedding)
            finishers.append(partial(self._finish_tile, maps[0], tiles[i], levels[0] if levels is not None else None))
        return finishers

    def _finish_tile(
        self, maps: np.ndarray, tile: np.ndarray, levels: EmbeddingMaps | None
    ) -> tuple[np.ndarray, EmbeddingMaps | None]:
        return self._gated_and_renumbered(self._instances(maps, *tile.shape[:2]), tile), levels

    def _gated_and_renumbered(self, labels: np.ndarray, tile: np.ndarray) -> np.ndarray:
        """One tile's labels after the colour gate (where on) and renumbered 1..n: ids change, nothing else."""
        return _relabel(without_non_nuclear(labels, tile) if self.colour_gate else labels)

    def _segment(self, tiles: np.ndarray, with_embedding: bool) -> tuple[np.ndarray, list[EmbeddingMaps] | None]:
        tiles = check_tile_batch(tiles)
        # On a CPU a U-Net's activations for a batch of large tiles take gigabytes and batching
        # gains nothing, so slide tiles go through one at a time; small inputs (fields of a
        # batch) run side by side, one per core; a GPU takes the whole batch.
        small = tiles.shape[1] * tiles.shape[2] <= SIDE_BY_SIDE_MAX_PX and self.runner is not None
        step = len(tiles) if self.device.startswith("cuda") or small else 1
        parts = [self._labels_and_maps(tiles[i : i + step], with_embedding) for i in range(0, len(tiles), max(1, step))]
        labels = np.concatenate([part[0] for part in parts]) if parts else np.zeros(tiles.shape[:3], np.int32)
        maps = [tile_maps for part in parts for tile_maps in part[1]] if with_embedding else None
        # The gate and the renumbering change label ids only; the maps are the network's, as they are.
        return (
            np.stack([self._gated_and_renumbered(tile_labels, tile) for tile_labels, tile in zip(labels, tiles)])
            if len(labels)
            else labels
        ), maps


@contextmanager
def _torchscript_deprecation_silenced():
    """Recent torch deprecates TorchScript (jit.load, jit.freeze) in favour of torch.export/compile,
    but the model contract, InstanSeg's, is a TorchScript file: a warning on every load is noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _optimized_for_inference(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The module frozen: weights become constants and batch norm folds into the convolutions
    (shipped model, 1024² tile, 1 CPU thread: 2.39 -> 2.13 CPU-s, same labels). A model that
    cannot be frozen runs as loaded. optimize_for_inference was slower here (3.0-3.6 s).
    Freezing keeps `forward` only, so the embedding method is kept by name where the module has it."""
    kept = [EMBEDDING_METHOD] if hasattr(module, EMBEDDING_METHOD) else []
    try:
        with _torchscript_deprecation_silenced():
            return torch.jit.freeze(module, preserved_attrs=kept)
    except Exception:  # freezing needs a scripted module in eval mode with a plain forward
        return module


def _done(labels: np.ndarray, maps: EmbeddingMaps | None) -> tuple[np.ndarray, EmbeddingMaps | None]:
    return labels, maps


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Ids renumbered 1..n in the order of the original ids (foreign models may skip ids or use
    negative background), as int32.

    A table indexed by id is O(pixels), where np.unique sorts every pixel (~70 ms a 1152² tile);
    ids far above the pixel count would make that table huge, so those still sort.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(labels.shape, np.int32)
    top = int(labels.max())
    if top <= 0:
        return np.zeros(labels.shape, np.int32)
    if top > 4 * labels.size + 65_536:
        labels = np.where(labels > 0, labels, 0)
        ids, inverse = np.unique(labels, return_inverse=True)
        return (inverse.reshape(labels.shape) + (ids[0] != 0)).astype(np.int32)
    if int(labels.min()) < 0:
        labels = np.maximum(labels, 0)
    present = np.zeros(top + 1, bool)
    present[labels] = True
    present[0] = False
    return np.cumsum(present, dtype=np.int32)[labels]
