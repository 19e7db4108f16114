"""The batch forward as an ONNX graph (ONNX Runtime runs it about 4x faster than torch eager on CPU).

One graph per model, exported from the pinned weights: input ``x`` (N, 3, H, W) -> ``type`` logits, ``stage``
logits (if the model has a stage head) and ``pooled`` features (for the gate). Constant folding is off at export
so batch norm stays unfused and every initializer is exactly an fp16 value of the fp16 checkpoint: the file stores
them as fp16 with a Cast to fp32 (lossless, half the size; lite1 ~9 MB instead of 18 MB) and ONNX Runtime fuses
the graph at load. The file is written only when its probabilities match torch within a tolerance on the images
given (the model's test split from the CLI), and is pinned by sha256 in config.json.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import settings
from ..errors import ModelError
from .config import ModelConfig
from .config_file import install_pinned, temporary_beside

log = logging.getLogger(__name__)

ONNX_FILE = "forward.onnx"
OPSET = 17
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote (or would have): the file, its pin and the measured agreement with torch."""

    path: Path
    sha256: str
    max_prob_diff: float
    n_images: int


def output_names(cfg: ModelConfig) -> list[str]:
    """The graph's outputs, in order: the model's heads, the pooled features, and the lesion probabilities
    (N, 1, h, w) of a model with a lesion head."""
    return [*cfg.heads, "pooled", *(["lesion"] if cfg.lesion is not None else [])]


def _export_graph(cfg: ModelConfig, path: Path) -> None:
    import onnx
    import torch
    from onnx import helper, numpy_helper

    from .network import load_model

    model = load_model(cfg)
    heads = list(cfg.heads)

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features, lesion = self.net.features_and_lesion(x)
            pooled = self.net.pooled(features)
            logits = self.net.head_logits(pooled)
            return (*[logits[h] for h in heads], pooled, *(() if lesion is None else (torch.sigmoid(lesion),)))

    names = output_names(cfg)
    x = torch.zeros(2, 3, *cfg.input.size)
    torch.onnx.export(Forward().eval(), (x,), str(path), dynamo=False, opset_version=OPSET, do_constant_folding=False,
                      input_names=["x"], output_names=names, dynamic_axes={n: {0: "batch"} for n in ["x", *names]})
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    casts = []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < 16:
            continue
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            continue  # not an fp16 value: kept in fp32, so the file never changes a number
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = [*casts, *graph.node]  # a Cast node must precede its users (graph order is topological)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))




class OnnxForward:
    """An ONNX Runtime session over a verified, sha256-pinned forward; ``__call__`` returns {output: array}."""

    def __init__(self, cfg: ModelConfig, path: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        from .hashing import sha256_file

        if path is None:
            if cfg.onnx is None or cfg.folder is None:
                raise ModelError(f"Model {cfg.id} has no exported forward; run `python -m medimg_demo export-onnx "
                                 f"--model {cfg.id}`.")
            path = cfg.folder / cfg.onnx[0]
            if not path.is_file() or sha256_file(path) != cfg.onnx[1]:
                raise ModelError(f"{path.name} of {cfg.id} is missing or does not match the sha256 pinned in "
                                 f"config.json; rerun `python -m medimg_demo export-onnx --model {cfg.id}`.")
        opts = ort.SessionOptions()
        # every core unless told: inside a Ray actor the default would follow the actor's 1-CPU reservation
        opts.intra_op_num_threads = (threads or settings.whole("MEDIMG_ORT_THREADS", 0, "ONNX Runtime threads; 0: one per core")
                                     or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.names, outs))


def torch_forward(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """The same outputs from the torch model (the reference, and the fallback when no ONNX file is usable)."""
    import torch

    with torch.inference_mode():
        features, lesion = model.features_and_lesion(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        pooled = model.pooled(features)
        logits = model.head_logits(pooled)
    out = {**{k: v.float().numpy() for k, v in logits.items()}, "pooled": pooled.float().numpy()}
    if lesion is not None:
        out["lesion"] = torch.sigmoid(lesion.float()).numpy()
    return out


def _chunks(arrays: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    buf: list[np.ndarray] = []
    for a in arrays:
        buf.append(a)
        if len(buf) == size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def max_prob_diff(cfg: ModelConfig, path: Path, inputs: Iterable[np.ndarray], batch: int = 32) -> tuple[float, int]:
    """Largest |p_onnx - p_torch| over every head's calibrated probabilities, and the number of images compared."""
    from .network import load_model

    model = load_model(cfg)
    session = OnnxForward(cfg, path)
    worst, n = 0.0, 0
    for x in _chunks(inputs, batch):
        ref, got = torch_forward(model, x), session(x)
        for head in cfg.heads:
            cal = cfg.calibration(head)
            worst = max(worst, float(np.abs(cal.probs(ref[head]) - cal.probs(got[head])).max()))
        if "lesion" in ref:  # the lesion probabilities are held to the same tolerance
            worst = max(worst, float(np.abs(ref["lesion"] - got["lesion"]).max()))
        n += len(x)
    return worst, n


def split_inputs(cfg: ModelConfig, data_dir: Path, split: str = "test") -> Iterator[np.ndarray]:
    """Model inputs (3, H, W) of every image of a manifest split, preprocessed exactly as predictions are."""
    from ..imaging.decode import read_file
    from ..manifest import read_manifest, split_frame
    from .preprocess import model_pixels, to_tensor

    frame = split_frame(read_manifest(data_dir), split)
    if not len(frame):
        raise ModelError(f"The {split} split of {data_dir.name} is empty; point --data at the model's data set.")
    for rel in frame["image"]:
        study = read_file(data_dir / rel)
        yield to_tensor(model_pixels(study, cfg.input), cfg.input)[0].numpy()


def export_onnx(cfg: ModelConfig, inputs: Iterable[np.ndarray], tolerance: float = TOLERANCE) -> ExportResult:
    """Export, compare with torch on ``inputs``, and only then write ``forward.onnx`` and pin it in config.json.

    Raises ModelError (nothing written) when the probabilities differ by more than ``tolerance``.
    """
    from .hashing import sha256_file

    if cfg.folder is None:
        raise ModelError(f"Model {cfg.id} has no folder; export a model loaded from a registry.")
    final = cfg.folder / ONNX_FILE
    tmp = temporary_beside(final)  # a name of its own: two exports of one model do not take each other's file
    try:
        _export_graph(cfg, tmp)
        diff, n = max_prob_diff(cfg, tmp, inputs)
        if n == 0 or not diff <= tolerance:
            raise ModelError(f"The ONNX forward of {cfg.id} differs from torch by {diff:.3g} in probability over {n} "
                             f"images (allowed {tolerance:g}); nothing was written. The batch keeps the torch forward.")
        sha = sha256_file(tmp)
        install_pinned(cfg.folder, tmp, "onnx", {"file": ONNX_FILE, "sha256": sha, "max_prob_diff": diff,
                                                 "verified_on_images": n, "weights_sha256": cfg.weights_sha256},
                       weights_sha256=cfg.weights_sha256)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("Wrote %s (%.1f MB), max probability difference %.2g over %d images", final.name,
             final.stat().st_size / 1e6, diff, n)
    return ExportResult(final, sha, diff, n)
