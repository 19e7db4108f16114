"""Feedback exports answer over HTTP only the login that asked for them (with logins on); without logins, anyone
(there is no one to tell apart)."""

from __future__ import annotations

import pytest

from medimg_demo.web import auth, export_owners

NAME = "feedback-0123456789abcdef.csv"


@pytest.fixture()
def logins(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Password logins on; the caller's login is what ``scope["who"]`` says."""
    monkeypatch.setenv("MEDIMG_AUTH", "alice01:pw-alice-1,bob02:pw-bob-2")
    monkeypatch.setattr(export_owners, "login_of", lambda scope: scope["who"])
    monkeypatch.setattr(export_owners, "_owners", export_owners.OrderedDict())
    return {}


def _scope(path: str, who: str, query: bytes = b"") -> dict:
    return {"type": "http", "path": path, "query_string": query, "who": who}


@pytest.mark.parametrize("path, query", [
    (f"/gradio_api/file=/srv/state/public/exports/{NAME}", b""),
    (f"/gradio_api/file=//srv/state/public/./exports/{NAME.upper()}", b""),  # other spellings of the same file
    ("/gradio_api/file=/srv/state/public/exports/feedback-0123456789abcdef%2Ecsv", b""),  # encoded twice
    ("/gradio_api/file", f"path=/srv/state/public/exports/{NAME}".encode()),
])
def test_an_export_answers_its_own_login_only(logins, path: str, query: bytes) -> None:  # noqa: ANN001
    assert auth.logins_on()
    export_owners.record(f"/srv/state/public/exports/{NAME}", "alice01")
    assert not export_owners.refused(_scope(path, "login:alice01", query))
    for other in ("login:bob02", "hf:alice01", "anonymous"):  # another login, the same name as a Hugging Face account
        assert export_owners.refused(_scope(path, other, query)), other


def test_an_export_not_recorded_answers_no_one_and_other_files_pass(logins) -> None:  # noqa: ANN001
    assert export_owners.refused(_scope("/gradio_api/file=/srv/public/exports/reader-study-00000000deadbeef.csv",
                                        "login:alice01"))
    assert not export_owners.refused(_scope("/gradio_api/file=/srv/public/published/abc.png", "login:bob02"))


def test_without_logins_exports_are_not_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEDIMG_AUTH", "MEDIMG_AUTH_FILE", "MEDIMG_HF_OAUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(export_owners, "_owners", export_owners.OrderedDict())
    export_owners.record(f"/x/exports/{NAME}", "")
    assert not export_owners._owners
    assert not export_owners.refused({"type": "http", "path": f"/gradio_api/file=/x/exports/{NAME}",
                                      "query_string": b""})
