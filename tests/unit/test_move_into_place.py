"""files.move_into_place: a name given only if free, in one step where the system allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionstore import files


@pytest.fixture(params=["renameat2", "link-fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "link-fallback":
        monkeypatch.setattr(files, "_renameat2", [None])
    return str(request.param)


def test_the_name_is_given_and_the_temporary_name_is_gone(tmp_path: Path, mode: str) -> None:
    tmp, path = tmp_path / "db.1234.tmp", tmp_path / "db"
    tmp.write_bytes(b"new")
    files.move_into_place(tmp, path)
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_an_existing_file_is_never_replaced(tmp_path: Path, mode: str) -> None:
    tmp, path = tmp_path / "db.1234.tmp", tmp_path / "db"
    tmp.write_bytes(b"new")
    path.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        files.move_into_place(tmp, path)
    assert path.read_bytes() == b"theirs"
    assert tmp.read_bytes() == b"new"
