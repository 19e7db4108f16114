"""The reading session and the feedback summary in headless Chromium (Debian's /usr/bin/chromium via Playwright):
an own read without an answer is refused on screen and does not advance; with answers the model is revealed beside
the reader's call; the summary shows the multi-reader verdict for a seeded 3 readers x 20 cases study.
Screenshots: artifacts/browser_session_reveal.png and artifacts/browser_feedback_summary.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LUNG, REPO
from test_browser import CHROMIUM, browser_page, running_app
from test_reading_session import seed_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # each starts the app and Chromium; .ci/run runs them
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
    pytest.mark.skipif(not (LUNG / "manifest.csv").is_file(), reason="shared lung data not found"),
]
ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on the bundled default model, its store seeded with a 3 readers x 20 cases study."""
    state = tmp_path_factory.mktemp("state")
    seed_study(state / "feedback.sqlite", "study-2026", readers=3, cases=20, seed=3)
    drop = ("MEDIMG_FEEDBACK_DB", "MEDIMG_DB_URL", "MEDIMG_AUTH", "MEDIMG_AUTH_FILE", "MEDIMG_HF_OAUTH")
    with running_app(state, tmp_path_factory.mktemp("app"), drop) as url:
        yield url


@pytest.fixture()
def page(app_url: str):  # noqa: ANN201
    with browser_page(app_url, 1000) as pg:
        yield pg


def _error_shown(page, text: str) -> None:  # noqa: ANN001
    """The message that an answer is missing, shown on the page (beside its field) and announced (role alert: a
    screen reader had heard nothing)."""
    page.get_by_text(text).first.wait_for(state="visible", timeout=30_000)
    page.get_by_role("alert").filter(has_text=text).first.wait_for(state="visible", timeout=5_000)


def _choose(page, dropdown_label: str, option: str) -> None:  # noqa: ANN001
    page.get_by_label(dropdown_label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_answers_are_required_and_the_reveal_shows_both_calls(page) -> None:  # noqa: ANN001
    page.get_by_role("tab", name="Reading session").click()
    page.get_by_label("Reader pseudonym").last.fill("browser01")
    page.get_by_label("Session id").last.fill("browser-required")
    page.get_by_label("Cases").last.fill("3")
    page.get_by_role("button", name="Start or resume session").click()
    page.locator("#session-progress").get_by_text("Case 1 of 3").wait_for(timeout=60_000)
    own_first = "() => document.activeElement?.matches?.('#session-own-read input[type=radio]')"
    page.wait_for_function(own_first, timeout=5_000)  # the first answer to give has the focus
    record = page.get_by_role("button", name="Record my read and show the model")
    model_panel = page.get_by_text("2. The model's output")

    # the own read beside the case, not under it (on a 1440x900 screen it had been below the fold)
    case, form = page.locator("#session-case").bounding_box(), page.locator("#session-own-read").bounding_box()
    assert form["x"] >= case["x"] + case["width"] and form["y"] < case["y"] + case["height"], (case, form)
    record.click()  # no answer at all
    _error_shown(page, "Choose the tumor type")
    page.get_by_label("Adenocarcinoma", exact=True).check()
    record.click()  # a type but no stage
    _error_shown(page, "Choose the stage")
    assert page.locator("#session-progress").get_by_text("Case 1 of 3").is_visible() and not model_panel.is_visible()
    # the message sits above the stage choices, not over them (Gradio's layer had hidden them)
    message = page.get_by_text("Choose the stage").first.bounding_box()
    choice = page.get_by_label("Stage IIIA", exact=True).locator("xpath=..").bounding_box()
    assert message["y"] + message["height"] <= choice["y"], (message, choice)

    page.get_by_label("Stage IIIA", exact=True).check()
    own_confidence = page.locator("#session-own-confidence")
    assert not own_confidence.locator("input:checked").count()  # no rating until the reader gives one
    own_confidence.get_by_label("4", exact=True).check()
    record.click()
    model_panel.wait_for(state="visible", timeout=90_000)
    compare = page.locator("#session-compare")
    compare.get_by_text("Your read:").wait_for(timeout=30_000)
    text = compare.inner_text()
    assert "Adenocarcinoma, Stage IIIA (confidence 4/5)" in text and "Model:" in text and "_" not in text
    # the focus goes to the comparison (the Record button it was on had gone: it fell to the page's top)
    page.wait_for_function("() => document.activeElement?.closest?.('#session-compare')", timeout=5_000)
    page.wait_for_function("() => document.querySelector('#session-case img')?.alt === 'The case to read' && "
                           "document.querySelector('#session-heatmap img')?.alt.includes('Grad-CAM')", timeout=5_000)
    before = page.locator("#session-case img").get_attribute("src")
    page.locator("#session-zoom").get_by_label("2x", exact=True).check()  # zoom, drawn on the server
    page.wait_for_function("([b]) => { const i = document.querySelector('#session-case img'); "
                           "return i && i.src !== b; }", arg=[before], timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_session_reveal.png"), full_page=True)

    submit = page.get_by_role("button", name="Submit my answer and go to the next case")
    submit.click()  # no agree / disagree
    _error_shown(page, "agree with the model")
    page.locator("#session-type-agree").get_by_label("Disagree", exact=True).check()
    submit.click()  # disagreeing without a type
    _error_shown(page, "choose the type")
    assert page.locator("#session-progress").get_by_text("Case 1 of 3").is_visible()
    _choose(page, "Your type, if you disagree (required then)", "Normal")
    submit.click()
    page.locator("#session-progress").get_by_text("Case 2 of 3").wait_for(timeout=60_000)
    assert not page.locator("#session-own-confidence input:checked").count()  # the last case's rating is not kept
    # and then to the next own read's first answer (36 Tabs away from the page's top)
    page.wait_for_function(own_first, timeout=5_000)
    # case 2 opens whole: case 1's 2x zoom had opened it as a crop of its centre during the own read
    assert page.locator("#session-zoom").get_by_label("1x", exact=True).is_checked()


def test_a_reload_offers_the_last_session_and_resumes_beside_the_model(page) -> None:  # noqa: ANN001
    """A page reloaded after the own read (the model seen) had come back at "session-1", 20 cases, seed 0, and,
    once the session was typed again, at a blank own-read form that refused any read but the stored one: now the
    form offers the last session and resuming shows the model beside the stored read."""
    page.get_by_role("tab", name="Reading session").click()
    page.get_by_label("Reader pseudonym").last.fill("browser02")
    page.get_by_label("Session id").last.fill("browser-reload")
    page.get_by_label("Cases").last.fill("3")
    page.get_by_label("Seed").last.fill("5")
    page.get_by_role("button", name="Start or resume session").click()
    page.locator("#session-progress").get_by_text("Case 1 of 3").wait_for(timeout=60_000)
    page.get_by_label("Cannot assess", exact=True).check()
    page.get_by_role("button", name="Record my read and show the model").click()
    page.get_by_text("2. The model's output").wait_for(state="visible", timeout=90_000)

    page.reload()
    page.locator("button.primary", has_text="Analyse").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Reading session").click()
    page.wait_for_function("() => [...document.querySelectorAll('input, textarea')].some(i => i.value === "
                           "'browser-reload')", timeout=30_000)
    assert page.get_by_label("Cases").last.input_value() == "3" and page.get_by_label("Seed").last.input_value() == "5"
    page.get_by_label("Reader pseudonym").last.fill("browser02")  # without logins the reader names themself
    page.get_by_role("button", name="Start or resume session").click()
    page.get_by_text("2. The model's output").wait_for(state="visible", timeout=90_000)
    assert "Your read: Cannot assess" in page.locator("#session-compare").inner_text()
    assert not page.get_by_role("button", name="Record my read and show the model").is_visible()


def test_feedback_summary_shows_the_reader_study(page) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Feedback summary").click()
    page.get_by_role("button", name="Refresh").click()
    verdict = page.locator("#mrmc-verdict")
    verdict.get_by_text("Obuchowski-Rockette").wait_for(timeout=60_000)
    assert "3 readers x 20 cases" in verdict.inner_text() and "95% CI" in verdict.inner_text()
    table = page.locator("#reader-study-table")
    expect(table).to_contain_text("All readers", timeout=30_000)
    expect(table).to_contain_text("Accuracy unaided")
    page.locator("#reader-study-plot img").wait_for(timeout=30_000)  # drawn (an empty frame when it failed)
    scrolled = page.eval_on_selector("#reader-study-table", """t => [t, ...t.querySelectorAll('*')].filter(e =>
        ['auto', 'scroll'].includes(getComputedStyle(e).overflowY) && e.scrollHeight > e.clientHeight + 2).length""")
    assert scrolled == 0  # every row in view: the last one had been hidden in a scroll box of 500 px
    assert not page.get_by_text("Export (CSV)", exact=True).first.is_visible()  # no empty file box
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_feedback_summary.png"), full_page=True)
    # the export's file box appears once it holds the CSV, with a link that downloads it
    page.get_by_role("button", name="Export reader-study table (CSV)").click()
    link = page.locator("a[href*='.csv']").first
    link.wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    header = Path(dl.value.path()).read_text().splitlines()[0].split(",")
    assert "reader" in header and len(Path(dl.value.path()).read_text().splitlines()) > 60  # 3 readers x 20 cases


def test_the_api_refuses_empty_answers(app_url: str) -> None:
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=False)
    client.predict("api03", "api-required", None, 2, 0, api_name="/session_start")
    with pytest.raises(Exception, match="Choose the tumor type"):
        client.predict(None, None, 3, api_name="/session_read")
    with pytest.raises(Exception):  # noqa: B017 - Gradio itself refuses a value that is not one of the choices
        client.predict("", "", 3, api_name="/session_read")
    client.predict("normal", "none", 3, api_name="/session_read")
    with pytest.raises(Exception, match="agree with the model"):
        client.predict(None, None, None, None, None, 3, 3, "", api_name="/session_feedback")
    with pytest.raises(Exception, match="one of this model's labels"):
        client.predict("Disagree", None, None, "Bronchitis", "", 3, 3, "", api_name="/session_feedback")
    client.predict("Agree", None, None, "", "", 3, 3, "", api_name="/session_feedback")  # as older clients send
