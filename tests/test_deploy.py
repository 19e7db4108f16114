"""Deploy to a Space: the upload list is exactly what a Space needs, the (mocked) Hub receives exactly that list, and
the errors say what to do. Offline: every HfApi method deploy calls is replaced; no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from conftest import REPO
from medimg_demo import deploy as deploy_mod
from medimg_demo.cli import main
from medimg_demo.deploy import SPACE_ENTRIES, DeployError, space_files, space_readme

SPACE = "someone/medimg"
DATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz", ".npy", ".npz", ".sqlite", ".db", ".pyc")


class FakeHub:
    """Records what deploy asks of the Hub; answers like a Space that holds ``remote``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, remote: list[str] | None = None, private: bool = True,
                 fail: Exception | None = None) -> None:
        self.calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
        self.tokens: list[str | None] = []
        remote = [".gitattributes", "README.md"] if remote is None else remote

        def record(name: str, result: Any) -> Any:
            def method(api: HfApi, *args: Any, **kwargs: Any) -> Any:
                self.calls.setdefault(name, []).append((args, kwargs))
                self.tokens.append(api.token)
                if fail is not None and name == "create_repo":
                    raise fail
                return result
            return method

        monkeypatch.setattr(HfApi, "create_repo", record("create_repo", SimpleNamespace(repo_id=SPACE)))
        monkeypatch.setattr(HfApi, "repo_info", record("repo_info", SimpleNamespace(private=private)))
        monkeypatch.setattr(HfApi, "list_repo_files", record("list_repo_files", remote))
        monkeypatch.setattr(HfApi, "create_commit", record("create_commit", SimpleNamespace(oid="abc123")))

    def operations(self) -> list[CommitOperationAdd | CommitOperationDelete]:
        (args, kwargs), = self.calls["create_commit"]
        assert args[0] == SPACE and kwargs["repo_type"] == "space"
        return list(args[1])


@pytest.fixture(autouse=True)
def _fake_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy_mod, "get_token", lambda: "hf_fake_token")


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run must not call the Hub")

    for name in ("create_repo", "repo_info", "list_repo_files", "create_commit", "upload_folder", "upload_file"):
        monkeypatch.setattr(HfApi, name, refuse)


# --- the upload list -------------------------------------------------------------------------------------------


def _write(root: Path, rel: str, data: bytes = b"x\n") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


def test_space_files_in_a_sample_checkout(tmp_path: Path) -> None:
    """A checkout with every kind of file a Space must not get: only the allow-listed, git-known, unignored ones."""
    root = tmp_path / "repo"
    root.mkdir()
    _write(tmp_path, "outside/secret.py")
    _write(root, ".gitignore", (REPO / ".gitignore").read_bytes())  # the project's own rules
    wanted = [
        "app.py", "requirements.txt", "README.md", "medimg_demo/__init__.py", "medimg_demo/web/ui.py",
        "medimg_demo/tables/treatment_pathways.csv", "models/m_v1/config.json", "models/m_v1/weights.safetensors",
        "models/m_v1/MODEL_CARD.md", "models/m_v1/metrics/metrics.csv", "models/m_v1/training_log.csv",
    ]
    tracked_unwanted = [
        "tests/test_x.py", "benchmarks/b.py", "notes.txt", ".ci/run", "medimg_demo/sample_scan.png",
        "models/m_v1/metrics/roc.jpg", "medimg_demo/gone.py",
    ]
    for rel in [*wanted, *tracked_unwanted]:
        _write(root, rel)
    (root / "medimg_demo" / "link.py").symlink_to(tmp_path / "outside" / "secret.py")
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    forced = ["var/feedback.sqlite", "models/m_v1/checkpoints/forced.safetensors"]  # ignored, yet force-added
    for rel in forced:
        _write(root, rel)
    subprocess.run([*git, "add", "-f", *forced], check=True)
    (root / "medimg_demo" / "gone.py").unlink()  # tracked, deleted in the working tree
    untracked_ok = ["medimg_demo/new_module.py"]  # new, not ignored: the Space needs it to import
    untracked_unwanted = [
        "medimg_demo/__pycache__/ui.cpython-311.pyc", "medimg_demo/.pytest_cache/v/x", "var/work/DOE_JANE.dcm",
        "artifacts/shot.png", "runs/m/metrics.csv", "data/lung_ct/images/ct0001.png", "models/m_v1/scan.dcm",
        "models/m_v1/checkpoints/epoch3.safetensors", "models/.m_v2.training-123-ab/weights.safetensors",
        "models/.m_v1.replaced-x/config.json",  # a training run's work folder and a replaced model on its way out
    ]
    for rel in [*untracked_ok, *untracked_unwanted]:
        _write(root, rel)

    assert space_files(root) == sorted([*wanted, *untracked_ok])


def test_not_a_git_checkout_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    with pytest.raises(DeployError, match="git clone"):
        space_files(tmp_path / "plain")


def test_dry_run_lists_what_a_space_needs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _no_network(monkeypatch)
    monkeypatch.setattr(deploy_mod, "get_token", lambda: None)  # a dry run needs no login
    assert main(["deploy", "--space", SPACE, "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == space_files() == sorted(set(listed))
    assert {"app.py", "requirements.txt", "README.md", "medimg_demo/tables/treatment_pathways.csv"} <= set(listed)
    assert {"medimg_demo/__init__.py", "medimg_demo/cli.py", "medimg_demo/deploy.py"} <= set(listed)
    on_disk = [p for p in REPO.glob("medimg_demo/**/*.py") if "__pycache__" not in p.parts]
    assert on_disk and {p.relative_to(REPO).as_posix() for p in on_disk} <= set(listed)
    models = [*REPO.glob("models/*/weights.safetensors"), *REPO.glob("models/*/config.json")]
    assert len(models) >= 2 and {p.relative_to(REPO).as_posix() for p in models} <= set(listed)
    for rel in listed:
        assert rel.split("/", 1)[0] in SPACE_ENTRIES, rel
        assert not rel.startswith(("tests/", "benchmarks/", "var/", "artifacts/", "runs/", "data/")), rel
        assert "__pycache__" not in rel and ".pytest_cache" not in rel, rel
        assert not rel.lower().endswith(DATA_SUFFIXES), rel
        assert (REPO / rel).resolve().is_relative_to(REPO.resolve()), rel


def test_bad_space_name_fails_before_any_network(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    _no_network(monkeypatch)
    assert main(["deploy", "--space", "medimg", "--dry-run"]) == 2
    assert "OWNER/NAME" in caplog.text


def test_import_path_has_no_torch() -> None:
    code = ("import sys\nfrom medimg_demo.cli import main\n"
            "assert main(['deploy', '--space', 'a/b', '--dry-run']) == 0\n"
            "assert 'torch' not in sys.modules, 'deploy imported torch'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "app.py" in r.stdout.splitlines()


# --- the upload (Hub mocked) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("private", [False, True])
def test_upload_sends_exactly_the_list(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       private: bool) -> None:
    hub = FakeHub(monkeypatch, private=private)
    assert main(["deploy", "--space", SPACE, *(["--private"] if private else [])]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/spaces/{SPACE}"
    (args, kwargs), = hub.calls["create_repo"]
    assert args == (SPACE,)
    assert kwargs == {"repo_type": "space", "space_sdk": "gradio", "private": private, "exist_ok": True}
    assert ("repo_info" in hub.calls) is private  # visibility checked only when --private asks for it
    ops = hub.operations()
    assert all(isinstance(op, CommitOperationAdd) for op in ops)  # the Space held nothing stale
    assert [op.path_in_repo for op in ops] == space_files()
    for op in ops:
        assert op.path_or_fileobj == str(REPO.resolve() / op.path_in_repo)  # the file itself, README unchanged
    assert set(hub.tokens) == {"hf_fake_token"}


def test_stale_files_under_managed_entries_are_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = [".gitattributes", "README.md", "app.py", "models/old_v1/config.json", "models/old_v1/weights.safetensors",
              "medimg_demo/removed.py", "medimg_demo/__pycache__/x.pyc", "notes.md"]
    hub = FakeHub(monkeypatch, remote=remote)
    assert main(["deploy", "--space", SPACE]) == 0
    ops = hub.operations()
    deleted = [op.path_in_repo for op in ops if isinstance(op, CommitOperationDelete)]
    assert deleted == ["medimg_demo/__pycache__/x.pyc", "medimg_demo/removed.py", "models/old_v1/config.json",
                       "models/old_v1/weights.safetensors"]
    assert [op.path_in_repo for op in ops if isinstance(op, CommitOperationAdd)] == space_files()


def test_missing_token_says_how_to_log_in(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    hub = FakeHub(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(deploy_mod, "get_token", lambda: None)
    assert main(["deploy", "--space", SPACE]) == 2
    assert "no Hugging Face token" in caplog.text and "hf auth login" in caplog.text and "HF_TOKEN" in caplog.text
    assert not hub.calls


def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import get_token

    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    monkeypatch.setattr(deploy_mod, "get_token", get_token)
    assert deploy_mod.resolve_token() == "hf_from_env"


def test_private_refuses_an_existing_public_space(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    hub = FakeHub(monkeypatch, private=False)
    assert main(["deploy", "--space", SPACE, "--private"]) == 2
    assert "exists and is public" in caplog.text
    assert "create_commit" not in hub.calls


def test_hub_refusal_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    response = httpx2.Response(401, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    hub = FakeHub(monkeypatch, fail=HfHubHTTPError("401 Client Error: Unauthorized", response=response))
    assert main(["deploy", "--space", SPACE]) == 2
    assert "creating the Space someone/medimg failed on the Hub: 401" in caplog.text and "write access" in caplog.text
    assert "create_commit" not in hub.calls


# --- README front matter -----------------------------------------------------------------------------------------


def _front_matter(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[1: lines.index("---", 1)]


def test_oauth_only_in_the_uploaded_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    before = (REPO / "README.md").read_bytes()
    assert "hf_oauth: true" not in _front_matter(before.decode())
    assert 'python_version: "3.11"' in _front_matter(before.decode())
    hub = FakeHub(monkeypatch)
    assert main(["deploy", "--space", SPACE, "--oauth"]) == 0
    assert (REPO / "README.md").read_bytes() == before  # the checkout's README is untouched
    ops = {op.path_in_repo: op for op in hub.operations()}
    assert list(ops) == space_files()
    uploaded = ops["README.md"].path_or_fileobj
    assert isinstance(uploaded, bytes)
    text = uploaded.decode()
    assert "hf_oauth: true" in _front_matter(text)
    assert text.replace("hf_oauth: true\n", "", 1) == before.decode()
    assert all(op.path_or_fileobj == str(REPO.resolve() / p) for p, op in ops.items() if p != "README.md")


def test_space_readme_front_matter() -> None:
    readme = "---\nsdk: gradio\napp_file: app.py\nhf_oauth: false\n---\n# x\nhf_oauth: false\n"
    assert space_readme(readme, oauth=False) == readme
    expected = "---\nsdk: gradio\napp_file: app.py\nhf_oauth: true\n---\n# x\nhf_oauth: false\n"
    assert space_readme(readme, oauth=True) == expected
    for broken in ("# no front matter\n", "---\nsdk: gradio\n# never closed\n", "---\ntitle: x\n---\n"):
        with pytest.raises(DeployError, match="front matter"):
            space_readme(broken, oauth=True)
