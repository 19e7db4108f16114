"""Two uploads of the same file share Gradio's path: each request releases its own, the file goes with the last."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from medimg_demo.web import uploads
from medimg_demo.web.upload_refs import UploadRefs, install


def _raw(folder: Path) -> Path:
    path = folder / ("a" * 64) / "uuuu.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"scan")
    return path


def test_the_file_stays_until_every_upload_of_it_is_released(tmp_path: Path) -> None:
    path = _raw(tmp_path)
    refs = UploadRefs()
    refs.update([str(path)])  # Gradio: one update per upload request, the same path twice
    refs.update([path])
    assert refs.waiting(path) == 2 and len(refs) == 2  # a str and a Path entry: Gradio's own set behaves so too
    uploads._forget_upload(path, refs)  # the first request is done
    assert path.exists() and refs.waiting(path) == 1
    uploads._forget_upload(path, refs)  # the second
    assert not path.exists() and not path.parent.exists() and refs.waiting(path) == 0 and not refs


def test_an_upload_no_request_used_goes_by_age_whatever_its_count(tmp_path: Path) -> None:
    path = _raw(tmp_path)
    refs = UploadRefs([str(path), str(path)])  # one entry, counted twice
    assert len(refs) == 1 and refs.waiting(path) == 2
    assert uploads.expire_raw_uploads(refs, ttl_s=-1) == 1
    assert not path.exists() and not refs and refs.waiting(path) == 0


def test_counts_of_entries_gradio_removed_do_not_pile_up(monkeypatch) -> None:
    import medimg_demo.web.upload_refs as mod

    monkeypatch.setattr(mod, "_SLACK", 3)
    refs = UploadRefs()
    for i in range(10):
        refs.update([f"/nowhere/{i}"])
        refs -= {f"/nowhere/{i}"}  # Gradio's clean-up: an in-place difference, which does not see the counts
    assert len(refs) == 0 and len(refs._counts) <= 4


def test_install_replaces_the_set_in_both_of_gradio_s_references() -> None:
    gradio_set: set[str] = {"/up/x"}
    other: set[str] = set()
    blocks = SimpleNamespace(upload_file_set=gradio_set, temp_file_sets=[gradio_set, other])
    refs = install(blocks)
    assert blocks.upload_file_set is refs and blocks.temp_file_sets[0] is refs and blocks.temp_file_sets[1] is other
    assert "/up/x" in refs and refs.waiting("/up/x") == 1
