"""Where the learned network runs on a CPU: OpenVINO, ONNX Runtime, or torch, whichever is present.

Measured on this project's 2-core AMD EPYC VM (AVX2, no AVX-512), one 1024² tile, one thread, CPU-s
for the network alone (`python benchmarks/cpu_runtimes.py`): torch frozen ~1.7, ONNX Runtime 1.26,
OpenVINO 1.12, all with the same maps to ~3e-5. So "auto" tries OpenVINO, then ONNX Runtime, then
falls back to torch; a missing package or a runtime that fails to compile the network is skipped,
never fatal. int8 (OpenVINO 0.77 CPU-s, ONNX Runtime 0.98) flipped 1.5-2.4% of foreground pixels
on that tile and is not offered.

The network comes as ONNX bytes embedded in the model file (`network.onnx`, see
`training/onnx_export.py`), so the package still ships one model file. Its first output is the
maps the labels come from; a network may have more (the decoder levels nucleus embeddings are read
from): a runner gives the first `count` of them, so segmenting alone fetches and copies the maps only.

Precision: float32 unless `WSI_CPU_PRECISION=bf16` is set *and* the CPU has native bf16 (OpenVINO
reports it); OpenVINO would otherwise pick bf16 by itself on such CPUs and change labels slightly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

NETWORK_ONNX = "network.onnx"  # the extra file in a model archive that holds the network for these runtimes
RUNTIME_ENV = "WSI_CPU_RUNTIME"
PRECISION_ENV = "WSI_CPU_PRECISION"
RUNTIMES = ("openvino", "onnxruntime", "torch")
CHOICES = ("auto",) + RUNTIMES


# (B,3,H,W) input, how many of the network's outputs to give (None: all) -> those outputs, in order
RunOutputs = Callable[[np.ndarray, "int | None"], "list[np.ndarray]"]


@dataclass
class NetworkRunner:
    """A compiled network: float32 (1,3,H,W) RGB 0..255 -> its outputs, float32 (1,2,H,W) maps first."""

    runtime: str  # "openvino", "onnxruntime"
    precision: str  # "f32", "bf16"
    run: RunOutputs
    release: Callable[[], None] = lambda: None  # frees the working memory of the last input shape
    # (B,3,H,W) -> outputs with the inputs run side by side, one per core: see _openvino. None: one after another.
    run_side_by_side: RunOutputs | None = None
    streams: int = 1  # inputs run_side_by_side runs at once
    outputs: tuple[str, ...] = ("maps",)  # the network's output names, in the order run gives them

    def run_many(self, batch: np.ndarray, count: int | None = None) -> list[np.ndarray]:
        """The first `count` outputs (None: all) of a (B,3,H,W) batch of one shape, each (B,...)."""
        if self.run_side_by_side is not None and len(batch) > 1:
            return self.run_side_by_side(batch, count)
        each = [self.run(batch[i : i + 1], count) for i in range(len(batch))]
        return each[0] if len(each) == 1 else [np.concatenate(output) for output in zip(*each)]

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"


def requested_runtime(runtime: str | None = None) -> str:
    """The runtime asked for: the argument, else $WSI_CPU_RUNTIME, else auto; unknown names raise."""
    chosen = (runtime or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if chosen not in CHOICES:
        raise ValueError(f"CPU runtime {chosen!r} is not one of {', '.join(CHOICES)} (set by {RUNTIME_ENV} or cpu_runtime)")
    return chosen


def _openvino(onnx: bytes, threads: int) -> NetworkRunner:
    import openvino as ov

    core = ov.Core()
    precision = "f32"
    if os.environ.get(PRECISION_ENV, "").lower() == "bf16":
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" in capabilities:
            precision = "bf16"
        else:
            log.warning("%s=bf16 asked, but this CPU has no native bf16 (%s): running float32", PRECISION_ENV, capabilities)
    config = {"INFERENCE_NUM_THREADS": max(1, threads), "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}

    def read_model():
        # Outputs after the maps (embedding levels) are handed over as float16, the precision
        # they are stored at: OpenVINO converts them in its own threads, numpy then copies half the bytes.
        model = core.read_model(model=onnx, weights=b"")
        if len(model.outputs) > 1:
            steps = ov.preprocess.PrePostProcessor(model)
            for index in range(1, len(model.outputs)):
                steps.output(index).tensor().set_element_type(ov.Type.f16)
            model = steps.build()
        return model

    model = read_model()
    names = tuple(output.get_any_name() for output in model.outputs)
    core.compile_model(model, "CPU", config)  # fails here, at load, if it cannot
    state: dict[str, object] = {"shape": None, "static": None, "dynamic": None, "last": None}

    def run(x: np.ndarray, count: int | None = None) -> list[np.ndarray]:
        # A shape seen twice in a row (a slide's tiles, a batch of same-sized images) gets a
        # network compiled for it: OpenVINO then plans its activation memory once (1152² tile:
        # 380 MB held instead of 510 MB, ~10% faster). Shapes that keep changing (images of many
        # sizes) run on the dynamic network, as recompiling (~0.1 s) would cost more than it saves.
        if x.shape != state["shape"] and x.shape == state["last"]:
            state["static"] = state["dynamic"] = None  # give back the old buffers before compiling
            model = read_model()
            model.reshape(list(x.shape))
            state["static"], state["shape"] = core.compile_model(model, "CPU", config).create_infer_request(), x.shape
        state["last"] = x.shape
        if x.shape == state["shape"]:
            request = state["static"]
        else:
            # Compiled anew after a switch: a compiled network keeps its buffers until dropped.
            request = state["dynamic"] = (
                state["dynamic"] or core.compile_model(read_model(), "CPU", config).create_infer_request()
            )
        # Outputs left in the request's buffers and copied only where asked for: segmenting
        # alone wants the maps, not the embedding levels.
        request.infer([x], share_outputs=True)
        return [request.get_output_tensor(k).data.copy() for k in range(len(names) if count is None else count)]

    streams = max(1, threads)
    parallel: dict[str, object] = {"shape": None, "compiled": None, "queue": None}

    def run_side_by_side(batch: np.ndarray, count: int | None = None) -> list[np.ndarray]:
        # Small inputs (fields of a batch) leave a core idle much of the time when one input
        # is split over both: one input per core ("throughput" streams) ran a 512² field in
        # 246 ms per image against 424-487 ms with both threads on one field, measured with
        # another process busy on the machine. Same network, same float32: the maps agree to
        # rounding. Each stream holds its own activations, so only small inputs come here.
        one = (1, *batch.shape[1:])
        if parallel["shape"] != one:
            parallel.update(compiled=None, queue=None)
            model = read_model()
            model.reshape(list(one))
            compiled = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams})
            parallel.update(shape=one, compiled=compiled, queue=ov.AsyncInferQueue(compiled, streams))
        queue = parallel["queue"]
        outputs = parallel["compiled"].outputs[: len(names) if count is None else count]
        out = [np.empty((len(batch), *tuple(output.get_shape())[1:]), output.get_element_type().to_dtype()) for output in outputs]

        def keep(request, index):
            for k, array in enumerate(out):
                array[index] = request.get_output_tensor(k).data[0]

        queue.set_callback(keep)
        for index in range(len(batch)):
            queue.start_async([np.ascontiguousarray(batch[index : index + 1])], index)
        queue.wait_all()
        return out

    def release() -> None:
        state.update(shape=None, static=None, dynamic=None, last=None)
        parallel.update(shape=None, compiled=None, queue=None)

    return NetworkRunner("openvino", precision, run, release, run_side_by_side if streams > 1 else None, streams, names)


def _onnxruntime(onnx: bytes, threads: int) -> NetworkRunner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    names = tuple(output.name for output in session.get_outputs())

    def run(x: np.ndarray, count: int | None = None) -> list[np.ndarray]:
        # Naming the outputs wanted: the others are not handed back (nor kept past the run).
        return session.run(list(names if count is None else names[:count]), {name: x})

    return NetworkRunner("onnxruntime", "f32", run, outputs=names)


_BUILDERS = {"openvino": _openvino, "onnxruntime": _onnxruntime}


def load_network_runner(onnx: bytes | None, runtime: str | None = None, threads: int = 1) -> NetworkRunner | None:
    """The first runtime that loads the network, in the order asked; None means "run it in torch"."""
    chosen = requested_runtime(runtime)
    if onnx is None or chosen == "torch":
        return None
    order = [chosen] if chosen != "auto" else ["openvino", "onnxruntime"]
    for name in order:
        try:
            return _BUILDERS[name](onnx, threads)
        except ImportError:
            log.info("CPU runtime %s is not installed; trying the next", name)
        except Exception as error:  # a runtime that cannot compile this network: the next one may
            log.warning(
                "CPU runtime %s could not load the network (%s); trying the next",
                name,
                str(error).splitlines()[0] if str(error) else type(error).__name__,
            )
    return None
