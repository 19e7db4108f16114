"""Logins for hosted sessions, off on a laptop: who the reader is, and who may see everyone's work.

The deployer turns logins on in one of two ways:

* ``MEDIMG_AUTH_FILE`` (a secrets file: lines ``user:password``, or a JSON object ``{"user": "password"}``) or
  ``MEDIMG_AUTH`` (``user:pass,user2:pass2``): Gradio's own login page guards the whole app and its API;
* ``MEDIMG_HF_OAUTH=1`` on a Hugging Face Space: "Sign in with Hugging Face" (``gr.LoginButton``); actions that
  store or show feedback need a signed-in user.

With logins on, the reader is the logged-in identity (a typed pseudonym is ignored), and ``MEDIMG_OWNERS``
(``user1,user2``) names the session owners who see every reader's summaries and exports; other readers see only
their own work. With logins off (a laptop, one user) the typed pseudonym is the reader and everything is visible.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import Any

from ..errors import AccessError, ConfigError

_TRUE = {"1", "true", "yes", "on"}


def _parse_pairs(text: str, where: str) -> dict[str, str]:
    """``user:password`` pairs separated by commas or new lines (``#`` starts a comment line)."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"{where}, entry {n}: write each login as user:password (the password is not shown).")
        out[user.strip()] = password
    return out


def credentials() -> dict[str, str] | None:
    """Logins from ``MEDIMG_AUTH_FILE`` or ``MEDIMG_AUTH`` (user -> password), or None when logins are off."""
    path = os.environ.get("MEDIMG_AUTH_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("MEDIMG_AUTH_FILE is set but the file cannot be read; fix the path or unset it.") from exc
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError("MEDIMG_AUTH_FILE holds invalid JSON; write {\"user\": \"password\", ...}.") from exc
            if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                     for k, v in data.items()):
                raise ConfigError("MEDIMG_AUTH_FILE JSON must map each user name to a password (both text).")
            creds = {k.strip(): v for k, v in data.items()}
        else:
            creds = _parse_pairs(text, "MEDIMG_AUTH_FILE")
    else:
        env = os.environ.get("MEDIMG_AUTH", "").strip()
        creds = _parse_pairs(env, "MEDIMG_AUTH") if env else {}
    if not creds:
        if path:
            raise ConfigError("MEDIMG_AUTH_FILE lists no logins; add lines user:password or unset it.")
        return None
    return creds


def hf_oauth() -> bool:
    """True when the deployer asked for "Sign in with Hugging Face" (``MEDIMG_HF_OAUTH=1``)."""
    return os.environ.get("MEDIMG_HF_OAUTH", "").strip().lower() in _TRUE


def logins_on() -> bool:
    """Whether readers are identified by a login (password or Hugging Face) rather than a typed pseudonym."""
    return credentials() is not None or hf_oauth()


def owners() -> set[str]:
    """Session owners (``MEDIMG_OWNERS``): they see every reader's summaries and exports."""
    return {u.strip() for u in os.environ.get("MEDIMG_OWNERS", "").split(",") if u.strip()}


def gradio_auth() -> Any:
    """What ``launch(auth=...)`` takes: a constant-time password check, or None when password logins are off."""
    creds = credentials()
    if creds is None:
        return None

    def check(user: str, password: str) -> bool:
        expected = creds.get(user)
        # compare_digest on equal-length digests: the time taken does not tell how much of a password matched
        given = hmac.new(b"medimg", (password or "").encode(), "sha256").digest()
        return expected is not None and hmac.compare_digest(given, hmac.new(b"medimg", expected.encode(), "sha256").digest())

    return check


def identity(request: Any | None, profile: Any | None, typed: str | None) -> str:
    """The reader: the logged-in user when logins are on (never what the client typed), else the typed pseudonym.

    ``request`` is Gradio's ``gr.Request`` (its ``username`` is set by password logins); ``profile`` is the
    ``gr.OAuthProfile`` of a Hugging Face sign-in, or None.
    """
    if credentials() is not None:
        user = getattr(request, "username", None)
        if not user:
            raise AccessError("Log in first: this server identifies each reader by their login.")
        return str(user)
    if hf_oauth():
        user = getattr(profile, "username", None) or (profile.get("preferred_username") if isinstance(profile, dict) else None)
        if not user:
            raise AccessError("Sign in with Hugging Face first (button at the top of the page): this server identifies "
                              "each reader by their account.")
        return str(user)
    return (typed or "").strip()


def check_reader(request: Any | None, profile: Any | None, reader: str) -> None:
    """With logins on, the caller must still be ``reader``, the identity a reading session was started as.

    A session lives in the page (``gr.State``, keyed by the page's session hash), not in the login: without this
    check a page kept open after its reader signed out, or signed in again as someone else, would go on storing
    rows as the first reader. Raises ``AccessError`` (not signed in, or another identity).
    """
    if not logins_on():
        return
    if identity(request, profile, None) != reader:
        raise AccessError("This reading session was started by another sign-in: start or resume it again (the button "
                          "above) to read as yourself.")


def is_owner_of(request: Any | None, profile: Any | None, owner: str) -> bool:
    """Whether the caller may use page state made for ``owner`` (the login that made it; "" without one): always
    with logins off. Gradio keys state by the page's session hash alone, so a hash used under another login (a page
    left open when its reader signed out) must not show that reader's case."""
    if not logins_on() or not owner:
        return True
    try:
        return identity(request, profile, None) == owner
    except AccessError:
        return False


def sees_everyone(user: str) -> bool:
    """Session owners (and the single user of a laptop without logins) see every reader's work."""
    return not logins_on() or user in owners()
