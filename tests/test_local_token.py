"""The local token file (``CHATBOT_DATA_DIR/local-token``) is trusted only when it is private to
this user: a symlink, a file readable by others or owned by someone else could let another
account know or choose the token, so a new one replaces it, written owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bots import cli
from bots.cli import TOKEN_FILE, local_token

PLANTED = "planted-token-dummy-0123456789abcdefghijklmnop"  # long enough to be taken


def planted(data: Path, mode: int = 0o600) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    path = data / TOKEN_FILE
    path.write_text(PLANTED)
    path.chmod(mode)
    return path


def private(path: Path) -> bool:
    found = path.lstat()
    return stat.S_ISREG(found.st_mode) and found.st_mode & 0o777 == 0o600


def test_a_private_token_file_is_kept(tmp_path: Path) -> None:
    planted(tmp_path)
    assert local_token(tmp_path) == PLANTED


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_token_others_can_read_is_replaced_by_a_private_one(tmp_path: Path, mode: int) -> None:
    path = planted(tmp_path, mode)
    token = local_token(tmp_path)
    assert token != PLANTED and len(token) >= 32
    assert private(path) and path.read_text() == token
    assert local_token(tmp_path) == token  # the new one is kept


def test_a_symlink_is_not_followed_and_its_target_is_left_alone(tmp_path: Path) -> None:
    elsewhere = planted(tmp_path / "elsewhere")
    data = tmp_path / "data"
    data.mkdir()
    (data / TOKEN_FILE).symlink_to(elsewhere)
    token = local_token(data)
    assert token != PLANTED
    assert private(data / TOKEN_FILE)  # a file of its own now, not the link
    assert elsewhere.read_text() == PLANTED  # the link's target was not written


def test_a_token_file_owned_by_someone_else_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = planted(tmp_path)
    monkeypatch.setattr(cli.os, "getuid", lambda: path.stat().st_uid + 1)
    assert local_token(tmp_path) != PLANTED


def test_a_fifo_in_its_place_neither_hangs_nor_is_trusted(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / TOKEN_FILE)
    token = local_token(tmp_path)  # O_NONBLOCK: no writer needed to get past the open
    assert len(token) >= 32 and private(tmp_path / TOKEN_FILE)


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    local_token(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE]
