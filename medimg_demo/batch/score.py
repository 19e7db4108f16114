"""Decode, gate and predict a batch of files with one batched forward per model: the rows of the batch table.

Same decisions as ``Predictor.run`` (header check, out-of-distribution refusal, abstention, stage only for an
answer), computed for up to ``batch`` images at once, through ONNX Runtime when the model's exported forward is
present, pinned and made from the current weights, else through torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MedimgError, on_the_command_line
from ..imaging.decode import read_bytes
from ..imaging.known_spacing import spacing_origin
from ..imaging.study import Study
from ..models.config import ModelConfig
from ..models.export import OnnxForward, torch_forward
from ..models.gate import (GateStats, auto_refusal, gate_rank, header_refusal, load_gate, ood_refusal,
                           score_temperature)
from ..models.preprocess import model_pixels, to_batch
from ..models.registry import AUTO, get_model, task_models
from ..explain.lesion import mask_from_probs, measure
from ..tasks import get_task
from .quarantine import DecodeMarks

log = logging.getLogger(__name__)

#: The Parquet columns, in order. No DICOM attribute but the modality; ``path`` is the user's own file name.
COLUMNS = ("path", "file_key", "size_bytes", "image_sha256", "status", "reason", "model_id", "weights_sha256",
           "scored_with", "forward", "type_label", "type_probs", "stage_label", "stage_probs", "ood_score", "ood_threshold",
           "ood_method", "modality", "frame_index", "lesion_longest_diameter_px", "lesion_longest_diameter_mm",
           "lesion_area_px", "size_category", "pixel_spacing_source")


@dataclass
class _Runner:
    """One model: its forward (ONNX Runtime or torch) and its gate statistics."""

    cfg: ModelConfig
    forward: Any
    kind: str
    gate: GateStats | None

    @classmethod
    def load(cls, cfg: ModelConfig, prefer_onnx: bool = True, threads: int | None = None) -> "_Runner":
        gate = load_gate(cfg)
        made_from = (cfg.raw.get("onnx") or {}).get("weights_sha256")
        if prefer_onnx and cfg.onnx is not None and made_from == cfg.weights_sha256:
            try:
                return cls(cfg, OnnxForward(cfg, threads=threads), "onnx", gate)
            except MedimgError as exc:
                log.warning("%s; using the torch forward", exc)
        elif prefer_onnx and cfg.onnx is not None:
            log.warning("forward.onnx of %s was exported from other weights; using torch. Rerun export-onnx.", cfg.id)
        from ..models.network import load_model

        model = load_model(cfg)
        return cls(cfg, lambda x: torch_forward(model, x), "torch", gate)

    def outputs(self, studies: list[Study], batch: int) -> dict[str, np.ndarray]:
        x = to_batch([model_pixels(s, self.cfg.input) for s in studies], self.cfg.input)
        parts = [self.forward(x[i:i + batch]) for i in range(0, len(x), batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


#: What a row's answer depends on besides the file: for each model, its weights and these parts of its config.
_STATE_KEYS = ("heads", "input", "temperature", "bias", "gate", "lesion")
#: Read failures (permissions, a storage error) are retried by the next run; decode errors are the file's own.
UNREADABLE = "unreadable"


def scorer_state(cfgs: list[ModelConfig]) -> str:
    """A short digest of everything the rows depend on besides the files: each model's id, weights and calibration,
    gate and lesion settings. A recalibration, a new gate or new weights change it, so a resumed run scores again
    the rows written before (``scored_with``) instead of mixing probabilities of two calibrations in one table."""
    state = [{"id": c.id, "weights_sha256": c.weights_sha256, **{k: c.raw.get(k) for k in _STATE_KEYS},
              **_gate_state(c)} for c in sorted(cfgs, key=lambda c: c.id)]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _gate_state(cfg: ModelConfig) -> dict[str, Any]:
    """The gate block without its record of the calibration it was fitted under (which changes no answer), and the
    temperature its scores use only where it is not the calibration's own, as it always was before the pin held it:
    recording that pin alone does not make every table be scored again."""
    if cfg.raw.get("gate") is None:
        return {"gate": None}
    gate = {k: v for k, v in cfg.raw["gate"].items() if k not in ("fitted_under", "score_temperature")}
    temperature = score_temperature(cfg)
    return {"gate": gate, **({"gate_score_temperature": temperature} if temperature != cfg.gate_temperature else {})}


def _json(d: dict[str, float] | None) -> str | None:
    return None if d is None else json.dumps({k: round(float(v), 6) for k, v in d.items()})


def scored_models(model: str | None, registry: Path | None = None) -> list[ModelConfig]:
    """The configs a run with ``--model`` uses: every task's default model for ``auto``, else the one named."""
    return task_models() if model == AUTO else [get_model(model, registry)]


class BatchScorer:
    """Loads the model(s) once (per process or Ray actor) and turns (file bytes) into table rows."""

    def __init__(self, model: str | None, prefer_onnx: bool = True, batch: int = 32,
                 registry: Path | None = None, threads: int | None = None) -> None:
        cfgs = scored_models(model, registry)
        self.auto = model == AUTO
        self.batch = batch
        self.state = scorer_state(cfgs)
        self.runners = [_Runner.load(c, prefer_onnx, threads) for c in cfgs]

    @property
    def configs(self) -> dict[str, ModelConfig]:
        """Model id -> config of every model this scorer runs."""
        return {r.cfg.id: r.cfg for r in self.runners}

    @property
    def forwards(self) -> dict[str, str]:
        """Model id -> "onnx" or "torch": which forward each model runs."""
        return {r.cfg.id: r.kind for r in self.runners}

    def score(self, blobs: Sequence[bytes | None | Callable[[], bytes | None]], base: list[dict[str, Any]],
              marks: DecodeMarks | None = None) -> tuple[list[dict[str, Any]], list[Study | None]]:
        """One row per blob (``base`` holds its path, key and size), and the decoded studies (None on error).

        A blob is the file's bytes, or a function that reads them when their turn comes (one raw file in memory at a
        time; a refusal it raises, such as a file over the size limit, is an 'error' row). None is a file that could
        not be read: an 'unreadable' row. With ``marks``, each file is read and decoded under its mark, and a file
        that stopped the process too often is an 'error' row, not decoded again (:mod:`.quarantine`)."""
        studies: list[Study | None] = [None] * len(base)
        rows = [{c: None for c in COLUMNS} | b | {"scored_with": self.state} for b in base]
        tries = [0 if marks is None else marks.stops(b["file_key"]) for b in base]
        # files that stopped a process before go first, while no other image of the batch is held: a process that ran
        # out of memory for the whole batch is not blamed again on the file it happened to be decoding
        for i in sorted(range(len(base)), key=lambda i: tries[i] == 0):
            if marks is None:
                studies[i] = self._read(blobs[i], rows[i])
            elif (stopped := marks.stopped(rows[i]["file_key"])) is not None:
                rows[i].update(status="error", reason=stopped)
            else:
                with marks.decoding(rows[i]["file_key"]):
                    studies[i] = self._read(blobs[i], rows[i])
        ok = [i for i, s in enumerate(studies) if s is not None]
        # per model: (index -> header refusal) and the forward outputs of the images its header check lets through
        results = []
        for r in self.runners:
            refused = {i: header_refusal(studies[i].modality, studies[i].body_part, r.cfg.task) for i in ok}
            keep = [i for i in ok if refused[i] is None]
            out = r.outputs([studies[i] for i in keep], self.batch) if keep else {}
            score = r.gate.score(out["pooled"], out["type"]) if keep and r.gate is not None else None
            results.append((r, refused, {i: j for j, i in enumerate(keep)}, out, score))
        for i in ok:
            study, row = studies[i], rows[i]
            row.update(image_sha256=study.sha256, modality=study.modality, frame_index=study.frame_index,
                       pixel_spacing_source=spacing_origin(study.pixel_spacing_mm, study.spacing_source))  # as predict
            pick = self._choose(results, i)
            if pick is None:  # auto: every header check ruled it out
                row.update(status="refused", model_id=None, reason=auto_refusal())
                continue
            self._decide(row, *pick, i)
            if self.auto and row["status"] == "refused":  # as predict: the nearest model and its score
                title = get_task(pick[0].cfg.task).title
                row["reason"] = auto_refusal(title, row["ood_score"], row["ood_threshold"])
            self._lesion(row, pick, i, study)
        return rows, studies

    @staticmethod
    def _read(blob: bytes | None | Callable[[], bytes | None], row: dict[str, Any]) -> Study | None:
        """The file's decoded image, or None with the row's status and reason set (the raw bytes are not kept)."""
        try:
            data = blob() if callable(blob) else blob
            if data is None:
                row.update(status=UNREADABLE, reason="The file could not be read (permissions or a storage error); "
                           "make it readable and run again: the next run retries it.")
                return None
            return read_bytes(data)
        except MedimgError as exc:
            row.update(status="error", reason=on_the_command_line(str(exc)))
            return None

    @staticmethod
    def _lesion(row: dict[str, Any], pick: tuple[Any, ...], i: int, study: Study) -> None:
        """The lesion head's measurements of a tumor call (largest component, native pixels) and the size category."""
        r, _, where, out, _ = pick
        spec = get_task(r.cfg.task)
        if row["status"] != "ok" or "lesion" not in out or r.cfg.lesion is None or row["type_label"] == spec.normal_label:
            return
        mask = mask_from_probs(out["lesion"][where[i], 0], (study.height, study.width), r.cfg.lesion.threshold)
        m = measure(mask, study.pixel_spacing_mm)
        if m is None:
            return
        row.update(lesion_longest_diameter_px=round(m.longest_diameter_px, 1), lesion_area_px=m.area_px,
                   lesion_longest_diameter_mm=None if m.longest_diameter_mm is None else round(m.longest_diameter_mm, 1))
        if spec.size_rule is not None and m.longest_diameter_mm is not None:
            row["size_category"] = spec.size_rule.category(m.longest_diameter_mm)

    def _choose(self, results: list[Any], i: int) -> tuple[Any, ...] | None:
        if not self.auto:
            return results[0]
        best = None
        for res in results:
            r, refused, where, _, score = res
            if refused[i] is not None or score is None or r.cfg.gate is None:
                continue
            rank = gate_rank(float(score[where[i]]), r.cfg.gate.threshold)
            if best is None or rank < best[0]:  # the nearest: with auto, a refusal names it and its score
                best = (rank, res)
        return None if best is None else best[1]

    @staticmethod
    def _decide(row: dict[str, Any], r: _Runner, refused: dict[int, str | None], where: dict[int, int],
                out: dict[str, np.ndarray], score: np.ndarray | None, i: int) -> None:
        cfg = r.cfg
        row.update(model_id=cfg.id, weights_sha256=cfg.weights_sha256, forward=r.kind)
        if refused[i] is not None:
            row.update(status="refused", reason=refused[i])
            return
        j = where[i]
        if score is not None and cfg.gate is not None:
            row.update(ood_score=float(score[j]), ood_threshold=cfg.gate.threshold, ood_method=cfg.gate.method)
            if not score[j] <= cfg.gate.threshold:
                row.update(status="refused", reason=ood_refusal(get_task(cfg.task).title, float(score[j]),
                                                                cfg.gate.threshold))
                return
        p = cfg.calibration("type").probs(out["type"][j:j + 1])[0]
        probs = dict(zip(cfg.type_labels, p.tolist()))
        label = max(probs, key=probs.__getitem__)
        row.update(type_probs=_json(probs), status="ok")
        if cfg.gate is not None and probs[label] < cfg.gate.abstain_below:
            # no type named, as predict's JSON names none ("type": null): a filter on type_label counted it as a call
            row.update(status="indeterminate", reason=f"Top probability {probs[label]:.0%} below the "
                       f"{cfg.gate.abstain_below:.0%} this model needs to give an answer.")
            return
        row["type_label"] = label
        if cfg.stage_labels and "stage" in out:
            sp = cfg.calibration("stage").probs(out["stage"][j:j + 1])[0]
            stage = dict(zip(cfg.stage_labels, sp.tolist()))
            row.update(stage_label=max(stage, key=stage.__getitem__), stage_probs=_json(stage))
