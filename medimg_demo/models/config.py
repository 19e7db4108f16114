"""A model's ``config.json`` as one typed, validated dataclass, in the spirit of timm's ``PretrainedCfg`` and a
MONAI bundle's ``metadata.json``: the input contract, the outputs, the weights pin, calibration, intended use and
data source. Errors name the field and what it must be."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from .calibration import Calibration
from ..tasks import get_task

#: Grad-CAM target when a config names none: the output of ``forward_features`` (any timm backbone).
DEFAULT_TARGET_LAYER = "features"
INTENDED_USE = "Research and teaching demos only; not a medical device; not for diagnosis or treatment decisions."


@dataclass(frozen=True)
class InputConfig:
    """Everything preprocessing needs; nothing is hard-coded elsewhere."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    #: Window (centre, width) per DICOM modality that the model sees, whatever the display shows; a modality
    #: not listed is shown to the model with the file's own window.
    dicom_windows: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class GateConfig:
    """The fitted gate: statistics file (pinned), scoring method, refusal and abstention thresholds."""

    method: str
    threshold: float  # OOD score above this: refused
    abstain_below: float  # calibrated top probability below this: indeterminate
    file: str = "gate.safetensors"
    sha256: str | None = None
    k: int = 10


#: The lesion head's decoder width unless a model's config (or ``train --lesion-channels``) says otherwise.
DEFAULT_LESION_CHANNELS = 48


@dataclass(frozen=True)
class LesionConfig:
    """The lesion head: tapped backbone blocks, decoder width, and the probability above which a pixel is lesion."""

    taps: tuple[int, ...]
    channels: int = DEFAULT_LESION_CHANNELS
    threshold: float = 0.5


@dataclass(frozen=True)
class ModelConfig:
    """One model folder's contract. ``raw`` keeps the whole JSON (training record, card notes) for the card."""

    id: str
    task: str
    arch: str
    heads: dict[str, list[str]]
    input: InputConfig
    target_layer: str = DEFAULT_TARGET_LAYER
    weights_file: str = "weights.safetensors"
    weights_sha256: str | None = None
    temperature: dict[str, float] = field(default_factory=dict)
    #: Per-class offsets added after the temperature (BCTS); absent for plain temperature scaling.
    bias: dict[str, tuple[float, ...]] = field(default_factory=dict)
    default: bool = False
    task_title: str = ""
    intended_use: str = INTENDED_USE
    data_source: str = ""
    gate: GateConfig | None = None
    lesion: LesionConfig | None = None
    onnx: tuple[str, str] | None = None  # (file, sha256) of the exported batch forward (medimg_demo.models.export)
    folder: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def type_labels(self) -> list[str]:
        return self.heads["type"]

    @property
    def stage_labels(self) -> list[str] | None:
        return self.heads.get("stage")

    def calibration(self, head: str = "type") -> Calibration:
        """How ``head``'s logits become the probabilities the app shows (temperature, optional per-class bias)."""
        return Calibration(self.temperature.get(head, 1.0), self.bias.get(head))

    @property
    def trained_on_val(self) -> bool:
        """Whether ``val`` was in this model's training pool (``--train-on-val``): its val figures are in-sample."""
        return bool((self.raw.get("training") or {}).get("train_on_val"))

    def refuse_in_sample_val(self, what: str, instead: str) -> None:
        """Refuse to use ``val`` for ``what`` (scoring, calibrating, fitting a threshold) where the model trained on
        it; ``instead`` says what to do."""
        if self.trained_on_val:
            raise ModelError(f"{self.id} was trained on val (--train-on-val): {what} on val would be in-sample; "
                             f"{instead}.")

    @property
    def gate_temperature(self) -> float:
        """The temperature of the gate's logit scores (energy, MSP): the type head's, or under BCTS the temperature
        fitted without a bias (BCTS's own temperature belongs with its bias, which those scores do not use)."""
        cal = self.raw.get("calibration") or {}
        if self.bias.get("type") is not None and cal.get("method") == "bcts" and cal.get("temperature_only"):
            return float(cal["temperature_only"])
        return self.temperature.get("type", 1.0)

    @property
    def weights_path(self) -> Path:
        if self.folder is None:
            raise ModelError(f"Model {self.id} has no folder; it was not loaded from the registry.")
        return self.folder / self.weights_file

    @classmethod
    def from_dict(cls, d: dict[str, Any], folder: Path | None = None) -> "ModelConfig":
        """Validate and build; a :class:`ConfigError` names the first field that is wrong."""
        where = f"Model config {d.get('id', '?')!r}" + (f" in {folder.name}/config.json" if folder else "")
        v = _Validator(where)
        if not isinstance(d, dict):
            raise ConfigError(f"{where} must be a JSON object.")
        model_id = v.string(d, "id")
        task = v.string(d, "task")
        heads_raw = v.get(d, "heads", dict)
        heads: dict[str, list[str]] = {}
        for name, labels in heads_raw.items():
            if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
                raise ConfigError(f"{where}: field 'heads.{name}' must be a list of distinct label strings.")
            heads[str(name)] = list(labels)
        if len(heads.get("type", [])) < 2:
            raise ConfigError(f"{where}: field 'heads.type' needs at least two labels.")
        inp = v.get(d, "input", dict)
        size = v.numbers(inp, "size", 2, "input.")
        mean = v.numbers(inp, "mean", 3, "input.")
        std = v.numbers(inp, "std", 3, "input.")
        if any(s < 8 or s != int(s) for s in size):
            raise ConfigError(f"{where}: field 'input.size' must be two whole numbers of at least 8 pixels.")
        if any(s <= 0 for s in std):
            raise ConfigError(f"{where}: field 'input.std' must be positive.")
        interpolation = str(inp.get("interpolation", "bilinear"))
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(f"{where}: field 'input.interpolation' must be bilinear, bicubic or nearest.")
        windows: dict[str, tuple[float, float]] = {}
        for mod, win in v.get(inp, "dicom_windows", dict, "input.", default={}).items():
            pair = v.numbers({"w": win}, "w", 2, f"input.dicom_windows.{mod}")
            if pair[1] <= 0:
                raise ConfigError(f"{where}: field 'input.dicom_windows.{mod}' needs a positive width.")
            windows[str(mod)] = (pair[0], pair[1])
        weights = v.get(d, "weights", dict, default={})
        sha = weights.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise ConfigError(f"{where}: field 'weights.sha256' must be 64 lowercase hex digits.")
        wfile = str(weights.get("file", "weights.safetensors"))
        if "/" in wfile or "\\" in wfile or not wfile.endswith(".safetensors"):
            raise ConfigError(f"{where}: field 'weights.file' must be a .safetensors file name inside the model folder.")
        temperature = {}
        for head, t in v.get(d, "temperature", dict, default={}).items():
            if not isinstance(t, (int, float)) or not t > 0:
                raise ConfigError(f"{where}: field 'temperature.{head}' must be a positive number.")
            temperature[str(head)] = float(t)
        bias: dict[str, tuple[float, ...]] = {}
        for head, b in v.get(d, "bias", dict, default={}).items():
            n = len(heads.get(str(head), []))
            if (not isinstance(b, list) or len(b) != n or n == 0
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x) for x in b)):
                raise ConfigError(f"{where}: field 'bias.{head}' must list one finite number per label of the "
                                  f"head {head!r} ({n} labels)" + ("" if n else "; the model has no such head") + ".")
            bias[str(head)] = tuple(float(x) for x in b)
        gate = _gate(d.get("gate"), where)
        spec = get_task(task)
        return cls(
            id=model_id,
            task=task,
            arch=v.string(d, "arch"),
            heads=heads,
            input=InputConfig(
                size=(int(size[0]), int(size[1])),
                mean=(mean[0], mean[1], mean[2]),
                std=(std[0], std[1], std[2]),
                interpolation=interpolation,
                dicom_windows=windows,
            ),
            target_layer=str(d.get("target_layer") or DEFAULT_TARGET_LAYER),
            weights_file=wfile,
            weights_sha256=sha,
            temperature=temperature,
            bias=bias,
            default=bool(d.get("default", False)),
            task_title=str(d.get("task_title") or spec.title),
            intended_use=str(d.get("intended_use") or INTENDED_USE),
            data_source=str(d.get("data_source") or spec.caveats),
            gate=gate,
            lesion=_lesion(d.get("lesion"), where),
            onnx=_onnx(d.get("onnx"), where),
            folder=folder,
            raw=d,
        )


def _finite(x: float) -> bool:
    """A finite number that fits a float (a huge JSON integer does not: float() would overflow)."""
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _gate(d: Any, where: str) -> GateConfig | None:
    """The optional ``gate`` block (absent on models whose gate was never fitted)."""
    from .gate import METHODS

    if d is None:
        return None
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: field 'gate' must be an object.")
    method = d.get("method")
    if method not in METHODS:
        raise ConfigError(f"{where}: field 'gate.method' must be one of {', '.join(METHODS)}.")
    for key in ("threshold", "abstain_below"):
        value = d.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"{where}: field 'gate.{key}' must be a finite number.")
    if not 0.0 <= float(d["abstain_below"]) <= 1.0:
        raise ConfigError(f"{where}: field 'gate.abstain_below' must be a probability between 0 and 1.")
    file = str(d.get("file", "gate.safetensors"))
    if "/" in file or "\\" in file or not file.endswith(".safetensors"):
        raise ConfigError(f"{where}: field 'gate.file' must be a .safetensors file name inside the model folder.")
    sha = d.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ConfigError(f"{where}: field 'gate.sha256' must be 64 hex digits.")
    return GateConfig(method=str(method), threshold=float(d["threshold"]), abstain_below=float(d["abstain_below"]),
                      file=file, sha256=sha, k=int(d.get("k", 10)))


def _lesion(d: Any, where: str) -> LesionConfig | None:
    """The optional ``lesion`` block {"taps", "channels", "threshold"} of a model with a lesion head."""
    if d is None:
        return None
    taps = d.get("taps") if isinstance(d, dict) else None
    if not isinstance(taps, list) or not taps or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in taps):
        raise ConfigError(f"{where}: field 'lesion.taps' must be a list of block indices (whole numbers >= 0).")
    channels = d.get("channels", DEFAULT_LESION_CHANNELS)
    threshold = d.get("threshold", 0.5)
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 1024:
        raise ConfigError(f"{where}: field 'lesion.channels' must be a whole number between 1 and 1024.")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"{where}: field 'lesion.threshold' must be a probability strictly between 0 and 1.")
    return LesionConfig(taps=tuple(taps), channels=channels, threshold=float(threshold))


def _onnx(d: Any, where: str) -> tuple[str, str] | None:
    """The optional ``onnx`` block {"file", "sha256"}: the exported forward, used only when its sha256 matches."""
    if d is None:
        return None
    file, sha = (d.get("file"), d.get("sha256")) if isinstance(d, dict) else (None, None)
    if not isinstance(file, str) or "/" in file or "\\" in file or not file.endswith(".onnx"):
        raise ConfigError(f"{where}: field 'onnx.file' must be an .onnx file name inside the model folder.")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ConfigError(f"{where}: field 'onnx.sha256' must be 64 lowercase hex digits.")
    return file, sha


class _Validator:
    """Small typed getters that raise a ConfigError naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def get(self, d: dict[str, Any], key: str, kind: type, prefix: str = "", default: Any = None) -> Any:
        if key not in d:
            if default is not None:
                return default
            raise ConfigError(f"{self.where}: field '{prefix}{key}' is missing.")
        value = d[key]
        if not isinstance(value, kind):
            raise ConfigError(f"{self.where}: field '{prefix}{key}' must be a {kind.__name__}, not {type(value).__name__}.")
        return value

    def string(self, d: dict[str, Any], key: str) -> str:
        value = self.get(d, key, str)
        if not value.strip():
            raise ConfigError(f"{self.where}: field '{key}' is empty.")
        return value

    def numbers(self, d: dict[str, Any], key: str, n: int, prefix: str = "") -> list[float]:
        value = d.get(key)
        name = prefix if prefix and not prefix.endswith(".") else f"{prefix}{key}"
        if (not isinstance(value, (list, tuple)) or len(value) != n
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
            raise ConfigError(f"{self.where}: field '{name}' must be a list of {n} numbers.")
        return [float(x) for x in value]
