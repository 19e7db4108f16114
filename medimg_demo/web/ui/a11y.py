"""What a screen reader is told that Gradio's widgets leave out (keyboard and screen-reader walkthrough): its
pictures carried an empty text alternative (the scan, the heatmap, the overview that is clicked to zoom, a reading
session's case) or "undefined plot visualising provided data" (every figure), a missing answer's message appeared
without being announced, and download links were named by size or not at all. And a drop-down list left by the Tab
key stayed open over the controls below it (the model list over Analyse and the report button). :data:`PAGE_JS`
runs once in the browser when the page loads: it keeps the texts filled in as Gradio redraws the page, and closes a
list whose field the focus has left; it also keeps the last focused control, for the focus to come back to its box
when Gradio has removed it (``analyse_tab.HOLD_JS``)."""

from __future__ import annotations

import json

#: Pictures by the box that holds them: the text alternative of its first, second, ... picture (the last one for any
#: beyond). The heatmap's colours are named, as the colour bar drawn into the picture says them to the eye.
HEATMAP = "red: regions that raised the class's score most, blue: least"
PICTURE_TEXT: dict[str, list[str]] = {
    "#viewer": ["The scan", f"The scan under the model's Grad-CAM heatmap ({HEATMAP})"],
    "#overview": [f"Overview of the scan and its heatmap ({HEATMAP}), the zoomed region outlined: click to zoom there"],
    "#session-case": ["The case to read"],
    "#session-heatmap": [f"The model's Grad-CAM heatmap over the case ({HEATMAP})"],
    "#perf-confusion": ["Confusion matrix on the test split: true class by row, predicted class by column"],
    "#perf-roc": ["ROC curves per class on the test split, one against the rest"],
    "#perf-reliability": ["Reliability diagram: accuracy against confidence, before and after calibration"],
    "#reader-study-plot": ["Each reader's accuracy unaided and aided by the model, with 95% intervals"],
}

#: Download links by where they are: their names (Gradio named a file's by its size, "268.7 KB", and a picture's by
#: nothing).
LINK_TEXT: dict[str, str] = {
    "#report-file a": "Download the case report (PDF)",
    "#deid-file a": "Download the de-identified DICOM copy",
    "#viewer a[data-testid=download-link]": "Download the picture shown",
    "#overview a[data-testid=download-link]": "Download the overview picture",
}

PAGE_JS = """() => {
  const texts = %s, links = %s;
  const fill = () => {
    for (const e of document.querySelectorAll('.validation-error:not([role]):not(input):not(textarea)')) {
      e.setAttribute('role', 'alert');  // the message; Gradio marks a text field itself with the class too
    }
    for (const [where, name] of Object.entries(links)) {
      document.querySelectorAll(where).forEach(a => {
        if (a.getAttribute('aria-label') !== name) a.setAttribute('aria-label', name);
      });
    }
    for (const [box, alts] of Object.entries(texts)) {
      document.querySelectorAll(box + ' img').forEach((img, i) => {
        const text = alts[Math.min(i, alts.length - 1)];
        if (img.getAttribute('alt') !== text) img.setAttribute('alt', text);
      });
    }
  };
  new MutationObserver(fill).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ['src']});
  fill();
  document.addEventListener('focusin', (event) => {
    // the last control focused and its box: a control Gradio then removes (the upload box's button, once a file is
    // chosen) hands the focus to its box when the page's work lets go (analyse_tab.HOLD_JS)
    window.medimgLastFocus = {el: event.target, box: event.target.closest?.('.block[id]') || null};
    setTimeout(() => {
      for (const list of document.querySelectorAll('[role=listbox]')) {
        const box = list.closest('.block'), field = box && box.querySelector('input');
        if (list.offsetParent && field && !box.contains(document.activeElement)) {  // Escape: closed, nothing sent
          field.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));
        }
      }
    }, 0);
  });
}""" % (json.dumps(PICTURE_TEXT), json.dumps(LINK_TEXT))
