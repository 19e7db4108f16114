"""Files named on the command line (thirty-eighth session's review of it): an input is never overwritten, an existing
output only when asked, a bad output is refused before any model runs, a second run never rewrites a file an earlier
run's JSON names, and paths are printed without control characters or credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medimg_demo.cli import main
from medimg_demo.cli_files import new_file, output_file, output_folder, shown
from medimg_demo.errors import InputError

from conftest import png_bytes, gradient


def test_printed_paths_cannot_forge_a_log_line_or_show_a_secret() -> None:
    assert shown("scan\nINFO medimg_demo: 7 files scored\x1b[8m") == "scan\\nINFO medimg_demo: 7 files scored\\x1b[8m"
    assert shown("a\u202eb") == "a\\u202eb"  # a bidirectional override would reorder what is shown
    assert shown("s3://AKIAKEY:wJalrSECRET@bucket/prefix?region=x&secret_key=y") == "s3://bucket/prefix"
    assert shown("hdfs://alice:S3cretPW@namenode:8020/archive") == "hdfs://namenode:8020/archive"
    assert shown("s3://AKIAKEY:wJalr/XUtnFEMI@bucket/prefix") == "s3://bucket/prefix"  # a "/" in the secret key
    assert shown("s3://12345/secret@bucket/p") == "s3://bucket/p"
    assert shown("Müller/scan 1.dcm") == "Müller/scan 1.dcm"  # letters of any alphabet stay as they are


def test_an_output_is_never_an_input_and_replaces_a_file_only_when_asked(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"scan")
    (tmp_path / "link.png").symlink_to(scan)
    os.link(scan, tmp_path / "hard.png")
    check = dict(option="--out", what="a PNG file name", example="overlay.png", suffixes=(".png",))
    for same in (scan, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "." / "scan.png"):
        with pytest.raises(InputError, match="is the input"):
            output_file(same, [scan], overwrite=True, **check)  # not even with --overwrite
    with pytest.raises(InputError, match="is a folder: give a PNG file name, e.g. .*overlay.png"):
        output_file(tmp_path, [scan], **check)
    with pytest.raises(InputError, match="ending in .png"):
        output_file(tmp_path / "o.txt", [scan], **check)
    with pytest.raises(InputError, match="does not exist; create it first"):
        output_file(tmp_path / "no" / "o.png", [scan], **check)
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(InputError, match="exists: give another file name, or add --overwrite"):
        output_file(tmp_path / "old.png", [scan], **check)
    assert output_file(tmp_path / "old.png", [scan], overwrite=True, **check) == tmp_path / "old.png"
    assert scan.read_bytes() == b"scan"
    with pytest.raises(InputError, match="is a file: give a folder"):
        output_folder(scan, option="--lesion-masks")
    assert output_folder(tmp_path / "a" / "b", option="--lesion-masks").is_dir()


def test_log_lines_quote_paths_on_one_line() -> None:
    """``evaluate --data`` with a newline and an escape had printed a forged log line (re-test of the fixes)."""
    import logging

    from medimg_demo.cli_files import OneLineFormatter
    from medimg_demo.errors import on_the_command_line

    record = logging.LogRecord("medimg_demo", logging.ERROR, __file__, 1, "No manifest.csv in %s", ("/x\nINFO y\x1b[31m",),
                               None)
    line = OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "ERROR medimg_demo: No manifest.csv in /x\\nINFO y\\x1b[31m" and "\n" not in line


def test_an_output_that_is_a_link_is_refused_even_dangling(tmp_path: Path) -> None:
    """A dangling --heatmap-out link passed the "exists" check and the overlay was written where it pointed."""
    (tmp_path / "o.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="is a symbolic link"):
        output_file(tmp_path / "o.png", [], option="--heatmap-out", what="a PNG file name", example="overlay.png",
                    overwrite=True)
    assert not (tmp_path / "elsewhere.png").exists()


def test_new_files_are_numbered_on_never_rewriting_or_reusing_a_name(tmp_path: Path) -> None:
    names = [new_file(tmp_path, "lesion_mask", ".png").name for _ in range(3)]
    assert names == ["lesion_mask_00000.png", "lesion_mask_00001.png", "lesion_mask_00002.png"]
    (tmp_path / "lesion_mask_00002.png").unlink()  # deleted: an earlier JSON may still name it
    (tmp_path / "lesion_mask_00007.png").write_bytes(b"")
    assert new_file(tmp_path, "lesion_mask", ".png").name == "lesion_mask_00008.png"


@pytest.mark.parametrize("argv,says", [
    (["report", "{scan}", "--out", "{scan}"], "is the input"),  # the scan had become a 2-page PDF, exit 0
    (["report", "{scan}", "--out", "{old}"], "exists: give another file name, or add --overwrite"),
    (["report", "{scan}", "--out", "{missing}/r.pdf"], "does not exist; create it first"),  # had made the folder
    (["predict", "{scan}", "--heatmap-out", "{scan}"], "is the input"),  # replaced by its own overlay, exit 0
    (["predict", "{scan}", "--heatmap-out", "{dir}/h.txt"], "ending in .png"),  # was PIL's ValueError traceback
    (["predict", "{scan}", "{scan}", "--lesion-masks", "{old}"], "is a file: give a folder"),  # had lost all JSON
    (["deidentify", "{scan}", "--out", "{old}"], "exists: give another file name"),
    (["deidentify", "{dir}/nothing.dcm", "--out", "{dir}/x.dcm"], "No such file"),  # was "upload it again"
    (["batch", "{dir}", "--out", "{dir}"], "is a folder: give the table's file name"),  # traceback after scoring
    (["batch", "{dir}", "--out", "{fake}"], "is not a batch table"),  # ArrowInvalid traceback
    (["batch", "{dir}", "--out", "{dir}/b1.csv"], "ending in .parquet"),  # had written Parquet into a .csv
    (["batch", "{dir}", "--out", "{keys}"], "is not a batch table"),  # another Parquet file: KeyError traceback
    (["batch", "{dir}", "--out", "{dir}/t.parquet", "--heatmaps", "{old}"], "is a file: give a folder"),
])
def test_outputs_that_do_not_fit_are_refused_before_any_model_runs(argv: list[str], says: str, tmp_path: Path,
                                                                   caplog, monkeypatch) -> None:
    from medimg_demo import predict

    monkeypatch.setattr(predict, "predict_study", lambda *a, **k: pytest.fail("a model ran"))
    scan, old = tmp_path / "scan.png", tmp_path / "old.pdf"
    scan.write_bytes(png_bytes((gradient() * 255).astype("uint8")))
    old.write_bytes(b"kept")
    import pandas as pd

    pd.DataFrame({"file_key": ["k"], "other": [1]}).to_parquet(tmp_path / "keys.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"kept")
    argv = [a.format(scan=scan, old=old, dir=tmp_path, missing=tmp_path / "missing", keys=tmp_path / "keys.parquet",
                     fake=tmp_path / "fake.parquet") for a in argv]
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and says in errors[0], errors
    assert old.read_bytes() == b"kept" and scan.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "missing").exists()
    assert (tmp_path / "fake.parquet").read_bytes() == b"kept" and not (tmp_path / "b1.csv").exists()


@pytest.mark.parametrize("argv", [["batch", "in", "--out", "t.parquet", "--batch-size", "0"],
                                  ["batch", "in", "--out", "t.parquet", "--batch-size", "-3"],  # had exited 0, no table
                                  ["batch", "in", "--out", "t.parquet", "--concurrency", "-1"],
                                  ["predict", "scan.png", "--frame", "-1"]])
def test_counts_below_one_and_negative_frames_are_usage_errors(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "is outside" in capsys.readouterr().err


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with an empty data chunk: enough for the size check."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_a_refusal_on_the_command_line_speaks_of_files_not_uploads(tmp_path: Path, capsys) -> None:
    """The decoders' refusals say "upload it again" and "this server" in the app; the command line had printed them
    so in its log, the JSON's reason and the batch table (thirty-eighth session's note)."""
    import logging

    from medimg_demo.cli_files import OneLineFormatter
    from medimg_demo.errors import on_the_command_line

    big = tmp_path / "big.png"
    big.write_bytes(_png_header(9_000, 9_000))
    assert main(["predict", str(big), "--json"]) == 2
    reason = json.loads(capsys.readouterr().out)["reason"]
    assert "9000x9000" in reason and "MEDIMG_MAX_PIXELS" in reason, reason
    assert "upload" not in reason.lower() and "server" not in reason, reason
    assert on_the_command_line(
        "The DICOM pixel data uses a compression this server cannot decode. Export it uncompressed (Explicit VR Little "
        "Endian) and upload it again.").endswith("this tool cannot decode. Export it uncompressed (Explicit VR Little "
                                                "Endian) and run the command on the new file.")
    # a log line's own words are its own: a path is not reworded (the formatter had printed "Give 2024")
    record = logging.LogRecord("medimg_demo.cli", logging.INFO, "", 0, "wrote %s", ("/data/Upload 2024/x.pdf",), None)
    assert OneLineFormatter("%(message)s").format(record) == "wrote /data/Upload 2024/x.pdf"


def test_a_data_set_not_found_names_the_ones_there(tmp_path: Path) -> None:
    """`train --task nosuch` said only "No manifest.csv in ..."; the data sets under the root are named."""
    from medimg_demo.errors import DataError
    from medimg_demo.manifest import resolve_data_dir

    for name in ("lung_ct", "brain_mri"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.csv").write_text("image,label,split\n")
    with pytest.raises(DataError, match=r"\(the data sets there: brain_mri, lung_ct\)\.$"):
        resolve_data_dir(tmp_path, "nosuch")
    assert resolve_data_dir(tmp_path, "lung_ct") == tmp_path / "lung_ct"
