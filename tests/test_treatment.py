"""The treatment table covers every (type, stage) output of every model and reads as options, not orders."""

from __future__ import annotations

import itertools
import re

import pytest

from medimg_demo.models.registry import list_models
from medimg_demo.treatment import pathway, table

TASK_LABELS = {
    "lung_ct": (["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"], ["Ib", "IIIa", "none"]),
    "breast_us": (["benign", "malignant", "normal"], [None]),
    "brain_mri": (["glioma", "meningioma", "pituitary", "no_tumor"], [None]),
}


@pytest.mark.parametrize("task", sorted(TASK_LABELS))
def test_every_output_pair_of_each_task_has_a_row(task: str) -> None:
    types, stages = TASK_LABELS[task]
    for t, s in itertools.product(types, stages):
        p = pathway(task, t, s)
        assert p.summary and p.options and p.source
        assert re.search(r"(19|20)\d\d", p.source), "source names a year"


def test_committed_models_outputs_are_covered() -> None:
    for cfg in list_models():
        stages = cfg.stage_labels or [None]
        for t, s in itertools.product(cfg.type_labels, stages):
            pathway(cfg.task, t, s)


def test_a_no_tumor_row_does_not_rule_a_tumor_out() -> None:
    """A no-tumor call of a model that misses cancers (breast v3: 7 of 31 malignant test images) had read "no
    oncological treatment is indicated ... routine screening": reassurance from one image (clinician walkthrough).
    The row now says the call does not rule a tumor out and hands the decision to the read of the whole examination."""
    for row in (pathway("lung_ct", "normal", "none"), pathway("breast_us", "normal"), pathway("brain_mri", "no_tumor")):
        text = (row.summary + " " + " ".join(row.options)).lower()
        assert "does not rule one out" in row.summary and "whole examination" in row.summary, row
        assert "no oncological treatment" not in text and "indicated" not in text, row


def test_rows_are_options_not_orders() -> None:
    for p in table().values():
        text = (p.summary + " " + " ".join(p.options)).lower()
        assert not re.search(r"\b(must|prescribe|administer immediately)\b", text), p


def test_missing_row_raises() -> None:
    with pytest.raises(KeyError):
        pathway("lung_ct", "unknown", "Ib")


def test_each_option_is_whole_and_each_row_cites_a_source_for_what_it_says() -> None:
    """Options are split at ";": one inside brackets would cut an option in two. The sources were reviewed against
    what the rows say (forty-first session): lung rows naming osimertinib cited only the 2017 ESMO guideline, from
    before its adjuvant use (the 2021 update, Remon et al.); the brain no-tumor row cited the glioma guideline, and
    the prolactinoma option a guideline on incidentalomas only."""
    for key, row in table().items():
        for option in row.options:
            assert option.count("(") == option.count(")"), (key, option)
        if any("osimertinib" in option for option in row.options):
            assert "Remon et al." in row.source and "updated 2021" in row.source, key
    assert "glioma" not in pathway("brain_mri", "no_tumor").source.lower()
    assert not re.search(r"\b(\d{4}) \(\1\)", " ".join(p.source for p in table().values()))  # "2024 (2024)"
    assert "Hyperprolactinemia" in pathway("brain_mri", "pituitary").source
