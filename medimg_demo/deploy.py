"""Deploy the app to a Hugging Face Space with ``huggingface_hub``'s commit API, not ``git push``.

Why not git: the Hub rejects a push whose history carries binary files not stored through Xet/LFS, and the model
weights (``weights.safetensors``) sit in this repository's history. ``HfApi.create_commit`` uploads the files of the
working tree only (binaries through Xet), without the history.

What is uploaded is decided here, in one place: the files git knows and does not ignore (tracked, plus new files not
yet added, so the Space runs the code that runs here), under an allow-list of top-level entries. Data, state
(``var/``), caches, tests, benchmarks, artifacts and anything git ignores never leave the machine; neither does a
file that resolves outside the checkout. No torch here: a dry run must be cheap and run anywhere.
"""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path, PurePosixPath

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HTTPError

from .errors import MedimgError
from .paths import REPO_ROOT

log = logging.getLogger(__name__)

#: The top-level entries a Space needs: the Gradio app, the package (with its tables), the bundled models, what to
#: install, and the README whose front matter configures the Space. Everything else stays local.
SPACE_ENTRIES: tuple[str, ...] = ("app.py", "requirements.txt", "README.md", "medimg_demo", "models")
#: Files the Space cannot start without.
REQUIRED: tuple[str, ...] = ("app.py", "requirements.txt", "README.md")
#: Folder names never uploaded, wherever they sit (caches a .gitignore might miss).
EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"})
#: Suffixes never uploaded: bytecode, and anything that may be a scan, a data array or a database (patient data or
#: reader feedback). Plots for the Space are made at run time from the metrics CSVs.
EXCLUDED_SUFFIXES: tuple[str, ...] = (
    ".pyc", ".pyo", ".dcm", ".dicom", ".nii", ".nii.gz", ".nrrd", ".mha", ".npy", ".npz", ".parquet",
    ".sqlite", ".sqlite3", ".db", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp",
)
_SPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_LOGIN_HINT = (
    "log in with `hf auth login` (or set HF_TOKEN) using a token with write access from "
    "https://huggingface.co/settings/tokens"
)


class DeployError(MedimgError):
    """The Space cannot be deployed; the message says what to fix (token, Space name, checkout, Hub answer)."""


def check_space_id(space: str) -> str:
    """Return ``space`` if it reads OWNER/NAME; fail before any network call so a typo costs nothing."""
    if not _SPACE_ID.match(space) or ".." in space or space.endswith((".git", ".")):
        raise DeployError(
            f"--space must be OWNER/NAME (letters, digits, '-', '_', '.'), e.g. my-user/medimg-demo; got {space!r}"
        )
    return space


def _git(root: Path, *args: str) -> str:
    """Run git in ``root``; git decides what is ignored, so without git there is no safe file list."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise DeployError("deploy needs git to list the files to upload; install git, run it from a git clone") from exc
    if done.returncode != 0:
        raise DeployError(
            f"deploy must run from a git clone of medimg_demo (git says: {done.stderr.strip() or done.returncode}); "
            "clone the repository with git and run the command there"
        )
    return done.stdout


def _git_list(root: Path, *args: str) -> set[str]:
    """Paths (relative to ``root``, POSIX) that ``git ls-files`` lists under the allow-listed entries."""
    out = _git(root, "ls-files", "-z", *args, "--", *SPACE_ENTRIES)
    return {p for p in out.split("\0") if p}


def _excluded(rel: str) -> bool:
    """True for caches, bytecode, scans, data arrays and databases, even when git would let them through."""
    parts = PurePosixPath(rel).parts
    return any(p in EXCLUDED_DIRS for p in parts[:-1]) or rel.lower().endswith(EXCLUDED_SUFFIXES)


def space_files(root: Path = REPO_ROOT) -> list[str]:
    """The files a Space needs, sorted, as POSIX paths relative to ``root``.

    Tracked files plus new ones git does not ignore, minus tracked files that match an ignore rule, under
    ``SPACE_ENTRIES``; then without excluded caches and data-like files, deleted files, and anything (such as a
    symlink) that resolves outside ``root``.
    """
    root = root.resolve()
    tracked = _git_list(root, "--cached")
    untracked = _git_list(root, "--others", "--exclude-standard")
    ignored = _git_list(root, "--cached", "--ignored", "--exclude-standard")
    files: list[str] = []
    for rel in sorted((tracked | untracked) - ignored):
        path = root / rel
        if _excluded(rel):
            log.warning("Not uploading %s: caches, scans, data arrays and databases never go to a Space", rel)
        elif not path.is_file():
            log.debug("Skipping %s: tracked but not in the working tree", rel)
        elif not path.resolve().is_relative_to(root):
            log.warning("Not uploading %s: it resolves outside the checkout", rel)
        else:
            files.append(rel)
    new = sorted(set(files) & untracked)
    if new:
        log.warning("Uploading %d file(s) not yet added to git: %s", len(new), ", ".join(new))
    missing = [r for r in REQUIRED if r not in files]
    if missing:
        raise DeployError(f"{', '.join(missing)} missing from {root}: a Space needs {', '.join(REQUIRED)}; "
                          "run deploy from a full clone of medimg_demo")
    return files


def space_readme(text: str, *, oauth: bool) -> str:
    """The README as uploaded: the repository's own, with ``hf_oauth: true`` in its front matter when ``oauth``.

    The Space reads its configuration (sdk, app_file, python_version, hf_oauth) from this front matter, so a README
    without one would deploy a Space that does not start: fail here instead.
    """
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None) if lines else None
    if not lines or lines[0].strip() != "---" or end is None:
        raise DeployError("README.md has no front matter (a block between '---' lines at the top with sdk: gradio and "
                          "app_file: app.py); the Space reads its configuration from it, add it back")
    keys = {ln.split(":", 1)[0].strip() for ln in lines[1:end] if ":" in ln}
    if not {"sdk", "app_file"} <= keys:
        raise DeployError("README.md front matter needs 'sdk: gradio' and 'app_file: app.py' for the Space to start")
    if not oauth:
        return text
    body = [ln for ln in lines[1:end] if ln.split(":", 1)[0].strip() != "hf_oauth"]
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    return "".join([lines[0], *body, f"hf_oauth: true{newline}", *lines[end:]])


def plan(space: str, *, oauth: bool = False, root: Path = REPO_ROOT) -> list[str]:
    """Check everything that can be checked offline and return the upload list (what ``--dry-run`` prints)."""
    check_space_id(space)
    files = space_files(root)
    space_readme((root / "README.md").read_text(encoding="utf-8"), oauth=oauth)
    return files


def resolve_token() -> str:
    """The Hub token from ``HF_TOKEN`` or a saved ``hf auth login``; a clear error instead of a 401 later."""
    token = get_token()
    if not token:
        raise DeployError(f"no Hugging Face token found: {_LOGIN_HINT}")
    return token


def _describe(root: Path) -> str:
    """The checkout's commit for the Space's commit message, so a deployed Space can be traced back."""
    try:
        return _git(root, "describe", "--always", "--dirty").strip() or "a working tree"
    except DeployError:
        return "a working tree without commits"


def _operations(
    files: list[str], remote: list[str], *, oauth: bool, root: Path
) -> list[CommitOperationAdd | CommitOperationDelete]:
    """One add per listed file (README rewritten for OAuth), and a delete for every file the Space holds under the
    managed entries that is no longer listed: a model removed here must not stay in the Space's registry."""
    ops: list[CommitOperationAdd | CommitOperationDelete] = []
    for rel in files:
        if rel == "README.md" and oauth:
            text = space_readme((root / rel).read_text(encoding="utf-8"), oauth=True)
            ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=text.encode("utf-8")))
        else:
            ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(root / rel)))
    listed = set(files)
    for rel in sorted(remote):
        if rel.split("/", 1)[0] in SPACE_ENTRIES and rel not in listed:
            ops.append(CommitOperationDelete(path_in_repo=rel))
    return ops


def deploy(space: str, *, private: bool = False, oauth: bool = False, root: Path = REPO_ROOT,
           token: str | None = None) -> str:
    """Create the Space if needed and upload exactly ``plan(space)`` in one commit; return the Space's URL.

    One commit, so a Space never restarts on half an upload. ``private`` makes a new Space private and refuses to
    upload into an existing public one (visibility is never changed behind the deployer's back).
    """
    root = root.resolve()
    files = plan(space, oauth=oauth, root=root)
    api = HfApi(token=token or resolve_token())
    step = "creating the Space"
    try:
        api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        if private:
            step = "reading the settings of"
            if not api.repo_info(space, repo_type="space").private:
                raise DeployError(f"the Space {space} exists and is public, and --private was asked: make it private "
                                  f"in its settings (https://huggingface.co/spaces/{space}/settings) or drop --private")
        step = "listing the files of"
        remote = api.list_repo_files(space, repo_type="space")
        ops = _operations(files, remote, oauth=oauth, root=root)
        n_del = sum(isinstance(op, CommitOperationDelete) for op in ops)
        log.info("Uploading %d files to %s (%d stale files removed)", len(files), space, n_del)
        step = "uploading to"
        info = api.create_commit(space, ops, commit_message=f"Deploy medimg_demo from {_describe(root)}",
                                 repo_type="space")
    except HTTPError as exc:
        raise DeployError(f"{step} {space} failed on the Hub: {exc}. Check the network, the Space name and that the "
                          f"token can write to {space.split('/')[0]}; {_LOGIN_HINT}") from exc
    url = f"https://huggingface.co/spaces/{space}"
    log.info("Committed %s; the Space rebuilds at %s", getattr(info, "oid", "?"), url)
    return url
