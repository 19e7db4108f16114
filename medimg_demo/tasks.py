"""Every fact about a task in one place: labels and their names, modalities, window, augmentation, stage rule,
data caveats, targets and lesion annotations. Other modules ask :func:`get_task`; nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The app-wide default is the default model of the first task here that has one (override: MEDIMG_DEFAULT_MODEL).
TASK_ORDER = ("lung_ct", "breast_us", "brain_mri")


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentation parameters that respect the modality: no flips where left/right anatomy matters (CT chest).

    Applied by ``learn.augment``; kept here so that a task's augmentation is read where its other facts are.
    """

    hflip: bool = False
    degrees: float = 10.0
    translate: float = 0.06
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.2
    #: Against source artefacts (a shortcut where classes come from different sources): each with probability 1/3,
    #: a Gaussian blur of up to ``blur`` px, a resample through ``resample`` (0.5: half the resolution) of the size,
    #: Gaussian noise of up to ``noise`` (on 0-1 grey). 0 turns one off (and draws nothing from the generator).
    blur: float = 0.0
    resample: float = 0.0
    noise: float = 0.0
    #: Burned-in marks (teaching-file arrows, lines and frames, where one source's images carry them): with this
    #: probability 1-3 lines or arrows are drawn, and with half of it a frame; 0: off.
    marks: float = 0.0
    #: Against framing shortcuts (one source crops tighter or shows a grey background): with this probability the
    #: body is cropped to its box and put back with a random margin on a random background grey; 0: off.
    reframe: float = 0.0


@dataclass(frozen=True)
class SizeRule:
    """A guideline's size category from the lesion's longest diameter: ``cuts`` = ((upper bound in mm, inclusive,
    category), ...) in increasing order; above the last bound: ``above``."""

    name: str
    cuts: tuple[tuple[float, str], ...]
    above: str
    note: str

    def category(self, longest_mm: float) -> str:
        for bound, label in self.cuts:
            if longest_mm <= bound:
                return label
        return self.above

    def to_json(self, longest_mm: float) -> dict[str, object]:
        return {"label": self.category(longest_mm), "longest_diameter_mm": round(longest_mm, 1), "rule": self.name,
                "note": self.note}


#: AJCC Cancer Staging Manual, 8th edition, breast: T1 <= 20 mm, T2 > 20-50 mm, T3 > 50 mm (T4 is defined by chest
#: wall or skin involvement, which one image cannot show).
BREAST_T_BY_SIZE = SizeRule(
    name="AJCC 8th edition breast T category by greatest dimension: T1 <= 20 mm, T2 > 20-50 mm, T3 > 50 mm",
    cuts=((20.0, "T1"), (50.0, "T2")),
    above="T3",
    note=("Imaging size estimate from the model's lesion outline on one image, not a clinical or pathological T "
          "stage; T4 (chest wall or skin) cannot be assessed on one image."),
)


@dataclass(frozen=True)
class Target:
    """A project target on the test split: ``metric`` (and ``cls``) at least ``threshold`` (at most, for ECE)."""

    metric: str
    cls: str
    threshold: float

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "ece"


@dataclass(frozen=True)
class TaskSpec:
    """One task: what its models read, output and promise, and the caveats of its data."""

    name: str
    title: str
    #: Display names of the type labels (the label order itself is the model's, read from its config).
    label_names: dict[str, str]
    #: DICOM Modality values whose images this task's models were trained on.
    modalities: tuple[str, ...]
    #: DICOM BodyPartExamined values that fit the task (checked only where a file states one).
    body_parts: tuple[str, ...] = ()
    #: How the app names an image of this task when it routes one ("a brain MRI").
    looks_like: str = ""
    #: Window (centre, width) per DICOM modality that the model sees, whatever the display shows.
    dicom_windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    #: The augmentation ``train --source-artefacts`` uses instead (stronger, against source artefacts); None: no such
    #: option for this task.
    artefact_augment: AugmentSpec | None = None
    #: How stage is produced: "learned" (a stage head), "size" (from the lesion size), or "none" (not staged).
    stage_rule: str = "none"
    #: Shown beside every stage this task outputs.
    stage_note: str | None = None
    #: The title of the box of stage probabilities (a stage learned through the type says so where it is read).
    stage_caption: str = "Stage (calibrated probability, shown from 1% to 99%)"
    #: For ``stage_rule="size"``: the guideline's size categories.
    size_rule: SizeRule | None = None
    #: Why a task without a learned stage shows none (for example: not staged by imaging).
    staging_note: str | None = None
    #: Data caveats for model cards and the Performance tab.
    caveats: str = ""
    #: One line added to the Performance tab header (stage through type, source artefacts, ...).
    performance_note: str = ""
    #: Model-card line under "Known limitations" where the task needs one.
    limitation: str | None = None
    targets: tuple[Target, ...] = ()
    #: Manifest column holding the lesion annotation: "mask" (PNG path) or "bbox_xywh_norm" (centre box); None.
    lesion_column: str | None = None
    #: The label of images without a tumor (a lesion covered in a counterfactual training image gets it).
    normal_label: str | None = None
    #: Ultrasound: the lesion's posterior acoustic features (enhancement behind a cyst, shadowing behind many
    #: cancers) lie beneath it and outside its mask. The lesion evaluation also erases the lesion together with the
    #: column beneath it, this many lesion heights deep (``explain.lesion.with_posterior``); 0: not done.
    posterior_depth: float = 0.0
    #: The images show a body on a flat background (a CT or MRI slice), so the body can be told from its frame
    #: (``imaging.body``): ``train --reframe`` and the framing probe of ``evaluate --explain`` apply. Not so for
    #: ultrasound, whose dark tissue joins the dark surround.
    framed_body: bool = True

    def label_name(self, label: str) -> str:
        """Readable name of a label ("Squamous cell carcinoma"), falling back to the label with spaces."""
        return self.label_names.get(label, label.replace("_", " ").capitalize())


_LUNG_STAGE_NOTE = (
    "In the training data every image of one cancer type carries the same TNM stage, so this stage is "
    "learned through the type; it is not an independent staging of the scan."
)

TASKS: dict[str, TaskSpec] = {
    "lung_ct": TaskSpec(
        name="lung_ct",
        title="Lung CT",
        label_names={
            "adenocarcinoma": "Adenocarcinoma",
            "large_cell_carcinoma": "Large cell carcinoma",
            "squamous_cell_carcinoma": "Squamous cell carcinoma",
            "normal": "Normal",
        },
        modalities=("CT",),
        body_parts=("CHEST", "LUNG", "THORAX", "CHEST_TO_PELVIS", "CHESTABDOMEN", "CHESTABDPELVIS"),
        looks_like="a chest CT slice",
        dicom_windows={"CT": (-600.0, 1500.0)},  # the PNG training data were exported with a lung window
        augment=AugmentSpec(hflip=False),
        # The normal images come from another source (brighter display, some with lines drawn across), and teaching-
        # file figures with arrows and frames are called normal: display and marks are shortcuts to break.
        artefact_augment=AugmentSpec(hflip=False, brightness=0.12, contrast=0.35, gamma=0.4, blur=1.0,
                                     resample=0.6, marks=0.3),
        normal_label="normal",
        stage_rule="learned",
        stage_note=_LUNG_STAGE_NOTE,
        stage_caption="Stage, learned through the type: not a staging of this scan (shown from 1% to 99%)",
        caveats=(
            "Kaggle 'Chest CT-Scan images' (CC0 per a mirror; verify before redistribution), converted to 8-bit PNG, "
            "near-duplicates grouped before a leak-free split. **The TNM stage comes from the source's folder names "
            "and is identical for every image of one cancer type** (adenocarcinoma: T2 N0 M0, IB; large cell: T2 N2 M0, "
            "IIIA; squamous: T1 N2 M0, IIIA): the stage head learns stage *through the type* and is not an independent "
            "staging. The 'normal' class is small (42 train / 7 test images)."
        ),
        performance_note="The stage head learns stage through the type (one stage per type in the source data).",
        limitation=(
            "Stage is predicted through the type (see data caveats); a stage shown for a normal type, or vice versa, "
            "is flagged as inconsistent by the pathway table."
        ),
        targets=(Target("accuracy", "", 0.93), Target("macro_auc", "", 0.985),
                 Target("any_tumor_sensitivity", "", 0.97), Target("ece", "", 0.04)),
    ),
    "breast_us": TaskSpec(
        name="breast_us",
        title="Breast ultrasound",
        label_names={"benign": "Benign", "malignant": "Malignant", "normal": "Normal"},
        modalities=("US",),
        body_parts=("BREAST",),
        looks_like="a breast ultrasound image",
        augment=AugmentSpec(hflip=True),
        stage_rule="size",
        size_rule=BREAST_T_BY_SIZE,
        staging_note=("Size category (AJCC 8th T1-T3) from the lesion's longest diameter where the pixel spacing is "
                      "known (DICOM Pixel Spacing or ultrasound region calibration); not measurable otherwise."),
        caveats=(
            "BUSI (Al-Dhabyani et al., Data in Brief 2020), de-duplicated; known issues include annotations burned into "
            "pixels (Pawlowska et al., 2023)."
        ),
        targets=(Target("accuracy", "", 0.88), Target("macro_auc", "", 0.95),
                 Target("sensitivity", "malignant", 0.85), Target("ece", "", 0.04),
                 *(Target("explain_pointing_15px", c, 0.90 if not c else 0.80) for c in ("", "benign", "malignant")),
                 Target("explain_lesion_dice_median", "", 0.75), Target("explain_erase_lesion_call_lost", "", 0.70),
                 Target("explain_erase_elsewhere_call_kept", "", 0.95)),
        lesion_column="mask",
        normal_label="normal",
        posterior_depth=1.0,
        framed_body=False,
    ),
    "brain_mri": TaskSpec(
        name="brain_mri",
        title="Brain MRI",
        label_names={"glioma": "Glioma", "meningioma": "Meningioma", "pituitary": "Pituitary tumor",
                     "no_tumor": "No tumor"},
        modalities=("MR",),
        body_parts=("HEAD", "BRAIN", "SKULL", "HEADNECK"),
        looks_like="a brain MRI",
        augment=AugmentSpec(hflip=True),
        artefact_augment=AugmentSpec(hflip=True, scale=(0.85, 1.15), blur=1.2, resample=0.5, noise=0.03),
        staging_note=("Not staged by imaging: brain tumors are graded by the WHO classification on tissue "
                      "(histology and molecular markers), not by size on an image."),
        caveats=(
            "Tumor images from figshare (Cheng et al., 2015, CC BY 4.0); no_tumor images from Br35H, another source: a "
            "model can separate no_tumor by source artefacts rather than anatomy."
        ),
        targets=(Target("accuracy", "", 0.97), Target("macro_auc", "", 0.995),
                 Target("sensitivity", "glioma", 0.95), Target("ece", "", 0.04),
                 *(Target("explain_pointing_15px", c, 0.90 if not c else 0.80)
                   for c in ("", "glioma", "meningioma", "pituitary")),
                 Target("explain_lesion_box_iou_ge_0.5", "", 0.80), Target("explain_erase_lesion_call_lost", "", 0.70),
                 Target("explain_erase_elsewhere_call_kept", "", 0.95)),
        lesion_column="bbox_xywh_norm",
        normal_label="no_tumor",
    ),
}


def get_task(name: str) -> TaskSpec:
    """The spec of a known task; a task without one (a toy data set in a test) gets neutral defaults."""
    spec = TASKS.get(name)
    if spec is not None:
        return spec
    return TaskSpec(name=name, title=name, label_names={}, modalities=())


def task_rank(name: str) -> int:
    """Position in :data:`TASK_ORDER` (unknown tasks last)."""
    return TASK_ORDER.index(name) if name in TASK_ORDER else len(TASK_ORDER)


def stage_name(label: str) -> str:
    """Readable stage group: "IIIa" -> "Stage IIIA" (AJCC writes the letter upper case); "none" -> "No stage"."""
    if label.lower() == "none":
        return "No stage (no tumor)"
    return f"Stage {label.upper()}" if label and label[0] in "IVX0" else label.replace("_", " ")
