"""Uploads decode in a child of the decode server, under a memory and a time limit, to the same Study as in-process."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from conftest import dicom_bytes, gradient, png_bytes
from medimg_demo.errors import InputError
from medimg_demo.imaging import isolated, read_bytes
from medimg_demo.imaging.jail_warm import dicom_of
from medimg_demo.imaging.child_answer import study_from_answer
from medimg_demo.imaging.study import pixel_hash

pytestmark = pytest.mark.skipif(not isolated.enabled(), reason="no fork or Unix sockets here")


@pytest.fixture(scope="module")
def big_j2k() -> bytes:
    """A sound 4096x4096 JPEG 2000 DICOM (2.2 MB): about 0.4 s and 100 MB to decode."""
    from pydicom.uid import JPEG2000Lossless

    y, x = np.mgrid[:4096, :4096]
    return dicom_of(((x * 7 + y * 3) % 256).astype(np.uint8), JPEG2000Lossless)


def _same(a: object, b: object) -> None:
    for name in ("source_format", "modality", "pixel_spacing_mm", "n_frames", "frame_index", "window", "invert",
                 "warnings", "sha256"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.pixels, b.pixels)  # type: ignore[attr-defined]
    if a.values is None:  # type: ignore[attr-defined]
        assert b.values is None  # type: ignore[attr-defined]
    else:
        np.testing.assert_array_equal(a.values, b.values)  # type: ignore[attr-defined]


def test_an_upload_decodes_in_a_child_to_the_same_study_as_in_process(big_j2k: bytes, tmp_path) -> None:
    ct = dicom_bytes((gradient() * 3000).astype(np.uint16), slope=1.0, intercept=-1024, window=(40, 400))
    for data in (png_bytes((gradient() * 255).astype(np.uint8)), ct, big_j2k):
        _same(isolated.read_isolated(data), read_bytes(data))
    path = tmp_path / "upload.dcm"
    path.write_bytes(ct)
    study = isolated.read_isolated(path)
    _same(study, read_bytes(ct))
    assert study.values is not None and study.modality == "CT" and study.pixel_spacing_mm == (0.7, 0.7)


def test_a_refusal_in_the_child_reaches_the_user_unchanged() -> None:
    junk = b"<html>not an image</html>" * 10
    with pytest.raises(InputError) as in_process:
        read_bytes(junk)
    with pytest.raises(InputError) as in_child:
        isolated.read_isolated(junk)
    assert str(in_child.value) == str(in_process.value)


def test_a_decode_over_its_memory_or_its_time_is_stopped_and_refused_with_a_message(big_j2k: bytes) -> None:
    with pytest.raises(InputError, match="needs more than the 30 MB of memory"):
        isolated.read_isolated(big_j2k, memory_mb=30)
    with pytest.raises(InputError, match="took longer than the 0.05 s"):
        isolated.read_isolated(big_j2k, timeout_s=0.05)
    assert isolated.read_isolated(big_j2k).pixels.shape == (2048, 2048)  # the server lives on; limits were per child


def test_a_decode_server_that_died_is_started_again() -> None:
    data = png_bytes((gradient() * 255).astype(np.uint8))
    isolated.read_isolated(data)
    proc = isolated._server["proc"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert isolated.read_isolated(data).sha256 == read_bytes(data).sha256
    assert isolated._server["proc"].pid != proc.pid


def test_a_server_started_again_runs_no_module_planted_in_the_working_folder_and_any_descriptor_number_works(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    (tmp_path / "numpy.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').close()\nraise SystemExit\n")
    monkeypatch.chdir(tmp_path)  # an app started from a folder others can write to
    held = []
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2048:  # the server's pipe lands above 1023
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        isolated.start()
        os.kill(isolated._server["proc"].pid, signal.SIGKILL)  # and at once: no wait for it to be gone
        data = png_bytes((gradient() * 255).astype(np.uint8))
        assert isolated.read_isolated(data).sha256 == read_bytes(data).sha256
    finally:
        for fd in held:
            os.close(fd)
    assert not (tmp_path / "RAN").exists()


def test_what_a_child_answers_is_checked_and_hashed_again_before_use() -> None:
    px = gradient().astype(np.float32)
    meta = {"shape": list(px.shape), "has_values": False, "source_format": "png", "modality": None,
            "body_part": None, "pixel_spacing_mm": None, "spacing_source": "", "n_frames": 1, "frame_index": 0,
            "window": None, "invert": False, "warnings": []}
    study = study_from_answer({**meta, "sha256": "0" * 64}, px.tobytes(), b"")  # a hash sent along is not taken
    assert study.sha256 == pixel_hash(px)
    np.testing.assert_array_equal(study.pixels, px)
    with pytest.raises(InputError, match="inconsistent"):
        study_from_answer(meta, px.tobytes()[:-4], b"")  # a short array
    with pytest.raises(InputError, match="inconsistent"):
        study_from_answer({**meta, "shape": [4096, 64]}, b"\0" * 4096 * 64 * 4, b"")  # over MAX_SIDE
    for forged in ({"source_format": "exe"}, {"window": ["a", "b"]}, {"pixel_spacing_mm": [float("nan"), 1.0]},
                   {"n_frames": -7}, {"frame_index": 3}, {"warnings": [1]}, {"shape": [float("inf"), 64]}):
        with pytest.raises(InputError, match="inconsistent"):
            study_from_answer({**meta, **forged}, px.tobytes(), b"")
    with pytest.raises(InputError, match="inconsistent"):
        study_from_answer(meta, (px * 1e30).tobytes(), b"")  # display pixels lie in [0, 1]
    bad = px.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        study_from_answer(meta, bad.tobytes(), b"")


def test_with_isolation_off_uploads_decode_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_DECODE_ISOLATION", "0")

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("asked a child")

    monkeypatch.setattr(isolated, "_ask", no_child)
    data = png_bytes((gradient() * 255).astype(np.uint8))
    assert isolated.read_isolated(data).sha256 == read_bytes(data).sha256


def test_an_upload_is_cleaned_in_a_child_as_in_process_and_under_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    import struct
    import zlib

    from medimg_demo.imaging.clean import clean_in_process

    png = png_bytes((gradient() * 255).astype(np.uint8))
    assert isolated.clean_isolated(png) == clean_in_process(png)
    dicom = dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16))
    cleaned, ext = isolated.clean_isolated(dicom)
    assert ext == ".dcm" and b"PID-998877" not in cleaned and b"Doe^Jane" not in cleaned
    with pytest.raises(InputError, match="not a recognised image"):
        isolated.clean_isolated(b"<svg onload=alert(1)/>")
    empty = struct.pack(">I", 0) + b"tEXt" + struct.pack(">I", zlib.crc32(b"tEXt"))
    padded = png[:33] + empty * 400_000 + png[33:]  # 4.8 MB of empty text chunks: walked in the child
    assert isolated.clean_isolated(padded) == clean_in_process(png)
    monkeypatch.setattr(isolated, "TIMEOUT_S", 0.01)
    with pytest.raises(InputError, match="took longer than the 0.01 s"):
        isolated.clean_isolated(padded)


def test_a_de_identified_copy_is_made_in_a_child_as_in_process() -> None:
    from medimg_demo.imaging.deid import deidentify_with_report

    data = dicom_bytes((gradient(64, 64) * 1000).astype(np.uint16), modality="US")  # US: burned-in text likely
    got, ref = isolated.deidentify_isolated(data), deidentify_with_report(data)
    assert b"PID-998877" not in got.data and b"Doe^Jane" not in got.data
    assert (got.identity_removed, got.warnings) == (ref.identity_removed, ref.warnings) and got.warnings
    with pytest.raises(InputError, match="Only a DICOM file"):
        isolated.deidentify_isolated(png_bytes((gradient() * 255).astype(np.uint8)))


def test_an_upload_over_the_size_limit_is_refused_as_in_process_and_the_server_is_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleaned upload a little over the limit reset its child's connection, which was taken for a dead server:
    restarted, and the user told the decoder could not be reached."""
    from medimg_demo.imaging import decode

    data = png_bytes((gradient() * 255).astype(np.uint8))
    isolated.start()
    pid = isolated._server["proc"].pid
    monkeypatch.setattr(isolated, "MAX_BYTES", len(data) - 1)
    monkeypatch.setattr(decode, "MAX_BYTES", len(data) - 1)
    with pytest.raises(InputError, match="over the limit"):
        isolated.read_isolated(data)
    assert isolated._server["proc"].pid == pid
