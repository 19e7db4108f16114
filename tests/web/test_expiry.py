"""Expiry while the app runs (``web.expiry``), without a server: which cached, working and public files go, and when."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from medimg_demo.web import expiry, lifecycle, uploads


def _file(path: Path, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if age_s:
        then = time.time() - age_s
        for p in (path, path.parent):
            os.utime(p, (then, then))
    return path


def test_old_cached_outputs_go_and_what_the_app_was_built_with_stays(tmp_path: Path) -> None:
    cache = tmp_path / "uploads"
    sample = _file(cache / ("a" * 64) / "ct0321.png", age_s=7200)  # cached while the app was built
    baseline = expiry.cache_baseline(cache)
    old_copy = _file(cache / ("b" * 64) / "deidentified-0123.dcm", age_s=7200)
    report = _file(cache / ("c" * 64) / "report.pdf", age_s=7200)
    _file(cache / ("c" * 64) / "handed-out-again.pdf")  # a folder touched a moment ago is not old
    fresh = _file(cache / ("d" * 64) / "deidentified-4567.dcm")
    stranger = _file(cache / "someone-elses-file.txt", age_s=7200)
    other = _file(cache / "medimg-0123456789abcdef0123456789abcdef" / "scan.png", age_s=7200)
    not_a_hash = _file(cache / ("e" * 63) / "x.png", age_s=7200)
    assert baseline == {sample.parent}
    assert expiry.expire_cached(3600, baseline, cache) == 1
    assert not old_copy.exists() and report.exists() and fresh.exists() and sample.exists()
    assert stranger.exists() and other.exists() and not_a_hash.exists()
    assert expiry.expire_cached(0, baseline, cache) == 2  # at stop: all but the baseline's
    assert not report.exists() and not fresh.exists() and sample.exists() and other.exists()


def test_cached_copies_of_feedback_exports_go_after_ten_minutes(tmp_path: Path) -> None:
    """Gradio hands out a cached copy of each export: it lived the cache's hour while the export itself went after
    ten minutes; a picture of the same age stays."""
    cache = tmp_path / "uploads"
    exports = [_file(cache / (c * 64) / name, age_s=900)
               for c, name in (("a", "feedback-0123456789abcdef.csv"), ("b", "reader-study-0123456789abcdef.csv"))]
    picture = _file(cache / ("c" * 64) / "image.png", age_s=900)
    fresh = _file(cache / ("d" * 64) / "feedback-fedcba9876543210.csv", age_s=60)
    assert expiry.expire_cached(3600, set(), cache) == 2
    assert not any(e.exists() for e in exports) and picture.exists() and fresh.exists()


@pytest.fixture(autouse=True)
def own_working_copies() -> Iterator[None]:
    """Each test sees only the working copies it registers: app instances of other tests made some in this process."""
    with uploads.MADE_LOCK:
        others = set(uploads.MADE)
        uploads.MADE.clear()
    yield
    with uploads.MADE_LOCK:
        uploads.MADE.clear()
        uploads.MADE.update(others)


def test_working_copies_this_process_made_expire_by_age(tmp_path: Path) -> None:
    old = _file(tmp_path / "medimg-old" / "scan.png", age_s=7200).parent
    new = _file(tmp_path / "medimg-new" / "scan.png").parent
    theirs = _file(tmp_path / "medimg-theirs" / "scan.png", age_s=7200).parent  # not in MADE: another instance's
    with uploads.MADE_LOCK:
        uploads.MADE.update({old, new})
    assert expiry.expire_working_copies(3600) == 1
    assert not old.exists() and new.exists() and theirs.exists() and old not in uploads.MADE
    assert expiry.expire_working_copies(0) == 1 and not new.exists() and theirs.exists()


def test_public_files_expire_while_running_and_the_stop_clears_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    public = tmp_path / "state" / "public"
    old_report = _file(public / "published" / "old.pdf", age_s=7200)
    new_report = _file(public / "published" / "new.pdf")
    old_deid = _file(public / "deidentified" / "deidentified-1.dcm", age_s=7200)
    assert expiry.expire_public(3600) == 2
    assert not old_report.exists() and not old_deid.exists() and new_report.exists()
    old_export = _file(public / "exports" / "feedback-1.csv", age_s=900)  # comments, reader names: ten minutes
    assert expiry.expire_public(3600) == 1 and not old_export.exists()
    sample = _file(tmp_path / "uploads" / ("a" * 64) / "ct0321.png")
    copy = _file(tmp_path / "uploads" / ("b" * 64) / "deidentified-2.dcm")
    stranger = _file(tmp_path / "uploads" / "someone-elses-file.txt")
    partial = _file(tmp_path / "uploads" / "tmpab12cd34")  # an upload cut off halfway: Gradio keeps its tmp file
    assert lifecycle.sweep_at_exit() == 3  # two cache folders and the public report
    assert not sample.exists() and not copy.exists() and not new_report.exists() and not partial.exists()
    assert stranger.exists()


def test_an_abandoned_upload_goes_after_the_raw_upload_ttl(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    abandoned = _file(tmp_path / "tmpq1w2e3r4", age_s=300)
    abandoned.write_bytes(b"DICM Doe^Jane PID-998877")
    os.utime(abandoned, (time.time() - 300, time.time() - 300))
    uploading = _file(tmp_path / "tmpz9x8c7v6")  # still being written
    other = _file(tmp_path / "notes.txt", age_s=300)
    assert uploads.remove_stale_tmp_files(120) == 1
    assert not abandoned.exists() and uploading.exists() and other.exists()


def test_unused_raw_uploads_go_with_every_spelling_of_their_path_and_no_other(tmp_path: Path) -> None:
    """Each upload in a folder of its own with a masked name ("uuuu.dcm" for all of them): a path spelled with "//",
    "/./" or ".." names its own upload only; expiring drops every spelling Gradio holds, and a fresh upload stays."""
    old = [_file(tmp_path / f"{i:064x}" / "uuuu.dcm", age_s=300) for i in range(3)]
    fresh = _file(tmp_path / f"{9:064x}" / "uuuu.dcm")
    first = str(old[0])
    variants = [first.replace("/uuuu", "//uuuu"), first.replace(f"/{0:064x}", f"/./{0:064x}"),
                first.replace(f"/{0:064x}", f"/{9:064x}/../{0:064x}")]
    uploaded = {*map(str, old), *variants, str(fresh)}
    for v in variants:
        assert sorted(map(str, uploads.spellings(uploaded, v))) == sorted([first, *variants])
    assert uploads.spellings(uploaded, fresh) == [str(fresh)]
    assert uploads.expire_raw_uploads(uploaded, ttl_s=120) == 3
    assert uploaded == {str(fresh)} and fresh.exists() and not any(p.exists() for p in old)


def test_a_file_handed_out_again_keeps_its_cache_folder(tmp_path: Path) -> None:
    """Gradio names cache folders by content and may touch or re-write a file in an old folder at any moment: only
    the files still old when they are reached go, and a folder that keeps one stays."""
    folder = tmp_path / ("f" * 64)
    old = _file(folder / "a.png", age_s=7200)
    again = _file(folder / "b.png")
    expiry._remove_older(folder, time.time() - 3600)
    assert not old.exists() and again.exists() and folder.is_dir()
    expiry._remove_older(folder, None)
    assert not folder.exists()


def test_an_analysed_view_goes_after_the_file_age_unused(monkeypatch) -> None:
    """A scan's pixels kept for redraws go when unused for MEDIMG_FILE_MAX_AGE_S, like the files made from them (a
    redraw after that would publish its pictures again); a view in use stays."""
    import numpy as np

    from medimg_demo.web import view_store
    from medimg_demo.web.analysis import View

    from collections import OrderedDict

    clock = [1000.0]
    monkeypatch.setattr(view_store, "_now", lambda: clock[0])
    monkeypatch.setattr(view_store, "_views", OrderedDict())  # this test's views only (other tests stored some)
    monkeypatch.setattr(view_store, "_total", 0)

    def view() -> View:
        return View(np.zeros((8, 8), np.float32), None, False, None, None, None, None)

    idle, used = view_store.keep(view()), view_store.keep(view())
    clock[0] += view_store.MAX_AGE_S - 1
    assert view_store.lookup(used) is not None  # used now: its hour starts again
    clock[0] += 2
    assert view_store.expire() >= 1
    assert view_store.lookup(idle) is None and view_store.dropped(idle) and view_store.lookup(used) is not None
    clock[0] += view_store.MAX_AGE_S + 1
    assert view_store.lookup(used) is None


def test_one_failing_kind_does_not_stop_the_pass_and_zero_ages_are_refused(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.errors import ConfigError

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    old_report = _file(tmp_path / "state" / "public" / "published" / "old.pdf", age_s=7200)

    def broken(*_: object) -> int:
        raise FileNotFoundError("a folder went while it was listed")

    monkeypatch.setattr(expiry, "expire_cached", broken)
    done = expiry.expire_all(None, (), raw_ttl_s=120, max_age_s=3600)
    assert done["cached outputs"] == 0 and done["public files"] == 1 and not old_report.exists()
    for raw, age in ((0, 3600), (120, 0), (120, -1)):
        with pytest.raises(ConfigError, match="positive"):
            expiry.start_reaper(None, (), raw_ttl_s=raw, max_age_s=age)


def test_a_file_of_the_data_sets_is_never_deleted_as_an_upload(tmp_path: Path, monkeypatch) -> None:
    """Sample cases are handed to the handlers from the data folder itself: whatever a handler is told (outside a
    server it consumes the file it is given), a file there is read and left."""
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(tmp_path / "data"))
    sample = _file(tmp_path / "data" / "lung_ct" / "images" / "ct0321.png")
    elsewhere = _file(tmp_path / "upload" / "scan.png")
    assert uploads.read_upload(sample, consume=True) == b"x" and sample.exists()
    assert uploads.read_upload(elsewhere, consume=True) == b"x" and not elsewhere.exists()


def test_the_stop_removes_the_apps_own_upload_folder_once_empty(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.paths import DEFAULT_UPLOAD_PREFIX

    monkeypatch.setenv("MEDIMG_STATE_DIR", str(tmp_path / "state"))
    own = tmp_path / f"{DEFAULT_UPLOAD_PREFIX}0123456789ab"
    _file(own / ("a" * 64) / "report.pdf")
    (own / "vibe_edit_history").mkdir()  # Gradio makes it, empty, at every start: it had kept the folder behind
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(own))
    lifecycle.sweep_at_exit()
    assert not own.exists()  # app.py's default folder: nothing left behind in the system temp
    theirs = tmp_path / "deployer-chosen"
    _file(theirs / ("b" * 64) / "report.pdf")
    (own / "vibe_edit_history" / "edit.py").parent.mkdir(parents=True)
    (own / "vibe_edit_history" / "edit.py").write_text("x")  # Gradio's history with something in it: kept
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(own))
    lifecycle.sweep_at_exit()
    assert (own / "vibe_edit_history" / "edit.py").is_file()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(theirs))
    lifecycle.sweep_at_exit()
    assert theirs.is_dir() and not (theirs / ("b" * 64)).exists()  # a folder the deployer set stays


def test_working_copies_fit_their_disk_budget_least_recently_used_first(tmp_path: Path, monkeypatch) -> None:
    """Each working copy lives an hour: a client uploading 100 MB files kept an hour of its bandwidth on disk. Past
    MEDIMG_WORK_BUDGET_MB the least recently used go (a copy analysed a moment ago stays, however old; never the one
    just written); another instance's stay."""
    from medimg_demo.web import working_copies

    monkeypatch.setattr(working_copies, "WORK_BUDGET_BYTES", 3500)
    made = []
    for age in (300, 200, 100):  # three copies of 1000 bytes, oldest first: they fit
        folder = uploads.working_copy(b"x" * 1000, ".png", tmp_path).parent
        then = time.time() - age
        for p in (folder / "scan.png", folder):
            os.utime(p, (then, then))
        made.append(folder)
    assert all(f.exists() for f in made)
    uploads.to_analyse(made[0] / "scan.png")  # the oldest is analysed again: now the most recently used
    theirs = _file(tmp_path / "medimg-theirs" / "scan.png", age_s=7200).parent  # not in MADE: another instance's
    newest = uploads.working_copy(b"y" * 1000, ".png", tmp_path).parent  # 4000 bytes in all: one must go
    assert [f.exists() for f in made] == [True, False, True] and newest.exists() and theirs.exists()
    assert made[1] not in uploads.MADE and newest in uploads.MADE
    assert uploads.fit_budget(keep=newest, budget=0) == 2 and newest.exists()  # the one just written stays


def test_the_login_holding_the_most_disk_gives_up_its_copies_first(tmp_path: Path, monkeypatch) -> None:
    """One global budget let a client uploading many large files push every other reader's copies out. Now the login
    holding the most goes first (its least recently used copy), even when another's is older."""
    from medimg_demo.web import working_copies

    monkeypatch.setattr(working_copies, "WORK_BUDGET_BYTES", 10**9)
    bob = uploads.working_copy(b"b" * 1000, ".png", tmp_path, owner="bob02").parent
    old = time.time() - 600
    os.utime(bob, (old, old))
    os.utime(bob / "scan.png", (old, old))  # bob's copy is the least recently used of all
    alice = [uploads.working_copy(b"a" * 1000, ".png", tmp_path, owner="alice01").parent for _ in range(3)]
    for i, folder in enumerate(alice):
        then = time.time() - 300 + i
        for p in (folder / "scan.png", folder):
            os.utime(p, (then, then))
    newest = uploads.working_copy(b"a" * 1000, ".png", tmp_path, owner="alice01").parent
    # 5000 bytes, 3500 allowed: alice (4000) gives up her two least recently used copies; bob's stays
    assert uploads.fit_budget(keep=newest, budget=3500) == 2
    assert bob.exists() and [f.exists() for f in alice] == [False, False, True] and newest.exists()
    # alice still holds more (2000 with the copy just written, bob 1000): her last removable copy goes
    assert uploads.fit_budget(keep=newest, budget=2000) == 1 and bob.exists() and not alice[2].exists()
    # only bob's copy is left to remove (the one just written never goes): it goes
    assert uploads.fit_budget(keep=newest, budget=1000) == 1 and not bob.exists() and newest.exists()


def test_between_logins_holding_as_much_the_least_recently_used_copy_goes(tmp_path: Path, monkeypatch) -> None:
    from medimg_demo.web import working_copies

    monkeypatch.setattr(working_copies, "WORK_BUDGET_BYTES", 10**9)
    copies = {}
    for owner, age in (("alice01", 100), ("bob02", 500), ("carol03", 300)):  # bob's is the least recently used
        folder = uploads.working_copy(b"x" * 1000, ".png", tmp_path, owner=owner).parent
        then = time.time() - age
        for p in (folder / "scan.png", folder):
            os.utime(p, (then, then))
        copies[owner] = folder
    newest = uploads.working_copy(b"y" * 500, ".png", tmp_path, owner="dave04").parent
    assert uploads.fit_budget(keep=newest, budget=2600) == 1
    assert {o: f.exists() for o, f in copies.items()} == {"alice01": True, "bob02": False, "carol03": True}
    assert uploads.fit_budget(keep=newest, budget=1600) == 1 and not copies["carol03"].exists()


def test_a_working_copy_is_used_only_under_the_login_it_was_uploaded_under(tmp_path: Path, monkeypatch) -> None:
    """Its path, however spelled ("//", "/./", a symlink), names the same copy and the same owner; another login is
    refused; without logins (or for a sample case, not a working copy) nothing is checked."""
    from medimg_demo.errors import AccessError

    monkeypatch.setenv("MEDIMG_AUTH", "alice01:pw-1,bob02:pw-2")
    scan = uploads.working_copy(b"x" * 10, ".png", tmp_path, owner="alice01")
    link = tmp_path / "link"
    link.symlink_to(scan.parent)
    alice, bob = SimpleNamespace(username="alice01"), SimpleNamespace(username="bob02")
    for spelling in (str(scan), "/" + str(scan), str(scan).replace("/medimg-", "/./medimg-"), str(link / scan.name)):
        assert uploads.owner_of(spelling) == "alice01", spelling
        assert uploads.to_analyse(spelling, alice, None) == spelling
        with pytest.raises(AccessError, match="another login"):
            uploads.to_analyse(spelling, bob, None)
    assert uploads.owner_of(tmp_path / "sample.png") is None
    uploads.check_owner(tmp_path / "sample.png", bob, None)
    # a working copy this process did not make (an earlier run's, another process's): its owner is unknown, refused
    stray = tmp_path / f"{uploads.WORKING_PREFIX}{'a' * 32}" / "scan.png"
    upper = tmp_path / f"{uploads.WORKING_PREFIX}{'b' * 32}".upper() / "scan.png"  # as a case-insensitive disk spells it
    for f in (stray, upper):
        f.parent.mkdir()
        f.write_bytes(b"x")
    for user in (alice, bob, None):
        for f in (stray, upper):
            with pytest.raises(AccessError, match="no longer known to the app"):
                uploads.to_analyse("/" + str(f), user, None)
    monkeypatch.delenv("MEDIMG_AUTH")
    uploads.check_owner(scan, bob, None)  # logins off: the random name is the key
    assert uploads.to_analyse(stray, None, None) == stray
    uploads.fit_budget(keep=tmp_path, budget=0)
    assert not scan.exists() and uploads.owner_of(scan) is None  # removed with its copy
