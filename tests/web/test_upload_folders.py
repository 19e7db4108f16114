"""Each upload in a folder of its own: two uploads of the same bytes never share a path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from medimg_demo.web.upload_folders import UploadFolders, install
from medimg_demo.web.uploads import GRADIO_DIR


def _stored(folder: Path, data: bytes) -> str:
    """An upload as Gradio stores it: <hash folder>/<masked name>."""
    path = folder / ("a" * 64) / "uuuu.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_each_upload_of_the_same_bytes_gets_its_own_path(tmp_path: Path) -> None:
    folders = UploadFolders()
    handed_out = []
    for _ in range(2):  # Gradio: store the file, then update(the list it returns to the client)
        returned = [_stored(tmp_path, b"scan")]
        folders.update(returned)
        handed_out.append(returned[0])
    first, second = (Path(p) for p in handed_out)
    assert first != second and first.read_bytes() == second.read_bytes() == b"scan"
    assert GRADIO_DIR.match(first.parent.name) and first.parent.parent == tmp_path  # treated as Gradio's by clean-up
    assert set(folders) == set(handed_out)
    first.unlink()  # one request consumes its upload: the other's is untouched
    assert second.exists()


def test_a_path_that_cannot_be_moved_is_kept_as_it_is(tmp_path: Path) -> None:
    folders = UploadFolders()
    gone = [str(tmp_path / ("b" * 64) / "uuuu.png")]
    folders.update(gone)
    assert gone == [str(tmp_path / ("b" * 64) / "uuuu.png")] and gone[0] in folders
    assert [p.name for p in tmp_path.iterdir()] == []  # no empty folder left behind
    folders.update({"/elsewhere/x.png"})  # not the upload route's list: added as given
    assert "/elsewhere/x.png" in folders


def test_install_replaces_the_set_in_both_of_gradio_s_references() -> None:
    gradio_set: set[str] = {"/up/x"}
    other: set[str] = set()
    blocks = SimpleNamespace(upload_file_set=gradio_set, temp_file_sets=[gradio_set, other])
    folders = install(blocks)
    assert blocks.upload_file_set is folders and blocks.temp_file_sets[0] is folders
    assert blocks.temp_file_sets[1] is other and "/up/x" in folders
