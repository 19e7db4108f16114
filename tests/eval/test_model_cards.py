"""Every committed model has a card that states research use, caveats, targets, metrics with intervals and the
reproduce command, and bundled test metrics that the Performance tab can show without the data."""

from __future__ import annotations

import pandas as pd

from medimg_demo.models.registry import list_models


def test_cards_and_bundled_metrics() -> None:
    models = list_models()
    assert {m.task for m in models} >= {"lung_ct"}
    for cfg in models:
        card = (cfg.folder / "MODEL_CARD.md").read_text()
        for needle in ("not a medical device", "Out of scope", "95%", "python -m medimg_demo train", "--seed",
                       "Against the project's targets", "Per class"):
            assert needle in card, (cfg.id, needle)
        metrics = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
        assert list(metrics.columns) == ["metric", "class", "value", "ci_low", "ci_high"]
        acc = metrics[metrics["metric"] == "accuracy"].iloc[0]
        assert f"{acc['value']:.3f}" in card  # the card shows the measured figure
        cases = pd.read_csv(cfg.folder / "metrics" / "cases.csv")
        assert abs((cases["pred"] == cases["label"]).mean() - acc["value"]) < 1e-9
        teacher = cfg.raw.get("training", {}).get("distill_from")
        assert ("- Distilled from " in card) == bool(teacher), cfg.id
        assert all(f"`{t.strip()}`" in card.split("- Distilled from ")[-1].split("\n")[0] for t in (teacher or "").split(",") if t.strip())
        assert ("- Weights averaged" in card) == bool(cfg.raw.get("training", {}).get("ema_halflife")), cfg.id
        assert ("Only the lesion head was trained" in card) == bool(cfg.raw.get("training", {}).get("lesion_only")), cfg.id
    lung = [m for m in models if m.task == "lung_ct"][0]
    assert "through the type" in (lung.folder / "MODEL_CARD.md").read_text()


def test_card_command_reproduces_the_training_configuration(tmp_path) -> None:
    """The train command printed in each card parses to the configuration saved beside the weights."""
    import shlex
    from dataclasses import asdict

    from medimg_demo.cli import build_parser, train_config_from_args

    for cfg in list_models():
        card = (cfg.folder / "MODEL_CARD.md").read_text()
        line = next(ln for ln in card.splitlines() if ln.startswith("python -m medimg_demo train "))
        (tmp_path / "manifest.csv").write_text("image,label,split\n")  # --data only has to exist here
        args = build_parser().parse_args(shlex.split(line)[3:] + ["--data", str(tmp_path)])
        parsed = asdict(train_config_from_args(args))
        assert parsed["out_dir"] == f"runs/reproduce/{cfg.id}" and not parsed["replace"], cfg.id  # beside the bundled model
        block = card.split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0].splitlines()
        assert all(c.startswith(f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo ") for c in block
                   if not c.startswith("python -m medimg_demo train ")), (cfg.id, block)
        assert (f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo gate --model {cfg.id}" in block) == bool(cfg.gate)
        saved = cfg.raw["training"]
        saved.setdefault("select_bf16", True)  # configs written before the option were selected under bf16
        for key, value in saved.items():
            if key in ("data", "out_dir", "heads"):
                continue
            assert parsed[key] == value, (cfg.id, key, parsed[key], value)


def test_cross_validated_temperature_is_stated_and_reproducible() -> None:
    """A model whose temperature came from ``calibrate`` says so, with the val-only figure, and its card prints the
    command; the pinned temperature is the one in the record's config."""
    from medimg_demo.cli import build_parser

    for cfg in list_models():
        cal = cfg.raw.get("calibration")
        card = (cfg.folder / "MODEL_CARD.md").read_text()
        if not cal:
            assert "temperature scaling fitted on `val`" in card, cfg.id
            continue
        training = cfg.raw.get("training") or {}
        if training.get("lesion_only"):  # the start model's calibration, carried with its classifier: no command
            start = {m.id: m for m in list_models()}[training["init_from"]]
            assert cal == start.raw["calibration"] and cfg.temperature == start.temperature, cfg.id
            assert cfg.bias == start.bias and "classifier and its calibration are" in card, cfg.id
            assert " calibrate " not in card.split("## Reproduce", 1)[1], cfg.id
            continue
        line = next(ln.split(" ", 1)[1] for ln in card.splitlines()
                    if ln.startswith(f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo calibrate "))
        args = build_parser().parse_args(line.split()[3:])
        assert args.model == cfg.id and args.folds == cal["folds"] and args.write
        if cal.get("method") == "bcts":  # bias-corrected temperature scaling on val, chosen by cross-validation in val
            assert args.method == "bcts" and len(cfg.bias["type"]) == len(cfg.type_labels), cfg.id
            assert "bias-corrected temperature scaling" in card and f"({cal['cases']} cases)" in card, cfg.id
            assert cal["cv"]["bcts"]["cv_nll"] < cal["cv"]["temperature"]["cv_nll"], cfg.id
            assert f"T = {cal['temperature_only']}" in card, cfg.id
            continue
        assert f"fitted (NLL) on {cal['cases']} cases" in card and str(cal["val_only_temperature"]) in card, cfg.id
        assert set(cfg.temperature) == set(cal["val_only_temperature"]) == set(cfg.heads)


def test_card_states_a_cross_validated_temperature() -> None:
    """render() with a calibration record: the sentence, the val-only figure, the fold accuracies and the commands."""
    import dataclasses

    import pandas as pd

    from medimg_demo.eval.card import render

    cfg = next(m for m in list_models() if m.task == "lung_ct")
    cal = {"method": "m", "folds": 3, "cases": 592, "oof_type_accuracy": 0.93, "val_type_accuracy": 0.965,
           "val_only_temperature": {"type": 0.31}, "fold_val_type_accuracy": [0.95, 0.94, 0.96]}
    fake = dataclasses.replace(cfg, temperature={"type": 0.42}, raw={**cfg.raw, "calibration": cal})
    metrics = pd.read_csv(cfg.folder / "metrics" / "metrics.csv", keep_default_na=False, na_values=[""])
    card = render(fake, metrics, "test", 125, "python -m medimg_demo evaluate")
    assert "temperature scaling {'type': 0.42}, fitted (NLL) on 592 cases" in card
    assert "`val` alone would give {'type': 0.31}" in card and "[0.95, 0.94, 0.96]" in card
    assert "temperature on out-of-fold `train` + `val`" in card
    lines = card.splitlines()
    here = f"MEDIMG_MODELS_DIR=runs/reproduce/{cfg.id} python -m medimg_demo"
    i = lines.index(f"{here} calibrate --model {cfg.id} --folds 3 --write")
    assert lines[i + 1] == f"{here} gate --model {cfg.id}" and lines[i + 2] == f"{here} evaluate"
    plain = render(cfg, metrics, "test", 125, "python -m medimg_demo evaluate")
    assert "calibrate --model" not in plain and "temperature scaling fitted on `val`" in plain
