"""What a batch run lists (thirty-eighth session's review of the command line): symbolic links neither loop nor lead
out of the input unless asked, special files are never opened, and the run's own table is never scored."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from medimg_demo.batch.listing import list_files
from medimg_demo.errors import InputError


def _rels(root: Path, **kwargs) -> list[str]:  # noqa: ANN003
    return [rel for _, rel, _, _ in list_files(root, **kwargs)]


def test_links_neither_loop_nor_lead_out_of_the_input(tmp_path: Path, caplog) -> None:
    src, outside = tmp_path / "in", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    outside.mkdir()
    (src / "a.png").write_bytes(b"a")
    (src / "sub" / "b.png").write_bytes(b"b")
    (outside / "theirs.png").write_bytes(b"c")
    (src / "loop").symlink_to(".")  # one such link had listed a.png 41 times; two, without end
    (src / "sub" / "up").symlink_to("..")
    (src / "passwd.dcm").symlink_to("/etc/passwd")  # had been opened and its size stored
    (src / "elsewhere").symlink_to(outside)  # its image had been scored as elsewhere/theirs.png
    (src / "alias.png").symlink_to(src / "sub" / "b.png")  # a link to a file inside: listed
    (src / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(src / "pipe.png")  # a FIFO would block the reader: never listed
    with open(os.fsencode(src) + b"/bad\xff.png", "wb") as f:  # not UTF-8: had stopped the run with a traceback
        f.write(b"x")
    with caplog.at_level(logging.WARNING):
        assert _rels(src) == ["a.png", "alias.png", "sub/b.png"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "4 symbolic links to folders or out of the input were skipped (--follow-links" in warned
    assert "1 entries that could not be read" in warned and "1 files whose names are not UTF-8" in warned
    # asked to follow: each folder once whatever the links (no loop), the outside ones too
    assert _rels(src, follow_links=True) == ["a.png", "alias.png", "elsewhere/theirs.png", "passwd.dcm", "sub/b.png"]


def test_the_runs_own_table_its_parts_and_temporary_file_are_not_listed(tmp_path: Path) -> None:
    """A table written inside its input had been scored as an error row on every rerun."""
    (tmp_path / "a.png").write_bytes(b"a")
    out = tmp_path / "results.parquet"
    for p in (out, tmp_path / "results.parquet.tmp", tmp_path / "results.parquet.parts" / "part-1.parquet"):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"PAR1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.parquet").symlink_to(out)  # the table under another name (re-test of the fixes)
    (tmp_path / "sub" / "p.parquet").symlink_to(tmp_path / "results.parquet.parts" / "part-1.parquet")  # a part
    exclude = (out, tmp_path / "results.parquet.tmp", tmp_path / "results.parquet.parts")
    assert _rels(tmp_path, exclude=exclude) == ["a.png"]
    assert len(_rels(tmp_path)) == 6  # another run's table is a file like any other


def test_an_object_store_that_cannot_be_reached_is_a_message_without_its_credentials() -> None:
    uri = "s3://AKIAKEY:wJalrSECRET@bucket/prefix?endpoint_override=127.0.0.1:9&scheme=http&connect_timeout=1"
    with pytest.raises(InputError) as info:
        list_files(uri)
    text = str(info.value)
    assert "s3://bucket/prefix" in text and "SECRET" not in text and "AKIAKEY" not in text and "\n" not in text


def test_a_table_inside_its_input_is_not_scored_on_the_rerun(tiny_registry: Path, tmp_path: Path) -> None:
    from medimg_demo.batch.pipeline import run_batch

    from conftest import gradient, png_bytes

    for i in range(3):
        (tmp_path / f"img{i}.png").write_bytes(png_bytes((gradient() * (80 + 40 * i)).astype("uint8")))
    out, heat = tmp_path / "results.parquet", tmp_path / "heat"  # its heatmaps inside the input too
    run = dict(registry=tiny_registry, use_ray=False, prefer_onnx=False, heatmaps=heat)
    first = run_batch(tmp_path, "lung_ct.tiny_v0", out, **run)
    again = run_batch(tmp_path, "lung_ct.tiny_v0", out, **run)
    assert first.done == 3 and again.done == 0 and again.skipped == 3 and "nothing new" in again.line()


def test_a_link_swapped_in_after_the_listing_is_not_followed(tmp_path: Path) -> None:
    """Each file was opened by name, links followed: a PNG swapped for a link to an outside DICOM between listing
    and reading was scored under the inside name (re-test of the fixes, a race in one run of six)."""
    from medimg_demo.batch.pipeline import read_blob

    src, outside = tmp_path / "in", tmp_path / "outside.dcm"
    src.mkdir()
    (src / "z.png").write_bytes(b"png")
    outside.write_bytes(b"theirs")
    (src / "alias.png").symlink_to(src / "z.png")
    listed = {rel: path for path, rel, _, _ in list_files(src)}
    assert read_blob(listed["alias.png"]) == b"png"  # a listed link is read through its real path
    (src / "z.png").unlink()
    (src / "z.png").symlink_to(outside)
    with pytest.raises(OSError):
        read_blob(listed["z.png"])
    (src / "z.png").unlink()
    os.mkfifo(src / "z.png")  # a FIFO swapped in: refused at once, not waited on
    with pytest.raises(OSError, match="not a regular file"):
        read_blob(listed["z.png"])
    (src / "deep").mkdir()  # a folder above the file swapped for a link (second read of the change)
    (src / "deep" / "y.png").write_bytes(b"png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y.png").write_bytes(b"theirs")
    listed = {rel: path for path, rel, _, _ in list_files(src)}
    (src / "deep").rename(tmp_path / "deep_moved")
    (src / "deep").symlink_to(tmp_path / "elsewhere")
    if Path("/proc/self/fd").is_dir():
        with pytest.raises(OSError, match="moved since it was listed"):
            read_blob(listed["deep/y.png"])
