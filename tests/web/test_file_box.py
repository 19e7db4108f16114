"""The file boxes leave nothing on disk when an event takes them (Gradio's gr.File leaves an empty file each time)."""

from __future__ import annotations

from pathlib import Path

from gradio.data_classes import FileData

from medimg_demo.web.ui import common
from medimg_demo.web.ui.common import file_box


def test_a_file_box_event_leaves_no_empty_file(tmp_path: Path, monkeypatch) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"x")
    box = file_box(label="Scan", file_count="single", type="filepath")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(box, "GRADIO_CACHE", str(cache))
    got = [box.preprocess(FileData(path=str(scan))) for _ in range(20)]
    assert got == [str(scan)] * 20 and all(g.name == str(scan) for g in got)
    assert list(cache.iterdir()) == []  # gr.File of Gradio 6.31: 20 empty tmp* files here
    assert not list(Path(common.__file__).parent.glob("*.pyi"))  # no stub written into the package on import
