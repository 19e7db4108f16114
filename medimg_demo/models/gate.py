"""The gate: how far an image lies from a model's training data (out-of-distribution score) and how sure a
calibrated answer must be to be given (abstention).

Scores are "higher = further from the training data". Feature-space scores beat softmax-based ones on medical
data (OpenMIBOOD, CVPR 2025), so four are offered and compared on ``val`` by ``python -m medimg_demo gate``:

- ``mahalanobis``: the smallest class-conditional Mahalanobis distance of the L2-normalised pooled features under
  one shared covariance (Lee et al., 2018), estimated with scikit-learn's Ledoit-Wolf shrinkage;
- ``knn``: one minus the cosine similarity to the k-th nearest training feature (Sun et al., 2022);
- ``energy``: minus the log-sum-exp of the type logits (Liu et al., 2020);
- ``msp``: one minus the largest calibrated probability (the softmax baseline).

The fitted statistics live beside the weights in ``gate.safetensors``, pinned by sha256 in config.json. The pin
also records the calibration the thresholds were chosen under (``fitted_under``): the energy and MSP scores keep
that temperature, and a model recalibrated since (``calibrate --write``) says its abstention threshold is stale.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:
    from .config import ModelConfig

log = logging.getLogger(__name__)

_BLAS_LIMITED = False


def _single_threaded_blas() -> None:
    """Keep NumPy's BLAS (OpenBLAS) on one thread in this process, once. Its idle threads spin after each matrix
    product, and on a 2-core machine they starved the torch (or ONNX Runtime) forward that follows: a prediction
    took 94-114 ms instead of 39 ms (benchmarks/predict_latency.py). The gate's products are small (one image, or a
    batch of 32, against a C x C precision matrix), so one thread loses nothing."""
    global _BLAS_LIMITED
    if not _BLAS_LIMITED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        _BLAS_LIMITED = True

METHODS = ("mahalanobis", "knn", "energy", "msp")


def _normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


@dataclass(frozen=True)
class GateStats:
    """What one scoring method needs: class means and a precision matrix, or a bank of training features."""

    method: str
    means: np.ndarray | None = None  # (n_classes, C), normalised feature space
    precision: np.ndarray | None = None  # (C, C)
    bank: np.ndarray | None = None  # (N, C) normalised training features
    k: int = 10
    temperature: float = 1.0

    def score(self, pooled: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """OOD scores of a batch: pooled features (N, C) and type logits (N, K) -> (N,), higher = further out.

        A score that is not finite (overflowing features or logits) is +inf: such an image is always refused.
        """
        _single_threaded_blas()
        s = self._score(pooled, logits)
        return np.where(np.isfinite(s), s, np.inf)

    def _score(self, pooled: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self.method == "mahalanobis":
            if self.means is None or self.precision is None:
                raise ModelError("The Mahalanobis gate has no statistics; fit it with `python -m medimg_demo gate`.")
            # (f - m)' P (f - m) = f'Pf - 2 f'Pm + m'Pm for every class mean m: one matrix product per batch
            f = _normalise(pooled)
            pm = self.means @ self.precision  # (K, C); P is symmetric
            dist = (np.einsum("nc,nc->n", f @ self.precision, f)[:, None] - 2.0 * f @ pm.T
                    + np.einsum("kc,kc->k", pm, self.means)[None, :])
            return dist.min(axis=1)
        if self.method == "knn":
            if self.bank is None:
                raise ModelError("The kNN gate has no feature bank; fit it with `python -m medimg_demo gate`.")
            sims = _normalise(pooled) @ self.bank.T  # (N, M)
            k = min(self.k, sims.shape[1])
            kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
            return 1.0 - kth
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        if self.method == "energy":
            return -_logsumexp(z)
        if self.method == "msp":
            p = np.exp(z - _logsumexp(z)[:, None])
            return 1.0 - p.max(axis=1)
        raise ModelError(f"Unknown gate method {self.method!r}; use one of {', '.join(METHODS)}.")

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays as stored: the precision matrix (divided by its largest magnitude, kept as
        ``precision_scale``) and the feature bank in float16 (half the size; fp16 would overflow unscaled), the
        class means in float32."""
        out: dict[str, np.ndarray] = {}
        if self.means is not None:
            out["means"] = np.ascontiguousarray(self.means, dtype=np.float32)
        if self.precision is not None:
            scale = float(np.abs(self.precision).max()) or 1.0
            out["precision"] = np.ascontiguousarray(self.precision / scale, dtype=np.float16)
            out["precision_scale"] = np.array([scale], dtype=np.float32)
        if self.bank is not None:
            out["bank"] = np.ascontiguousarray(self.bank, dtype=np.float16)
        return out

    def as_stored(self) -> "GateStats":
        """The statistics exactly as they will be read back, so thresholds are chosen on what is served."""
        return from_arrays(self.tensors(), self.method, self.k, self.temperature)


def from_arrays(arrays: dict[str, np.ndarray], method: str, k: int, temperature: float) -> GateStats:
    """Statistics from stored arrays (see :meth:`GateStats.tensors`)."""
    get = lambda name: arrays[name].astype(np.float64) if name in arrays else None  # noqa: E731
    precision = get("precision")
    if precision is not None and "precision_scale" in arrays:
        precision = precision * float(arrays["precision_scale"][0])
    return GateStats(method=method, means=get("means"), precision=precision, bank=get("bank"), k=k,
                     temperature=temperature)


def fit_stats(method: str, features: np.ndarray, labels: np.ndarray, k: int = 10, temperature: float = 1.0) -> GateStats:
    """Fit one method's statistics on training features (N, C) with their class indices (N,)."""
    if method == "mahalanobis":
        from sklearn.covariance import LedoitWolf

        f = _normalise(features)
        classes = np.unique(labels)
        means = np.stack([f[labels == c].mean(axis=0) for c in classes])
        centred = f - means[np.searchsorted(classes, labels)]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        return GateStats(method=method, means=means, precision=precision, temperature=temperature)
    if method == "knn":
        return GateStats(method=method, bank=_normalise(features), k=k, temperature=temperature)
    if method in ("energy", "msp"):
        return GateStats(method=method, temperature=temperature)
    raise ModelError(f"Unknown gate method {method!r}; use one of {', '.join(METHODS)}.")


def save_stats(stats: GateStats, path: Path) -> str:
    """Write the statistics as safetensors; returns the file's sha256."""
    import torch
    from safetensors.torch import save_file

    from .hashing import sha256_file

    tensors = {k: torch.from_numpy(v) for k, v in stats.tensors().items()}
    if not tensors:
        tensors = {"none": torch.zeros(1)}  # logit-based methods keep no statistics; the file still pins the choice
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"method": stats.method, "k": str(stats.k)})
    return sha256_file(path)


def load_stats(path: Path, expected_sha256: str | None, method: str, k: int, temperature: float) -> GateStats:
    """Read pinned statistics (never unpickles)."""
    from safetensors.numpy import load_file

    from .hashing import sha256_file

    if not path.is_file():
        raise ModelError(f"Gate statistics {path.name} are missing; restore them from git or run `python -m medimg_demo gate`.")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise ModelError(f"Gate statistics {path.name} do not match the sha256 pinned in config.json; restore the file.")
    return from_arrays(load_file(str(path)), method, k, temperature)


def calibration_state(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the gate's thresholds depend on in a config.json record: the type head's temperature and bias (the
    abstention threshold reads calibrated probabilities) and BCTS's temperature without a bias (the logit scores)."""
    cal = record.get("calibration") or {}
    return {"temperature": (record.get("temperature") or {}).get("type"),
            "bias": (record.get("bias") or {}).get("type"),
            "temperature_only": cal.get("temperature_only") if cal.get("method") == "bcts" else None}


def stale_reason(cfg: ModelConfig) -> str | None:
    """Why the gate's thresholds no longer fit the model's calibration, or None (also for pins older than
    ``fitted_under``, which cannot tell)."""
    under = (cfg.raw.get("gate") or {}).get("fitted_under")
    if cfg.gate is None or under is None or under == calibration_state(cfg.raw):
        return None
    return (f"The gate of {cfg.id} was fitted under another calibration (calibrate --write ran after it), so its "
            f"abstention threshold reads the old probabilities; refit it: python -m medimg_demo gate --model {cfg.id}")


def load_gate(cfg: ModelConfig) -> GateStats | None:
    """The pinned gate statistics of ``cfg`` (None if it has none), scoring at the temperature its threshold was
    chosen under; logs a warning when the model was recalibrated since."""
    if cfg.gate is None:
        return None
    g = cfg.gate
    temperature = score_temperature(cfg)
    stale = stale_reason(cfg)
    if stale:
        log.warning("%s", stale)
    return load_stats(cfg.weights_path.parent / g.file, g.sha256, g.method, g.k, temperature)


def score_temperature(cfg: ModelConfig) -> float:
    """The temperature of the gate's logit scores: the one pinned at the fit, else (older pins) the calibration's."""
    temperature = (cfg.raw.get("gate") or {}).get("score_temperature", cfg.gate_temperature)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ModelError(f"{cfg.id}: gate.score_temperature in config.json must be a positive number; refit the gate "
                         f"(python -m medimg_demo gate --model {cfg.id}).")
    return float(temperature)


def known_body_parts() -> set[str]:
    """Every Body Part Examined value some task reads."""
    from ..tasks import TASKS

    return {part for spec in TASKS.values() for part in spec.body_parts}


def _mid_sentence(title: str) -> str:
    """A task's title inside a sentence: "Breast ultrasound" reads "breast ultrasound", "MRI" stays "MRI"."""
    return title if title[1:2].isupper() else title[:1].lower() + title[1:]


def ood_refusal(title: str, score: float, threshold: float) -> str:
    """Why an image the gate refuses gets no answer, for the page, the report, the JSON and batch rows alike: how far
    its score lies past the most the model accepts, as a ratio where both are positive (Mahalanobis, kNN), which
    a reader takes in more easily than "2.84e+04 above 5.62e+03"."""
    if score > 0 and threshold > 0:
        ratio = score / threshold
        past = "just above" if ratio < 1.05 else f"{ratio:.1f} times"
        how = f" is {past} the most the model accepts ({score:.3g}; refused above {threshold:.3g})"
    else:
        how = f", {score:.3g}, is above the most the model accepts, {threshold:.3g}"
    return (f"This image is not similar enough to the {_mid_sentence(title)} images this model was trained on: its "
            f"out-of-distribution score{how}. No answer is given.")


def gate_rank(score: float, threshold: float) -> tuple[bool, float]:
    """How well a gate takes an image, for ``auto`` to pick the best (lowest) of several models: an accepting gate
    before a refusing one, then the lower score / threshold; a score that is not a number, or a threshold at or
    below 0 (energy scores), gives no ratio and ranks last within its group."""
    ratio = score / threshold if threshold > 0 else math.inf
    return (not score <= threshold, ratio if math.isfinite(ratio) else math.inf)


def auto_refusal(title: str | None = None, score: float | None = None, threshold: float | None = None) -> str:
    """Why ``auto`` gives no answer: no bundled model's gate accepts the image. With the nearest model's ``title``
    and its gate's ``score`` and ``threshold``: how far the image lies from that model's training data."""
    none = ("None of the bundled models was trained on images like this one (lung CT, breast ultrasound, brain MRI); "
            "no answer is given.")
    if title is None or score is None or threshold is None:
        return none
    if score > 0 and threshold > 0:
        past = "just above" if score / threshold < 1.05 else f"{score / threshold:.1f} times"
        how = f"{past} the most that model accepts"
    else:
        how = f"{score:.3g}, above the most that model accepts, {threshold:.3g}"
    return f"{none} The nearest is the {_mid_sentence(title)} model: its out-of-distribution score is {how}."


def header_refusal(modality: str | None, body_part: str | None, task: str) -> str | None:
    """Why a DICOM header rules the image out for ``task`` ("Modality NM; this model reads CT"), or None."""
    from ..tasks import get_task

    spec = get_task(task)
    if modality and spec.modalities and modality.upper() not in spec.modalities:
        return (f"Modality {modality.upper()}; this model reads {' or '.join(spec.modalities)} "
                f"({spec.title}). Choose a model for this kind of image, or Auto.")
    if body_part and spec.body_parts and body_part.upper() not in spec.body_parts:
        # quoted only when it is a body part some task reads: any other word could be a name typed into the header
        shown = f"Body part {body_part.upper()}" if body_part.upper() in known_body_parts() else (
            "The DICOM header's Body Part Examined is not one this model reads")
        return (f"{shown}; this model reads {spec.title} images "
                f"({', '.join(spec.body_parts[:3])}). Choose a model for this body part, or Auto.")
    return None
