"""What the app makes to serve (``web.outputs``): case reports under a readable name, and the pruning of the public
folder while other passes remove files in it too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from medimg_demo.web import expiry, outputs


def _file(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_report_handed_out_under_its_own_name_goes_with_its_folder(tmp_path: Path, monkeypatch) -> None:
    """A case report is published under a readable name, in a folder named by its keyed content hash (so that its
    address still cannot be guessed); the pruning removes the file, then the emptied folder, and nothing else."""
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    scratch = _file(tmp_path / "scratch" / "0123.pdf")
    name = "medimg-report_lung_ct_2026-11-29_21-15-03_UTC.pdf"
    out = Path(outputs.publish(scratch, name))
    assert out.name == name and outputs.HAND_OUT_DIR.fullmatch(out.parent.name)
    assert out.parent.parent == tmp_path / "state" / "public" / "published" and out.read_bytes() == b"x"
    assert Path(outputs.publish(scratch, name)) == out  # the same report again: the same hand-out
    twin = Path(outputs.publish(scratch, "medimg-report_lung_ct_2026-11-29_21-15-04_UTC.pdf"))
    assert twin.parent == out.parent  # the same bytes under another name: one folder, two files
    gallery = Path(outputs.publish(_file(tmp_path / "scratch" / "g.png")))  # no name: flat, as before
    for bad in ("../x.pdf", "a/b.pdf", "", ".hidden.pdf", "x" * 121, "..", "r\u00e9port.pdf", "x.pdf\n"):
        with pytest.raises(ValueError):
            outputs.publish(scratch, bad)
    then = time.time() - 7200
    os.utime(out, (then, then))
    assert expiry.expire_public(3600) == 1 and not out.exists() and twin.exists() and out.parent.is_dir()
    os.utime(twin, (then, then))
    os.utime(gallery, (then, then))
    assert expiry.expire_public(3600) == 2 and not out.parent.exists() and not gallery.exists()
    assert sorted(p.name for p in (tmp_path / "state" / "public").rglob("*")) == ["published"]


def test_a_hand_out_folder_removed_by_another_pass_while_listed_is_skipped(tmp_path: Path, monkeypatch) -> None:
    """The reaper thread and the stop's sweep prune the public folder at once: a hand-out folder the other removes
    while this one lists it had raised out of ``rglob`` and ended the stop's sweep before the unfinished uploads."""
    published = tmp_path / "published"
    gone, kept = _file(published / ("a" * 32) / "r1.pdf"), _file(published / ("b" * 32) / "r2.pdf")
    real = os.scandir

    def racing(path):  # noqa: ANN001, ANN202 - os.scandir's own signature
        if str(path).endswith("a" * 32):  # removed by the other pass between the listing of its parent and its own
            for p in (gone, gone.parent):
                p.unlink() if p.is_file() else p.rmdir()
        return real(path)

    monkeypatch.setattr(os, "scandir", racing)
    assert outputs._prune(published, "*", 0.0) == 1 and not kept.exists() and not kept.parent.exists()


def test_the_stop_sweeps_on_when_one_of_its_steps_fails(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.web import lifecycle

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    partial = _file(tmp_path / "uploads" / "tmpab12cd34")  # an upload cut off halfway

    def broken(max_age_s: float = 0.0) -> int:
        raise FileNotFoundError("changed while listed")

    monkeypatch.setattr(lifecycle, "expire_public", broken)
    lifecycle.sweep_at_exit()
    assert not partial.exists()


def test_a_failed_write_leaves_no_empty_hand_out_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))

    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "_write_atomic", full_disk)
    with pytest.raises(OSError):
        outputs.publish(_file(tmp_path / "r.pdf"), "medimg-report_lung_ct_2026-11-29_21-15-03_UTC.pdf")
    assert not list((tmp_path / "state" / "public" / "published").iterdir())
