"""The file boxes leave nothing on disk when an event takes them (Gradio's gr.File leaves an empty file each time)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData

from medimg_demo.web.ui import common


def test_a_file_box_event_leaves_no_empty_file(tmp_path: Path, monkeypatch) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"x")
    box = gr.File(label="Scan", file_count="single", type="filepath")  # after ui.common: the app's boxes
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(box, "GRADIO_CACHE", str(cache))
    got = [box.preprocess(FileData(path=str(scan))) for _ in range(20)]
    assert got == [str(scan)] * 20 and all(g.name == str(scan) for g in got)
    assert list(cache.iterdir()) == []  # gr.File of Gradio 6.31: 20 empty tmp* files here
    assert not list(Path(common.__file__).parent.glob("*.pyi"))  # no stub written into the package on import
    typed = gr.File(file_types=[".dcm"], type="filepath")  # a box that checks types: Gradio's own path, unchanged
    with pytest.raises(gr.Error, match="Invalid file type"):
        typed.preprocess(FileData(path=str(scan)))
