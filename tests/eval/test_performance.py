"""Evaluation cache, metrics log, explanation-quality measures and the Performance tab's content."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medimg_demo.eval.explanations import (cam_iou, lesion_mask, pointing_hit, randomised_copy, smooth_random_order,
                                           spearman)
from medimg_demo.eval.cache import evaluate_cached, find_results
from medimg_demo.models.registry import get_model


def test_pointing_and_iou_on_known_maps(tmp_path) -> None:
    lesion = np.zeros((10, 10), dtype=bool)
    lesion[2:5, 2:5] = True
    cam = np.zeros((10, 10))
    cam[3, 3] = 1.0
    assert pointing_hit(cam, lesion) and cam_iou(cam, lesion) == pytest.approx(1 / 9)
    cam2 = np.zeros((10, 10))
    cam2[8, 8] = 1.0
    assert not pointing_hit(cam2, lesion) and cam_iou(cam2, lesion) == 0.0
    row = pd.Series({"bbox_xywh_norm": "0.5 0.5 0.2 0.4"})
    box = lesion_mask(row, tmp_path, (100, 100))
    assert box is not None and box.sum() == 20 * 40 and box[50, 50] and not box[10, 10]
    Image.fromarray(lesion.astype(np.uint8) * 255).save(tmp_path / "m.png")
    m = lesion_mask(pd.Series({"mask": "m.png"}), tmp_path, (20, 20))
    assert m is not None and m.sum() == 36
    assert lesion_mask(pd.Series({"mask": ""}), tmp_path, (20, 20)) is None


def test_randomised_last_stage_changes_heatmaps() -> None:
    from medimg_demo.explain.gradcam import gradcam
    from medimg_demo.models.network import TumorNet

    torch.manual_seed(0)
    m = TumorNet("tf_efficientnet_lite0", {"type": ["a", "b"]}, pretrained="offline").eval()
    x = torch.randn(1, 3, 96, 96)
    cam = gradcam(m, x, "type", "backbone.bn2", (96, 96), target=0, relu=False).cam
    rcam = gradcam(randomised_copy(m), x, "type", "backbone.bn2", (96, 96), target=0, relu=False).cam
    assert cam.std() > 0 and rcam.std() > 0  # non-degenerate maps
    assert spearman(cam, cam) == pytest.approx(1.0)
    assert abs(spearman(cam, rcam)) < 0.9
    assert not torch.equal(m.backbone.conv_head.weight, randomised_copy(m).backbone.conv_head.weight)


def _dataset(root):  # noqa: ANN001
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    labels = ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"]
    rows = []
    for i in range(12):
        arr = (rng.random((64, 64)) * 100).astype(np.uint8)
        arr[20:40, 20:40] += 120
        Image.fromarray(arr).save(root / "images" / f"i{i}.png")
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[20:40, 20:40] = 255
        Image.fromarray(mask).save(root / "masks" / f"i{i}.png")
        rows.append({"image": f"images/i{i}.png", "label": labels[i % 4], "split": "test",
                     "stage": ["Ib", "IIIa", "none", "IIIa"][i % 4], "mask": f"masks/i{i}.png"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def test_an_evaluation_killed_while_writing_leaves_no_cache_to_serve(tmp_path, tiny_registry, monkeypatch) -> None:
    """Killed after metrics.csv but before the cases and the gallery, a run used to leave a folder the cache took
    as finished, for ever: the app then showed metrics with no error gallery. Now the folder appears whole or not
    at all, and the next run computes it."""
    from medimg_demo.eval import cache

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    data = tmp_path / "lung_ct"
    _dataset(data)
    cfg = get_model()
    runs = tmp_path / "runs"

    def killed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "write_gallery", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_cached(cfg, data, "test", runs, n_boot=20)
    models_cache = runs / "cache" / cfg.id
    assert list(models_cache.iterdir()) == []  # neither a half folder nor a hidden work folder
    monkeypatch.undo()
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    folder, source = evaluate_cached(cfg, data, "test", runs, n_boot=20)
    assert source == "computed" and (folder / "cases.csv").is_file() and (folder / "gallery" / "index.csv").is_file()
    killed_long_ago = models_cache / f".{folder.name}.dead1234"  # a work folder of a run killed by SIGKILL
    (killed_long_ago / "gallery").mkdir(parents=True)
    os.utime(killed_long_ago, (0, 0))
    again, _ = evaluate_cached(cfg, data, "test", runs, n_boot=20, force=True)  # --force swaps it in
    assert again == folder and sorted(p.name for p in models_cache.iterdir()) == [folder.name]


def test_a_results_folder_replaced_while_it_is_looked_up_is_looked_up_again(monkeypatch, tmp_path) -> None:
    """While --force swaps an evaluation folder in, it is absent for an instant: the Performance tab's lookup then
    meets a folder that vanished (FileNotFoundError) and must search again, not fail the page."""
    from medimg_demo.eval import cache

    calls = []
    real = object()

    def flaky(cfg, runs):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError("renamed away")
        return real

    monkeypatch.setattr(cache, "_find_results", flaky)
    assert cache.find_results(None, tmp_path) is real and len(calls) == 2  # type: ignore[arg-type]


@pytest.mark.slow  # about 19 s: a whole evaluation of the tiny models; runs in .ci/run
def test_evaluate_is_cached_logged_and_shown(tmp_path, tiny_registry, monkeypatch) -> None:
    from medimg_demo.web import performance as service

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    monkeypatch.setenv("MEDIMG_RUNS_DIR", str(tmp_path / "runs"))
    data = tmp_path / "lung_ct"
    _dataset(data)
    cfg = get_model()
    runs = tmp_path / "runs"
    folder, source = evaluate_cached(cfg, data, "test", runs, explain=True, n_boot=30)
    assert source == "computed"
    metrics = pd.read_csv(folder / "metrics.csv", keep_default_na=False, na_values=[""])
    names = set(metrics["metric"])
    assert {"accuracy", "macro_auc", "ece", "ece_uncalibrated", "explain_pointing_hit", "explain_iou",
            "explain_deletion_auc", "explain_deletion_auc_random", "explain_randomised_rank_corr",
            "ece_if_calibrated", "ece_consistency_p", "stage_ece_if_calibrated"} <= names
    again, source2 = evaluate_cached(cfg, data, "test", runs, explain=True, n_boot=30)
    assert again == folder and source2 == "cache"
    other, source3 = evaluate_cached(cfg, data, "test", runs, explain=False, n_boot=30, seed=1)
    assert other != folder and source3 == "computed"  # another bootstrap seed is not served the cached intervals
    assert find_results(cfg, runs) is None  # trial runs (30 resamples) are never what the app shows
    log = pd.read_csv(runs / "metrics_log.csv")
    assert list(log.columns[:5]) == ["run_time_utc", "model_id", "weights_sha256", "dataset", "split"]
    n_other = len(pd.read_csv(other / "metrics.csv"))
    assert list(log["source"]) == ["computed"] * len(metrics) + ["cache"] * len(metrics) + ["computed"] * n_other
    assert (log["weights_sha256"] == cfg.weights_sha256).all()

    shown, _ = evaluate_cached(cfg, data, "test", runs, explain=True)  # the default run: 1000 resamples, seed 0
    res = find_results(cfg, runs)
    assert res is not None and res.folder == shown and res.cases is not None and len(res.cases) == 12
    view = service.performance_view(None)
    assert "lung_ct.tiny_v0" in view["header"]
    assert "**Calibration:** ECE" in view["header"] and "perfectly calibrated model" in view["header"]
    assert view["confusion"] is not None and view["roc"] is not None and view["reliability"] is not None
    assert "pointing game" in view["explain"]
    wrong = int((res.cases["pred"] != res.cases["label"]).sum())
    assert len(view["gallery"]) == min(wrong, 24)
    # how many it holds, in its title: scrolled inside its frame, the gallery hid that more followed (UX review)
    assert view["gallery_label"].endswith(f"{min(wrong, 24)} of {wrong} shown" + (", scroll for all" if wrong > 6 else ""))
    assert list(view["per_class"].columns) == ["Class", "Sensitivity", "Specificity", "PPV (precision)", "F1 score",
                                                "AUC (one vs rest)"]


def test_performance_view_without_cache_says_what_to_run(tmp_path, tiny_registry, monkeypatch) -> None:
    from medimg_demo.web import performance as service

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    monkeypatch.setenv("MEDIMG_RUNS_DIR", str(tmp_path / "empty"))
    view = service.performance_view(None)
    assert "python -m medimg_demo evaluate" in view["header"] and view["gallery"] == []


def test_fresh_clone_shows_bundled_metrics_and_draws_the_gallery_from_data(tmp_path, monkeypatch) -> None:
    """No runs cache: the tab reads models/<id>/metrics and draws the error gallery once from the data folder."""
    from conftest import LUNG
    from medimg_demo.web import performance as service

    if not (LUNG / "manifest.csv").is_file():
        import pytest

        pytest.skip("shared data not found")
    monkeypatch.setenv("MEDIMG_RUNS_DIR", str(tmp_path / "runs"))
    view = service.performance_view("lung_ct.tf_efficientnet_lite0_v2")
    assert "from `metrics`" in view["header"]
    cases = pd.read_csv(get_model("lung_ct.tf_efficientnet_lite0_v2").folder / "metrics" / "cases.csv")
    assert len(view["gallery"]) == min(int((cases["pred"] != cases["label"]).sum()), 24) > 0
    assert all(str(tmp_path) in path for path, _ in view["gallery"])
    assert "deletion AUC" in view["explain"]  # lung has no lesion masks: faithfulness and sanity rows only
    header = next(line for line in view["explain"].splitlines() if line.startswith("| measure"))
    assert header == "| measure | all cases | Adenocarcinoma | Large cell carcinoma | Normal | Squamous cell carcinoma |"
    framing = next(line for line in view["explain"].splitlines() if line.startswith("| framing probe (background"))
    assert framing.count("[") == 5  # all cases and the four classes, in one row
    sanity = next(line for line in view["explain"].splitlines() if line.startswith("| rank correlation"))
    assert sanity.count("[") == 1 and sanity.endswith("| - | - | - | - |")  # measured over all cases only


def test_explanation_cache_follows_the_grad_cam_layer(tmp_path, tiny_registry, monkeypatch) -> None:
    """Setting another target_layer in config.json must not serve the old layer's heatmap checks from the cache, nor
    an explained evaluation made against the old pixel-random baseline."""
    import dataclasses

    from medimg_demo.eval.cache import cache_dir

    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(tiny_registry))
    data = tmp_path / "lung_ct"
    _dataset(data)
    cfg = get_model()
    other = dataclasses.replace(cfg, target_layer="backbone.blocks.4")
    for explain in (True, False):  # without explanations too: the error gallery draws the layer's heatmaps
        assert cache_dir(cfg, data, "test", explain, tmp_path) != cache_dir(other, data, "test", explain, tmp_path)
    assert cache_dir(cfg, data, "test", True, tmp_path).name.endswith("-rand32-explain")  # the checks' version


def test_the_random_baseline_deletes_in_blobs_like_a_heatmap() -> None:
    """The deletion/insertion baseline is a random map as coarse as a Grad-CAM: its first tenth of pixels forms a
    few compact regions (a pixel-random order scatters salt noise over the whole image, which no heatmap does)."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    order = smooth_random_order((224, 224), rng)
    assert sorted(order.tolist()) == list(range(224 * 224))  # a permutation of every pixel
    first = np.zeros(224 * 224, bool)
    first[order[: 224 * 224 // 10]] = True
    scattered = np.zeros(224 * 224, bool)
    scattered[rng.permutation(224 * 224)[: 224 * 224 // 10]] = True
    blobs, salt = ndimage.label(first.reshape(224, 224))[1], ndimage.label(scattered.reshape(224, 224))[1]
    assert blobs <= 12 and salt > 1000, (blobs, salt)
    assert not np.array_equal(order, smooth_random_order((224, 224), rng))  # each image gets its own random map


def test_two_first_requests_draw_the_gallery_once(tmp_path, monkeypatch) -> None:
    """The first two visitors of the tab at once: one draws the gallery, the other waits and reads it whole
    (without the lock both drew into one folder, one publishing the other's half-written pictures)."""
    import threading
    import time

    from conftest import LUNG
    from medimg_demo.web import performance as service

    if not (LUNG / "manifest.csv").is_file():
        pytest.skip("shared data not found")
    monkeypatch.setenv("MEDIMG_RUNS_DIR", str(tmp_path / "runs"))
    drawn: list[int] = []

    def slow_gallery(cfg, folder, cases, out) -> int:  # noqa: ANN001
        drawn.append(1)
        time.sleep(0.5)
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(columns=["file", "image", "label", "pred", "confidence"]).to_csv(out / "index.csv", index=False)
        return 0

    monkeypatch.setattr(service, "write_gallery", slow_gallery)
    views = []
    threads = [threading.Thread(target=lambda: views.append(service.performance_view("lung_ct.tf_efficientnet_lite0_v2")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(views) == 2 and drawn == [1]


def test_a_plain_run_of_the_same_figures_does_not_hide_the_bundled_explanations(tiny_registry, tmp_path,
                                                                                 monkeypatch) -> None:
    """A plain ``evaluate --split test`` (no --explain) of unchanged weights and calibration had taken the
    Performance tab's place of the bundled metrics and dropped all their explanation rows (numbers review). Its
    figures are the bundled ones: the bundled metrics are shown. Figures that differ (a recalibration) are shown
    from the run."""
    import shutil

    from medimg_demo.eval import cache

    models = shutil.copytree(tiny_registry, tmp_path / "models")  # the session's registry holds no bundled metrics
    monkeypatch.setenv("MEDIMG_MODELS_DIR", str(models))
    cfg = get_model()
    assert cfg.folder is not None and models in cfg.folder.parents
    rows = pd.DataFrame({"metric": ["accuracy", "sensitivity", "explain_pointing_hit"], "class": ["", "tumor", ""],
                         "value": [0.9, 0.8, 0.7], "ci_low": [0.8, 0.7, 0.6], "ci_high": [0.95, 0.9, 0.8]})
    bundled = cfg.folder / "metrics"
    bundled.mkdir(exist_ok=True)
    rows.to_csv(bundled / "metrics.csv", index=False)
    run = (tmp_path / "runs" / "cache" / cfg.id /
           f"{cache.model_tag(cfg)}-abc-test-{cache.layer_tag(cfg)}-{cache.METRICS_TAG}")
    run.mkdir(parents=True)
    rows[~rows["metric"].str.startswith("explain_")].to_csv(run / "metrics.csv", index=False)
    assert find_results(cfg, tmp_path / "runs").folder == bundled
    changed = rows[~rows["metric"].str.startswith("explain_")].assign(value=[0.85, 0.8])
    changed.to_csv(run / "metrics.csv", index=False)
    assert find_results(cfg, tmp_path / "runs").folder == run


def test_the_explanation_table_says_which_lesion_targets_are_missed() -> None:
    """The overall table's target column left the lesion targets out: breast's erasure target (0.165 against 0.70)
    was never called missed on the Performance tab (numbers review)."""
    from medimg_demo.tasks import get_task
    from medimg_demo.web.performance import explain_table

    spec = get_task("breast_us")
    rows = pd.DataFrame({"metric": ["explain_erase_lesion_call_lost", "explain_erase_lesion_call_lost",
                                    "explain_pointing_15px", "explain_pointing_15px", "explain_iou"],
                         "class": ["", "malignant", "", "benign", ""], "value": [0.165, 0.25, 0.965, 0.70, 0.38],
                         "ci_low": [0.1] * 5, "ci_high": [0.9] * 5})
    lines = explain_table(rows, spec.label_name, spec.targets)
    assert lines[0].endswith("| target (test split) |")
    erase = next(line for line in lines if "tumor calls lost" in line)
    assert erase.endswith("| >= 0.7: ✗ missed by 0.535 |")
    pointing = next(line for line in lines if "within 15 px" in line)
    assert ">= 0.9: ✓ met; Benign >= 0.8: ✗ missed by 0.100" in pointing
    assert next(line for line in lines if "IoU of the heatmap" in line).endswith("|  |")  # no target: left empty
    assert not explain_table(rows, spec.label_name)[0].endswith("target (test split) |")
    assert "not measured for that class" in lines[-1]  # the IoU row has "-" under each class: said what it means
    full = rows[rows["metric"] == "explain_pointing_15px"].assign(**{"class": ["benign", "malignant"]})
    assert "not measured" not in "\n".join(explain_table(full, spec.label_name))
