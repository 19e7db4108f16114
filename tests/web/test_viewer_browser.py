"""The Analyse tab's viewer as a clinician uses it, in headless Chromium (Debian's /usr/bin/chromium via Playwright):
sample cases analyse on click, the compare slider with zoom and colour bar, readable names, boxes shown only when
they hold something, the middle frame of a multi-frame DICOM, stale results cleared when the file or the model
changes, the report download (its pages rendered to PNG), and the Performance tab's tables fitting their width for
every task's served model.

Screenshots land in artifacts/ (gitignored): analyse_lung_ct.png, analyse_lung_ct_zoom4x.png, analyse_breast_us.png,
analyse_brain_mri.png, analyse_multiframe_dicom.png, performance.png, performance_<task>.png, report_page-N.png.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medimg_demo.explain.display import DISPLAY_SIDE

from conftest import LUNG, dicom_bytes, lung_test_image
from test_browser import ARTIFACTS, CHROMIUM, app_state, app_url, browser_page, page  # noqa: F401 - app and page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # each starts the app and Chromium; .ci/run runs them
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
    pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared data not found"),
]
RESULT_TIMEOUT = 120_000  # ms: one analysis on a shared 2-core machine
PHI = ("Doe^Jane", "PID-998877", "Hidden Road", "Secretia")


def _shot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # images decoded and laid out
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _sample(page, name: str) -> None:  # noqa: ANN001
    """Click a sample case button ("Lung CT: Adenocarcinoma")."""
    page.get_by_role("button", name=name, exact=True).click()


def _viewer_srcs(page) -> list[str]:  # noqa: ANN001
    return page.eval_on_selector_all("#viewer img", "els => els.map(e => e.getAttribute('src') || '')")


def _wait_viewer(page, before: list[str] | None = None) -> list[str]:  # noqa: ANN001
    """Wait until the compare slider shows two loaded pictures (other than ``before``); their sources."""
    page.wait_for_function(
        """(before) => { const imgs = [...document.querySelectorAll('#viewer img')];
             return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0)
                    && JSON.stringify(imgs.map(i => i.getAttribute('src'))) !== JSON.stringify(before); }""",
        arg=before, timeout=RESULT_TIMEOUT)
    return _viewer_srcs(page)


def _type_text(page) -> str:  # noqa: ANN001
    loc = page.locator("#type-out")
    return loc.inner_text() if loc.is_visible() else ""


def _lung_cine(n: int = 5) -> tuple[bytes, int]:
    """A CT multi-frame DICOM (with planted identifiers) built from lung test images in Hounsfield units, as the
    PNGs were exported (lung window C -600 / W 1500); the middle frame is the adenocarcinoma test image."""
    from PIL import Image

    first = lung_test_image()
    with open(LUNG / "manifest.csv", newline="") as fh:
        others = [LUNG / r["image"] for r in csv.DictReader(fh) if r["split"] == "test" and LUNG / r["image"] != first]
    base = Image.open(first).convert("L")
    frames = [np.asarray(Image.open(p).convert("L").resize(base.size)) for p in others[: n - 1]]
    frames.insert(n // 2, np.asarray(base))
    hu = -1350.0 + np.stack(frames).astype(np.float64) * 1500.0 / 255.0
    stored = np.round(hu + 2048).astype(np.uint16)
    return dicom_bytes(stored, slope=1, intercept=-2048, window=(-600, 1500), modality="CT"), n // 2


def test_sample_click_analyses_with_compare_slider_zoom_and_colour_bar(page) -> None:  # noqa: ANN001
    size = page.viewport_size
    page.set_viewport_size({"width": 1440, "height": 900})  # a laptop's screen: the samples are in sight, unscrolled
    first = page.get_by_role("button", name="Brain MRI: Glioma", exact=True).bounding_box()
    assert first is not None and first["y"] + first["height"] <= 900, first
    page.set_viewport_size(size)
    _sample(page, "Lung CT: Adenocarcinoma")
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)  # analysed on click, no Analyse press
    srcs = _wait_viewer(page)
    sizes = page.eval_on_selector_all("#viewer img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert sizes[0] == sizes[1] and max(sizes[0]) >= DISPLAY_SIDE  # rendered at display size, image and overlay aligned
    label = _type_text(page)
    assert "Adenocarcinoma" in label and "Large cell carcinoma" in label and "_" not in label  # readable names
    assert "Stage I" in page.locator("#stage-out").inner_text()
    # the stage caption wraps to two lines ("learned through the type: ...") and had lain over the call's heading
    caption, heading = (page.locator(f"#stage-out {e}").first.bounding_box() for e in ("label", "h2"))
    assert caption["y"] + caption["height"] <= heading["y"] + 1, (caption, heading)
    assert page.get_by_role("button", name="Download report (PDF)").is_visible()
    # a 1024 px window (a tablet, half a wide screen): the call stays beside the image (it had wrapped below it)
    size = page.viewport_size
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        viewer, call = (page.locator(s).bounding_box() for s in ("#viewer", "#type-out"))
        assert call["x"] >= viewer["x"] + viewer["width"] and abs(call["y"] - viewer["y"]) < 100, (viewer, call)
    finally:
        page.set_viewport_size(size)
    assert not page.get_by_role("button", name="De-identified DICOM copy").is_visible()  # a PNG: no DICOM copy
    _shot(page, "analyse_lung_ct.png")

    page.get_by_label("4x").check()  # rendered server-side from the scan's pixels around the heatmap peak
    zoomed = _wait_viewer(page, srcs)
    assert max(page.eval_on_selector("#viewer img", "e => [e.naturalWidth, e.naturalHeight]")) >= DISPLAY_SIDE
    _shot(page, "analyse_lung_ct_zoom4x.png")
    # a click on the overview centres the zoom there
    box = page.locator("#overview img").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    _wait_viewer(page, zoomed)
    assert page.get_by_label("Chosen point").is_checked() and page.get_by_label("4x").is_checked()


def test_breast_and_brain_samples_show_only_boxes_that_hold_something(page) -> None:  # noqa: ANN001
    _sample(page, "Breast ultrasound: Malignant")
    page.wait_for_function("() => (document.querySelector('#analysis-info')?.innerText || '').includes('breast_us')",
                           timeout=RESULT_TIMEOUT)
    before = _wait_viewer(page)
    assert not page.locator("#stage-out").is_visible()  # no stage head: no empty Stage box
    assert not page.locator("#frame").is_visible() and not page.locator("#deid-file").is_visible()
    if "Lesion (model outline)" in page.inner_text("body"):  # a tumor call: outlined, measured, with a toggle
        assert page.locator("#lesion-outline").is_visible()
        assert "not measurable" in page.inner_text("body")  # a PNG carries no pixel spacing
        _shot(page, "analyse_breast_us.png")
        page.locator("#lesion-outline input").uncheck()
        _wait_viewer(page, before)  # drawn again, without the outline
        page.locator("#lesion-outline input").check()
    else:
        assert not page.locator("#lesion-outline").is_visible()
        _shot(page, "analyse_breast_us.png")

    _sample(page, "Brain MRI: Glioma")
    page.wait_for_function("() => (document.querySelector('#analysis-info')?.innerText || '').includes('brain_mri')",
                           timeout=RESULT_TIMEOUT)
    _wait_viewer(page)
    assert "Malignant" not in _type_text(page)  # nothing of the breast case left
    if page.locator("#type-out").is_visible():
        assert "not staged by imaging" in page.inner_text("body").lower()
    # a figshare image: the brain manifest states its pixel spacing, so the lesion is measured in mm
    assert "pixel spacing 0.98 x 0.98 mm (from the data set manifest)" in page.inner_text("#analysis-info")
    if "Lesion (model outline)" in page.inner_text("body"):
        assert "not measurable" not in page.inner_text("body") and " mm" in page.inner_text("body")
    _shot(page, "analyse_brain_mri.png")

    _sample(page, "Lung CT: Adenocarcinoma")  # no lesion head: no outline toggle
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)
    assert not page.locator("#lesion-outline").is_visible()


def test_multiframe_dicom_opens_on_its_middle_frame(page, tmp_path) -> None:  # noqa: ANN001
    data, middle = _lung_cine(5)
    scan = tmp_path / "DOE_JANE_cine.dcm"
    scan.write_bytes(data)
    page.set_input_files("input[type=file]", str(scan))
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)
    _wait_viewer(page)
    assert page.locator("#frame input").input_value() == str(middle + 1)  # the frame box shows the frame used
    assert f"frame {middle + 1} of 5 shown" in page.locator("#analysis-info").inner_text()
    page.get_by_role("button", name="De-identified DICOM copy").click()
    page.locator("#deid-file a").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert not any(s in body for s in PHI) and "DOE_JANE" not in body
    _shot(page, "analyse_multiframe_dicom.png")
    page.locator("#frame input").fill("2")  # leaving the box shows the frame typed (it had stayed, unapplied)
    page.locator("#frame input").press("Tab")
    page.locator("#analysis-info").get_by_text("frame 2 of 5 shown", exact=False).wait_for(timeout=RESULT_TIMEOUT)
    page.wait_for_function("() => window.medimgWork === 0", timeout=RESULT_TIMEOUT)
    page.locator("#frame input").fill("3")  # typed, then Analyse: that click shows it, once (the box's leaving had
    page.locator("#analyse-run").click()     # started a second analysis, refused as "still being worked on")
    page.locator("#analysis-info").get_by_text("frame 3 of 5 shown", exact=False).wait_for(timeout=RESULT_TIMEOUT)
    page.wait_for_function("() => window.medimgWork === 0", timeout=RESULT_TIMEOUT)
    busy = "() => [...document.querySelectorAll('.toast-body')].map(e => e.innerText).join(' | ')"
    assert "still being worked on" not in page.evaluate(busy)
    page.locator("#frame input").fill("1")  # asked for: frame 1, and the same box says so
    page.locator("#frame input").press("Enter")
    page.locator("#analysis-info").get_by_text("frame 1 of 5 shown", exact=False).wait_for(timeout=RESULT_TIMEOUT)
    assert page.locator("#frame input").input_value() == "1"
    shown = _wait_viewer(page)
    page.locator("#frame input").fill("9")  # beyond the file: the case stays, the box goes back, the range is named
    page.locator("#frame input").press("Enter")
    page.get_by_text("This file has 5 frames").first.wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#frame input').value === '1'", timeout=10_000)
    assert "frame 1 of 5 shown" in page.locator("#analysis-info").inner_text() and _viewer_srcs(page) == shown
    _shot(page, "analyse_frame_beyond_file.png")
    # a 0 frame and a negative width: the app's own message only; Gradio's minimum had added one of its own, and a
    # negative width once typed failed every later analysis (it is one of their inputs) until corrected
    page.locator("#frame input").fill("0")
    page.locator("#frame input").press("Enter")
    page.get_by_text("This file has 5 frames").first.wait_for(timeout=30_000)
    page.get_by_text("Display window (DICOM").click()
    page.get_by_label("Width", exact=True).fill("-50")
    page.get_by_label("Width", exact=True).press("Enter")
    page.locator("button.primary", has_text="Analyse").click()  # analysed again with the negative width in its box
    page.wait_for_function("() => window.medimgWork > 0", timeout=10_000)  # held, then let go when done
    page.wait_for_function("() => window.medimgWork === 0", timeout=RESULT_TIMEOUT)
    toasts = "() => [...document.querySelectorAll('.toast-body')].map(e => e.innerText).join(' | ')"
    assert "less than minimum" not in page.evaluate(toasts)
    # analysed (outputs are blanked first, so a failure leaves no info line); frame 1 of this cine is indeterminate
    assert "frame 1 of 5 shown" in page.locator("#analysis-info").inner_text() and _viewer_srcs(page)

    _sample(page, "Lung CT: Normal")  # the next case: the previous one's DICOM copy, frame box and window go
    page.wait_for_function("() => !document.querySelector('#deid-file a')", timeout=30_000)
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)
    assert not page.locator("#deid-file").is_visible() and not page.locator("#frame").is_visible()
    assert page.get_by_label("Width", exact=True).input_value() == ""
    assert page.get_by_label("Centre", exact=True).input_value() == ""
    assert not page.get_by_role("button", name="De-identified DICOM copy").is_visible()


def test_stale_results_are_cleared_when_the_model_or_the_file_changes(page, tmp_path) -> None:  # noqa: ANN001
    _sample(page, "Lung CT: Squamous cell carcinoma")
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)
    _wait_viewer(page)
    page.locator("#analyse-model input").click()
    page.get_by_role("option", name="Breast ultrasound", exact=False).first.click()
    page.get_by_text("Model changed").wait_for(timeout=30_000)
    assert _viewer_srcs(page) == [] and "Carcinoma" not in _type_text(page).title()
    assert "Stage group" not in page.inner_text("body")
    assert not page.get_by_role("button", name="Download report (PDF)").is_visible()

    page.get_by_role("button", name="Analyse", exact=True).click()  # this scan through the breast model
    page.locator("#analysis-info").get_by_text("breast_us").wait_for(timeout=RESULT_TIMEOUT)
    bad = tmp_path / "not_a_scan.png"
    bad.write_text("this is a text file, not an image\n" * 10)
    page.get_by_role("button", name="Clear").first.click()
    page.wait_for_selector("input[type=file]", state="attached", timeout=10_000)
    page.set_input_files("input[type=file]", str(bad))
    page.get_by_text("not a recognised image").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert _viewer_srcs(page) == []
    assert _type_text(page).strip() in ("", "Tumor type (calibrated probability, shown from 1% to 99%)")
    assert "breast_us" not in page.locator("#analysis-info").inner_text()
    assert not page.get_by_role("button", name="Switch to").is_visible()  # no offer left from the previous case


def test_report_download_and_its_pages(page, tmp_path) -> None:  # noqa: ANN001
    _sample(page, "Lung CT: Adenocarcinoma")
    page.get_by_text("Stage group").wait_for(timeout=RESULT_TIMEOUT)
    _wait_viewer(page)
    assert not page.locator("#report-file").is_visible()  # no empty file box before there is a report
    page.get_by_role("button", name="Download report (PDF)").click()
    link = page.locator("#report-file a[href*='.pdf']").first
    link.wait_for(timeout=90_000)
    # named for a screen reader by what it is (Gradio's name was its size, "268.7 KB")
    page.wait_for_function("() => document.querySelector(\"#report-file a[href*='.pdf']\")?.getAttribute("
                           "'aria-label') === 'Download the case report (PDF)'", timeout=5_000)
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    # saved under a name that tells reports apart (the task and the time), not a hash
    assert re.fullmatch(r"medimg-report_lung_ct_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_UTC\.pdf", dl.value.suggested_filename)
    pdf = tmp_path / "report.pdf"
    shutil.copy(dl.value.path(), pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: the report's pages are not rendered to PNG")
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("report_page-*.png"):
        old.unlink()
    subprocess.run([pdftoppm, "-png", "-r", "80", str(pdf), str(ARTIFACTS / "report_page")], check=True, timeout=120)
    pages = sorted(ARTIFACTS.glob("report_page-*.png"))
    assert 1 <= len(pages) <= 2, pages


def _wait_idle(page) -> None:  # noqa: ANN001
    """Until no component shows Gradio's "processing" overlay."""
    page.wait_for_function("() => !document.body.innerText.includes('processing |')", timeout=RESULT_TIMEOUT)


def _perf_tables_fit(page) -> None:  # noqa: ANN001
    headers = page.eval_on_selector_all("#perf-per-class th", "els => els.map(e => e.innerText.trim())")
    assert headers[:3] == ["Class", "Sensitivity", "Specificity"] and "AUC (one vs rest)" in headers
    assert not any(h.startswith("explain_") for h in headers), headers  # raw row names stay out of the table
    # the explanation table: a measure a row, all cases then each class, headed by readable class names
    explain_headers = page.eval_on_selector_all("#perf-explain th", "els => els.map(e => e.innerText.trim())")
    assert explain_headers[:2] == ["measure", "all cases"] and len(explain_headers) >= 4, explain_headers
    assert not any("_" in h for h in explain_headers), explain_headers
    for table in ("#perf-overall", "#perf-per-class", "#perf-stage", "#perf-explain"):
        if table == "#perf-stage" and page.locator(table).count() == 0:
            continue  # a model without a stage head: the table is left out
        overflow = page.eval_on_selector(table, """root => [...root.querySelectorAll('*')]
            .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1).length""")
        assert overflow == 0, f"{table} is cut off at the right"
    for table in ("#perf-per-class", "#perf-explain"):  # names wrap between words, never inside one
        split = page.eval_on_selector(table, """root => { const bad = [];
            for (const cell of root.querySelectorAll('th, td')) {
                const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT); let node;
                while ((node = walk.nextNode())) { const word = /\\S+/g; let m;
                    while ((m = word.exec(node.data))) { const r = document.createRange();
                        r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
                        if (r.getClientRects().length > 1) bad.push(m[0]); } } }
            return bad; }""")
        assert split == [], f"{table}: words broken across lines: {split}"
    hidden_rows = page.eval_on_selector("#perf-overall", """root => [...root.querySelectorAll('*')]
        .filter(e => e.clientHeight > 0 && e.scrollHeight > e.clientHeight + 1).length""")
    assert hidden_rows == 0, "the overall table hides rows below its fold"


def _gallery_loaded(page) -> None:  # noqa: ANN001
    """Every error-gallery picture loads once scrolled to (lazy loading leaves the unseen ones blank)."""
    imgs = page.locator("#perf-gallery img")
    assert imgs.count() > 0, "no error gallery (every served model misclassifies some test cases)"
    captions = page.locator("#perf-gallery").inner_text()
    assert "predicted" in captions and "_" not in captions, captions[:300]  # readable class names, as the tables
    for i in range(imgs.count()):
        imgs.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("""() => [...document.querySelectorAll('#perf-gallery img')]
        .every(i => i.complete && i.naturalWidth > 0)""", timeout=30_000)
    # each image | Grad-CAM pair whole in its tile: fitted, not cropped, in a tile of about its own shape
    shapes = page.eval_on_selector_all("#perf-gallery img", """els => els.map(i => [getComputedStyle(i).objectFit,
        i.naturalWidth / i.naturalHeight, i.clientWidth / i.clientHeight])""")
    for fit, picture, tile in shapes:
        assert fit == "contain" and 0.5 < picture / tile < 2, (fit, picture, tile)  # square tiles: 2 for every pair


def test_performance_tab_tables_fit_and_read_plainly(page) -> None:  # noqa: ANN001
    """Every task's served model, chosen through the tab's own dropdown: tables that fit, plain headers."""
    from medimg_demo.models.registry import task_models
    from medimg_demo.web.catalog import model_choices

    page.get_by_role("tab", name="Performance").click()  # opening the tab shows the figures: no Show needed
    page.locator("#perf-per-class th").first.wait_for(timeout=RESULT_TIMEOUT)
    page.get_by_text("Explanation quality").wait_for(timeout=RESULT_TIMEOUT)
    _perf_tables_fit(page)
    _gallery_loaded(page)
    _shot(page, "performance.png")
    choices = model_choices()
    labels = {mid: label for label, mid in choices}
    others = [m.id for m in task_models() if m.id != choices[0][1]]
    assert others, "expected a served model for more than one task"
    for model_id in others:
        page.locator("#perf-model input").click()
        page.get_by_role("option", name=labels[model_id], exact=True).click()  # "Brain MRI v5 (default)"
        page.wait_for_function("(m) => document.querySelector('#perf-header').innerText.includes(m)",
                               arg=model_id, timeout=RESULT_TIMEOUT)
        _wait_idle(page)
        page.get_by_text("Explanation quality").wait_for(timeout=RESULT_TIMEOUT)
        assert page.input_value("#perf-model input") == labels[model_id]
        _perf_tables_fit(page)
        _gallery_loaded(page)
        _shot(page, f"performance_{model_id.split('.')[0]}.png")


#: Visible text whose contrast with the nearest opaque background below it is under WCAG's 4.5 (the compare
#: slider's handle arrows, decorative, aside): [text, contrast, colour].
LOW_CONTRAST_JS = r"""() => {
  const rgb = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
                     const v = m[1].split(',').map(parseFloat);
                     return {c: v.slice(0, 3), a: v.length > 3 ? v[3] : 1}; };
  const lum = c => c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; })
                    .reduce((s, x, i) => s + x * [0.2126, 0.7152, 0.0722][i], 0);
  const under = el => { for (; el; el = el.parentElement) { const b = rgb(getComputedStyle(el).backgroundColor);
                          if (b && b.a > 0.5) return b.c; } return [255, 255, 255]; };
  const low = [], walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode());) {
    const el = n.parentElement, text = n.textContent.trim();
    if (!text || !el || !el.offsetParent || el.closest("[data-testid='slider']")) continue;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || !box.width || !box.height) continue;
    const a = lum(rgb(style.color).c), b = lum(under(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push([text.slice(0, 60), Math.round(ratio * 100) / 100, style.color]);
  }
  for (const el of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {  // "e.g. reader07"
    if (!el.placeholder || el.value || !el.offsetParent) continue;
    const color = getComputedStyle(el, '::placeholder').color, a = lum(rgb(color).c), b = lum(under(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push([el.placeholder.slice(0, 60), Math.round(ratio * 100) / 100, color]);
  }
  return low; }"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_reads_in_light_and_dark_mode(app_url: str, scheme: str) -> None:  # noqa: F811
    """In dark mode (the system's, which Gradio follows; reading rooms are dark) the banner's "Research use only -
    not a medical device" was white on its pale yellow: contrast 1.01, unreadable. White on the orange buttons read at
    2.8, the open tab's name at 2.8, hints and placeholders at 1.9 (WCAG asks 4.5). Every visible text and empty
    field's placeholder of every tab, with a case analysed, is checked against what lies under it."""
    with browser_page(app_url, 1000, scheme) as page:
        _sample(page, "Lung CT: Adenocarcinoma")
        _wait_viewer(page)
        banner = page.get_by_text("Research use only - not a medical device").first
        assert banner.is_visible()
        for tab in ("Analyse", "Performance", "Reading session", "Feedback summary"):
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(1500)  # the tab's figures drawn
            assert page.evaluate(LOW_CONTRAST_JS) == [], (scheme, tab)
        _shot(page, f"contrast_{scheme}.png")


def test_pictures_and_figures_carry_text_for_a_screen_reader(page) -> None:  # noqa: ANN001
    """The scan, its heatmap and the overview had an empty text alternative, and every figure read "undefined plot
    visualising provided data" (keyboard and screen-reader walkthrough)."""
    from medimg_demo.web.ui.a11y import PICTURE_TEXT

    _sample(page, "Lung CT: Adenocarcinoma")
    _wait_viewer(page)
    alts = lambda box: page.eval_on_selector_all(f"{box} img", "els => els.map(e => e.alt)")  # noqa: E731
    page.wait_for_function("() => [...document.querySelectorAll('#viewer img')].every(i => i.alt)", timeout=10_000)
    assert alts("#viewer") == PICTURE_TEXT["#viewer"] and "red" in alts("#viewer")[1]
    assert alts("#overview") == PICTURE_TEXT["#overview"]
    page.get_by_role("tab", name="Performance").click()
    page.locator("#perf-confusion img").wait_for(timeout=RESULT_TIMEOUT)
    for box in ("#perf-confusion", "#perf-roc", "#perf-reliability"):
        page.wait_for_function("(b) => document.querySelector(b + ' img')?.alt && "
                               "!document.querySelector(b + ' img').alt.includes('undefined')", arg=box,
                               timeout=10_000)
        assert alts(box) == PICTURE_TEXT[box]
