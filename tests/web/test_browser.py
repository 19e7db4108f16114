"""End to end in headless Chromium (Debian's /usr/bin/chromium via Playwright): upload, read, adjust, fail safely.

Skipped where Chromium or Playwright is absent; `.ci/run` installs both. A screenshot is kept in artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, lung_test_image

CHROMIUM = os.environ.get("MEDIMG_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # each starts the app and Chromium (about 30 s in all); .ci/run runs them
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
]
ARTIFACTS = REPO / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_app(state: Path, log_dir: Path, drop_env: tuple[str, ...] = ()) -> Iterator[str]:
    """The app as a subprocess on a free loopback port, ``state`` as its state folder (the variables in
    ``drop_env`` unset); yields its URL and stops it after."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", MEDIMG_STATE_DIR=str(state))
    with open(log_dir / "app.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(url, timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.5)
                if proc.poll() is not None:
                    pytest.fail(f"app exited early with code {proc.returncode}")
            else:
                pytest.fail("app did not start within 120 s")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def browser_page(url: str, height: int, color_scheme: str = "light") -> Iterator[Any]:
    """A Chromium page (Debian's binary) on the app, once its upload box is there; ``color_scheme``: the system's
    light or dark mode, which Gradio follows."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": height}, color_scheme=color_scheme)
            pg.goto(url)
            pg.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def app_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def app_url(app_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_app(app_state, tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture()
def page(app_url: str):  # noqa: ANN201
    with browser_page(app_url, 1700) as pg:
        yield pg


#: the Analyse button (not the tab of that name) takes clicks; the page's work holds it (analyse_tab.HOLD_JS)
ANALYSE_FREE = "() => { const b = document.querySelector('button.primary'); return !!b && !b.disabled; }"
HELD = """() => ({analyse: document.querySelector('button.primary').disabled,
  model: !!document.querySelector('#analyse-model input[disabled]'),
  file_box: !document.querySelector('#scan input[type=file]') && !document.querySelector('#scan button[aria-label=Clear]'),
  samples: getComputedStyle(document.querySelector('#samples')).pointerEvents === 'none'
           && document.querySelector('#samples').inert})"""  # inert: no Enter or Space on a focused sample


def _overlay_src(page) -> str:  # noqa: ANN001
    return page.locator("#viewer img").nth(1).get_attribute("src") or ""  # the compare slider's overlay


def _upload(page, path: Path) -> None:  # noqa: ANN001
    """Replace the current upload: gr.File hides its input once it holds a file, so clear it first."""
    if page.locator("input[type=file]").count() == 0:
        page.get_by_role("button", name="Clear").first.click()
        page.wait_for_selector("input[type=file]", state="attached", timeout=10_000)
    page.set_input_files("input[type=file]", str(path))


def test_upload_lung_ct_shows_type_stage_pathway_heatmap(page, tmp_path) -> None:  # noqa: ANN001
    _upload(page, lung_test_image())
    page.get_by_text("Stage group").wait_for(timeout=90_000)
    body = page.inner_text("body")
    assert "not a medical device" in body
    assert any(t in body for t in ("Adenocarcinoma", "Large cell carcinoma", "Squamous cell carcinoma", "Normal"))
    assert "learned through the type" in body
    assert "Source:" in body and "tumor board" in body
    imgs = page.locator("#viewer img")
    assert imgs.count() == 2
    before = _overlay_src(page)
    assert before

    # move the opacity slider: the overlay is redrawn without re-running the model
    slider = page.locator("input[type=range]").first
    box = slider.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function("(b) => { const i = document.querySelectorAll('#viewer img')[1]; return i && i.src !== b; }",
                           arg=before, timeout=30_000)
    # a value typed into the slider's box is drawn too (it has no release event)
    dragged = _overlay_src(page)
    typed = page.locator("#opacity input[type=number]")
    typed.fill("0.1")
    typed.press("Enter")
    page.wait_for_function("(b) => { const i = document.querySelectorAll('#viewer img')[1]; return i && i.src !== b; }",
                           arg=dragged, timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_lung_ct.png"), full_page=True)
    # the case report (the analysis above has finished: its overlay was just redrawn): a PDF link that downloads
    page.get_by_role("button", name="Download report (PDF)").click()
    link = page.locator("a[href*='.pdf']").first
    link.wait_for(timeout=60_000)
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    pdf = Path(dl.value.path())
    assert pdf.read_bytes().startswith(b"%PDF") and lung_test_image().stem not in dl.value.suggested_filename

    # a bad file: a visible error, and the app keeps serving
    bad = tmp_path / "not_a_scan.png"
    bad.write_text("this is a text file, not an image\n" * 10)
    _upload(page, bad)
    page.get_by_text("not a recognised image").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "browser_bad_file.png"), full_page=True)
    # held while the upload was being cleaned (analyse_tab's HOLD_JS), working again once it was refused
    page.wait_for_function(ANALYSE_FREE, timeout=10_000)
    _upload(page, lung_test_image())
    page.get_by_text("Stage group").wait_for(timeout=60_000)


def test_feedback_corrections_are_chosen_from_the_models_labels(page, app_state: Path) -> None:  # noqa: ANN001
    """The reader corrects the call from lists of the model's classes under readable names; the store keeps labels."""
    import sqlite3

    page.wait_for_timeout(1000)  # the page settled: before any result there is no form to answer
    assert not page.get_by_role("button", name="Submit feedback").is_visible()
    assert not page.locator("#fb-type-agree").is_visible()
    _upload(page, lung_test_image())
    page.get_by_text("Stage group").wait_for(timeout=90_000)
    page.get_by_role("button", name="Submit feedback").wait_for(state="visible", timeout=10_000)
    page.get_by_label("Reader pseudonym").first.fill("browser02")
    page.get_by_label("Session id (optional)").first.fill("browser-correction")
    page.locator("#fb-type-agree").get_by_label("Disagree", exact=True).check()
    page.locator("#fb-stage-agree").get_by_label("Disagree", exact=True).check()
    page.get_by_label("Your type, if you disagree").first.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    assert sorted(options.all_inner_texts()) == ["Adenocarcinoma", "Large cell carcinoma", "Normal",
                                                 "Squamous cell carcinoma"]
    page.get_by_role("option", name="Squamous cell carcinoma", exact=True).click()
    page.get_by_label("Your stage, if you disagree").first.click()
    page.get_by_role("option", name="Stage IIIA", exact=True).click()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_feedback_correction.png"), full_page=True)
    page.get_by_role("button", name="Submit feedback").click()
    page.get_by_text("feedback #").first.wait_for(timeout=30_000)
    con = sqlite3.connect(app_state / "feedback.sqlite")
    try:
        row = con.execute("SELECT type_agree, corrected_type, corrected_stage FROM feedback WHERE session_id = ?",
                          ("browser-correction",)).fetchone()
    finally:
        con.close()
    assert row == (0, "squamous_cell_carcinoma", "IIIa"), row


def test_an_image_of_another_task_is_refused_and_switched(page) -> None:  # noqa: ANN001
    """A brain MRI through the default lung CT model: a refusal card, no pathway, and a one-click switch."""
    import csv

    manifest = lung_test_image().parent.parent.parent / "brain_mri" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("brain data not found")
    with open(manifest, newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "test" and r["label"] == "glioma")
    _upload(page, manifest.parent / row["image"])
    page.get_by_text("Not an image for this model").wait_for(timeout=90_000)
    assert "Stage group" not in page.inner_text("body")
    # the feedback form asks whether naming no type was right, and nothing about a pathway or heatmap not shown
    page.locator("#fb-type-agree").get_by_text("The model named no tumor type").wait_for(timeout=10_000)
    assert not page.locator("#fb-pathway-agree").is_visible()
    assert not page.get_by_text("Heatmap plausibility").first.is_visible()
    # no heatmap: no compare handle (it compared the image with itself), no word of it, no "Heatmap peak" to zoom on
    assert not page.locator("#viewer [data-testid='slider']").is_visible()
    assert page.locator("#viewer [data-testid='imageslider-image']").first.is_visible()
    assert "Drag the handle" not in page.locator("#viewer-help").inner_text()
    assert not page.get_by_text("Heatmap peak", exact=True).is_visible()
    page.wait_for_function("() => window.medimgWork === 0", timeout=30_000)
    # named as the model list names it; a double click analyses once (a second analysis of the reader's would be
    # refused at join, and Gradio marked the outputs "Error" while the first one was still coming)
    page.get_by_role("button", name="Switch to Brain MRI v").dblclick()
    page.locator("#type-out").get_by_text("Glioma").first.wait_for(timeout=60_000)  # readable class names
    page.wait_for_function("() => window.medimgWork === 0", timeout=30_000)
    assert not page.get_by_text("Error", exact=True).count()
    # brain MRI is not staged by imaging: the feedback form asks nothing about a stage
    page.locator("#fb-stage-agree").wait_for(state="hidden", timeout=10_000)
    assert page.locator("#fb-type-agree").is_visible() and page.locator("#fb-pathway-agree").is_visible()
    assert page.locator("#fb-type-agree").get_by_text("Tumor type", exact=True).is_visible()
    assert page.get_by_text("Heatmap plausibility").first.is_visible()
    # a heatmap again: the handle, its help and the peak as the zoom centre are back
    assert page.locator("#viewer [data-testid='slider']").is_visible()
    assert "Drag the handle" in page.locator("#viewer-help").inner_text()
    assert page.get_by_text("Heatmap peak", exact=True).is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_refused_then_switched.png"), full_page=True)


def test_the_pages_own_work_holds_the_controls_that_would_start_more(page) -> None:  # noqa: ANN001
    """While an upload is cleaned and analysed, Analyse, the model, the file box and the samples take nothing (the
    server would refuse a second job of the reader, and Gradio marked the outputs "Error" while the first was still
    coming); all work again once it is done, and after a failed analysis too (Gradio's then does not follow one)."""
    _upload(page, lung_test_image())
    page.wait_for_function("() => document.querySelector('button.primary').disabled", timeout=10_000)
    assert page.evaluate(HELD) == dict(analyse=True, model=True, file_box=True, samples=True)
    page.get_by_text("Stage group").wait_for(timeout=90_000)
    page.wait_for_function(ANALYSE_FREE, timeout=10_000)
    held = page.evaluate(HELD)
    assert held == dict(analyse=False, model=False, file_box=False, samples=False), held
    # a failed analysis (no file) lets go too: before, the page stayed held for good
    page.get_by_role("button", name="Clear").first.click()
    page.wait_for_selector("input[type=file]", state="attached", timeout=10_000)
    page.locator("button.primary", has_text="Analyse").click()
    page.get_by_text("Upload a scan first").first.wait_for(timeout=30_000)
    page.wait_for_function("() => window.medimgWork === 0", timeout=30_000)
    assert page.evaluate(HELD)["analyse"] is False and page.evaluate(HELD)["samples"] is False


def test_a_keyboard_reader_keeps_the_focus_and_sees_it(page) -> None:  # noqa: ANN001
    """A held control lost the focus (a disabled button, the inert sample cases) to the top of the page, where a
    screen reader read on; radios and sliders showed no focus ring (keyboard walkthrough)."""
    active = "() => document.activeElement && document.activeElement.innerText"
    sample = page.get_by_role("button", name="Lung CT: Adenocarcinoma", exact=True)
    sample.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement === document.body", timeout=10_000)  # held
    page.locator("#type-out").get_by_text("Adenocarcinoma").first.wait_for(timeout=90_000)
    page.wait_for_function("() => window.medimgWork === 0", timeout=30_000)
    page.wait_for_function(f"() => ({active})() === 'Lung CT: Adenocarcinoma'", timeout=5_000)  # given back
    page.locator("#analyse-run").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement === document.body", timeout=10_000)  # held
    page.wait_for_function("() => window.medimgWork === 0 && document.activeElement?.id === 'analyse-run'",
                           timeout=90_000)
    page.keyboard.press("Tab")
    assert page.evaluate(active) == "Download report (PDF)"  # on from where it was, not from the page's top
    # the model list, left by Tab, closes: it had stayed open over Analyse and the report button; and tabbing
    # through it leaves the case on screen (Gradio sends the list's value on leaving it: the case had been wiped)
    listed = "() => [...document.querySelectorAll('[role=listbox]')].filter(e => e.offsetParent).length"
    page.locator("#analyse-model input").focus()
    page.keyboard.press("Tab")
    page.wait_for_function(f"() => ({listed})() === 0", timeout=5_000)
    assert page.evaluate("() => document.activeElement.id") == "analyse-run"
    page.wait_for_timeout(1_500)  # what the list's leaving sent has been answered
    assert page.locator("#type-out").get_by_text("Adenocarcinoma").first.is_visible()
    assert "Model changed" not in page.locator("#analysis-notes").inner_text()
    for selector in ("#opacity input[type=range]", "input[type=radio][value='2x']"):
        page.locator(selector).focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # back by keyboard: :focus-visible
        ring = page.evaluate("() => [getComputedStyle(document.activeElement).outlineStyle, "
                             "parseFloat(getComputedStyle(document.activeElement).outlineWidth)]")
        assert ring[0] != "none" and ring[1] >= 2, (selector, ring)
    # a file chosen from the upload box: Gradio replaces the box's button with the file, and the focus had fallen to
    # the page; it comes back to the box (its file's link)
    if page.locator("input[type=file]").count() == 0:
        page.get_by_role("button", name="Clear").first.click()
        page.wait_for_selector("input[type=file]", state="attached", timeout=10_000)
    page.get_by_role("button", name="Click to upload or drop files").focus()
    page.set_input_files("input[type=file]", str(lung_test_image()))
    page.wait_for_function("() => window.medimgWork > 0", timeout=10_000)
    page.wait_for_function("() => window.medimgWork === 0 && !!document.activeElement.closest('#scan')",
                           timeout=90_000)


def test_reading_session_of_20_cases_in_the_browser(page, tmp_path) -> None:  # noqa: ANN001
    """A reader walks through 20 cases: own call first, then the model's output, then feedback."""
    page.get_by_role("tab", name="Reading session").click()
    page.get_by_label("Reader pseudonym").last.fill("browser01")
    page.get_by_label("Session id").last.fill("browser-session")
    assert not page.locator("#session-case").is_visible()  # no empty case frames before the session starts
    page.get_by_role("button", name="Start or resume session").click()
    for i in range(20):
        page.locator("#session-progress").get_by_text(f"Case {i + 1} of 20").wait_for(timeout=60_000)
        page.get_by_label("Adenocarcinoma", exact=True).check()
        page.get_by_label("Stage IIIA", exact=True).check()
        page.get_by_role("button", name="Record my read and show the model").click()
        page.get_by_text("2. The model's output").wait_for(state="visible", timeout=60_000)
        page.locator("#session-type-agree").get_by_label("Agree", exact=True).check()
        page.get_by_role("button", name="Submit my answer and go to the next case").click()
    page.get_by_text("Session complete").wait_for(timeout=60_000)
    page.locator("#session-case").wait_for(state="hidden", timeout=10_000)  # no empty frames left behind
    assert "Feedback summary" in page.locator("#session-progress").inner_text()  # where the results are
    assert not page.get_by_text("Display: window and zoom").is_visible()
    page.screenshot(path=str(ARTIFACTS / "browser_session_done.png"), full_page=True)


# 20 cases through the API, about 12 s
def test_reading_session_and_feedback_through_the_api(app_url: str) -> None:
    """The same flow through gradio_client (state is kept per client session), plus /predict and /feedback."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=False)
    client.predict("api01", "api-session", None, 20, 0, api_name="/session_start")
    for _ in range(20):
        client.predict("squamous_cell_carcinoma", "IIIa", 4, api_name="/session_read")
        client.predict("Agree", "Agree", "Disagree", "", "", 4, 3, "", api_name="/session_feedback")
    summary = client.predict(api_name="/feedback_summary")
    rows = summary["data"] if isinstance(summary, dict) else summary
    header = summary["headers"] if isinstance(summary, dict) else None
    assert rows, summary
    if header:
        rec = {r[header.index("session_id")]: r for r in rows}
        assert rec["api-session"][header.index("aided_reads")] == 20
    result = client.predict(handle_file(str(lung_test_image())), None, api_name="/predict")
    prediction = result[7]
    # the ratings as the API listing gives them (Literal['1', ..., '5']): as text, refused before
    msg = client.predict(prediction, "api01", "api-free", "Agree", "Agree", "Agree", "", "", "5", "4", "fine",
                         api_name="/feedback")
    assert "stored" in msg


def test_documented_http_api_returns_labels_and_images(app_url: str) -> None:
    """Gradio's plain HTTP API (what benchmarks/api_roundtrip.py times): upload, call, event stream, PNGs."""
    import httpx

    sys.path.insert(0, str(REPO / "benchmarks"))
    from api_roundtrip import http_predict

    from medimg_demo.models.registry import get_model
    from medimg_demo.tasks import get_task

    with httpx.Client(base_url=app_url.rstrip("/"), timeout=60) as client:
        cfg = get_model(None)
        out = http_predict(client, str(lung_test_image()), cfg.id)
        # the Label shows readable names ("Adenocarcinoma"); the JSON keeps the model's labels ("adenocarcinoma")
        assert out[0]["label"] in {get_task(cfg.task).label_name(label) for label in cfg.type_labels}
        assert out[7]["type"]["label"] in cfg.type_labels
        for image in out[4:6]:
            png = client.get(image["url"])
            assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
