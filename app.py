"""medimg_demo web app (Gradio): layout and events only; the work is done in ``medimg_demo.web``.

Run: ``python app.py`` (then open http://127.0.0.1:7860). Research use only, not a medical device.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-friendly: no telemetry calls
STARTED = time.time()

from medimg_demo import settings  # noqa: E402 - no Gradio, no torch

settings.one_line_start_errors()  # a bad setting stops the start with its message, not a traceback


def _default_upload_dir() -> str:
    """Gradio's upload cache, when the deployer sets none: a folder of this app's own under the system temp (one
    per state folder), outside MEDIMG_STATE_DIR, so that the start-up sweep never touches another app's files."""
    from medimg_demo.paths import DEFAULT_UPLOAD_PREFIX, state_dir

    key = hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"{DEFAULT_UPLOAD_PREFIX}{key}")


os.environ.setdefault("GRADIO_TEMP_DIR", _default_upload_dir())  # before gradio reads it

import gradio as gr  # noqa: E402 - after the telemetry switch
from starlette.middleware import Middleware  # noqa: E402

from medimg_demo.web.catalog import model_choices, model_versions  # noqa: E402
from medimg_demo.web import auth  # noqa: E402
from medimg_demo.imaging import isolated  # noqa: E402
from medimg_demo.imaging.decode import MAX_BYTES  # noqa: E402
from medimg_demo.web import expiry, files, lifecycle, outputs, upload_folders  # noqa: E402
from medimg_demo.web.ui.a11y import PAGE_JS  # noqa: E402
from medimg_demo.web.ui.analyse_tab import CSS as ANALYSE_CSS, analyse_tab  # noqa: E402
from medimg_demo.web.ui.common import BANNER, CONTRAST_CSS, VALIDATION_CSS, take_numbers_as_text, theme  # noqa: E402
from medimg_demo.web.ui.performance_tab import CSS as PERFORMANCE_CSS, performance_tab  # noqa: E402
from medimg_demo.web.ui.session_tab import session_tab  # noqa: E402
from medimg_demo.web.ui.summary_tab import summary_tab  # noqa: E402
from medimg_demo.web.session_binding import BindSessionsToLogins  # noqa: E402
from medimg_demo.web.request_limits import RequestSizeLimit  # noqa: E402
from medimg_demo.web.upload_names import AnonymousUploadNames  # noqa: E402
from medimg_demo.web.upload_progress import GuardUploadProgress  # noqa: E402
from medimg_demo.web.upload_share import UploadShare  # noqa: E402
from medimg_demo.web.export_owners import ExportsForTheirLogin  # noqa: E402
from medimg_demo.web.refusal import quiet_component_refusals  # noqa: E402
from medimg_demo.web.queue_share import QueueShare  # noqa: E402

log = logging.getLogger("medimg_demo.app")


def build_app() -> gr.Blocks:
    choices = model_choices()
    # delete_cache: Gradio removes the files of its cache it tracks after MAX_AGE_S; web.expiry's reaper and the stop
    # remove the rest (outputs of components shown with new properties, which Gradio does not track)
    age = int(outputs.MAX_AGE_S)
    # fill_width: the viewer and the tables use a wide screen (the reading room's) instead of a 1200 px column
    with gr.Blocks(title="medimg_demo - research use only", delete_cache=(max(60, age // 6), age),
                   fill_width=True) as demo:
        gr.HTML(BANNER)
        if auth.hf_oauth():
            gr.LoginButton()
        gr.Markdown("# medimg_demo\nUpload a scan to see the suggested tumor type, a stage, a guideline-based pathway and a Grad-CAM heatmap.")
        with gr.Tab("Analyse"):
            analyse_tab(choices)
        with gr.Tab("Performance") as perf:
            performance_tab(choices, perf)
        with gr.Tab("Reading session") as reading:
            session_tab(choices, reading)
        with gr.Tab("Feedback summary") as summary:
            summary_tab(summary)
    upload_folders.install(demo)  # each upload in a folder of its own: a request never deletes another's
    take_numbers_as_text()  # a rating sent as "4", as the API listing gives it, is 4
    quiet_component_refusals(demo)  # a forged choice: one line in the log, not a traceback with the value
    return demo


demo = build_app()


def launch_options() -> dict[str, Any]:
    """What ``demo.launch`` gets: served and blocked folders, logins, no run history, safe file answers."""
    files.check_layout()
    files.serve_in_place()
    return dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        allowed_paths=files.allowed_paths(),
        blocked_paths=files.blocked_paths(),
        auth=auth.gradio_auth(),
        auth_message="medimg_demo - research use only. Log in with the account the session owner gave you.",
        css="\n".join((PERFORMANCE_CSS, ANALYSE_CSS, VALIDATION_CSS, CONTRAST_CSS)),
        theme=theme(),  # Gradio's, with font files that hold every letter of bold text
        js=PAGE_JS,  # text alternatives of the pictures, announced validation messages (web/ui/a11y.py)
        run_history=False,  # the browser would keep file paths and comments for the next user of the workstation
        max_file_size=MAX_BYTES,  # MEDIMG_MAX_UPLOAD_MB, as the decoder reads it (a fraction of a megabyte too)
        # Gradio keeps about 340 KB per page (session hash), and any client can open pages: 1,000 pages at most
        # (the least recently used go first; a reading session resumes from the store), not Gradio's 10,000
        state_session_capacity=1000,
        app_kwargs={"middleware": [Middleware(files.SecureFileHeaders), Middleware(AnonymousUploadNames),
                                   Middleware(RequestSizeLimit),  # no megabytes of JSON kept in a session
                                   Middleware(UploadShare),  # a reader's raw uploads: so many MB per 2 minutes
                                   Middleware(ExportsForTheirLogin),  # a feedback export: its login's only
                                   Middleware(BindSessionsToLogins),  # a page's session hash: its login's only
                                   Middleware(GuardUploadProgress),  # upload ids: bounded, forgotten, bound
                                   Middleware(QueueShare)]},  # a reader's share of the queue, at join
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for line in model_versions():
        log.info("model %s", line)
    options = launch_options()
    # leftovers of an earlier run (a crash leaves raw uploads behind): anything untouched since before this start
    lifecycle.sweep(max_age_s=time.time() - STARTED + 5)
    kept = expiry.cache_baseline()  # what Gradio cached while building the app (initial values): kept for its life
    # raw uploads no request used go after MEDIMG_RAW_UPLOAD_TTL_S; cached outputs, working copies and public files
    # after MEDIMG_FILE_MAX_AGE_S, including those Gradio's own clean-up does not track
    expiry.start_reaper(demo, kept)
    isolated.start()  # the decode server (uploads decode in its children, with memory and time limits)
    # api_open=False: a queued event cannot be run through the REST route (POST /gradio_api/run/predict), which
    # would skip the concurrency limit that bounds memory (Gradio leaves that route open outside Spaces)
    # api_open=False: queued events only through the queue; max_size: one client cannot queue without limit
    demo.queue(default_concurrency_limit=settings.whole("MEDIMG_CONCURRENCY", 2, "calls of one event at once", low=1),
               api_open=False, max_size=settings.whole("MEDIMG_QUEUE_MAX", 64, "places in the queue", low=1))
    lifecycle.stop_like_ctrl_c()  # SIGTERM closes the server as Ctrl-C does, then the sweep below runs
    try:
        demo.launch(**options)
    finally:
        lifecycle.sweep_at_exit()  # working copies and Gradio's cached files do not wait for the next start
