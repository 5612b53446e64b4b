"""The Teams app package: what "Upload a custom app" needs, built from manifest/teams/."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots import teams_package
from bots.teams_package import build_package

APP_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
BOT_ID = "0b6f6e3e-8a3f-4a55-9a43-2d6a1c2f9e10"


@pytest.fixture
def package(tmp_path: Path) -> Iterator[zipfile.ZipFile]:
    path = build_package(tmp_path / "teams-app.zip", app_id=APP_ID, bot_id=BOT_ID)
    with zipfile.ZipFile(path) as archive:
        yield archive


def _manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    loaded = json.loads(archive.read("manifest.json"))
    assert isinstance(loaded, dict)
    return loaded


def _ihdr(data: bytes) -> tuple[int, int, int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color_type


def _pixels(data: bytes) -> list[tuple[int, int, int, int]]:
    """RGBA pixels of an 8-bit RGBA PNG whose rows all use filter type 0 (our writer's)."""
    width, height, depth, color_type = _ihdr(data)
    assert (depth, color_type) == (8, 6)
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 4 + 1
    assert len(raw) == stride * height
    pixels = []
    for row in range(height):
        line = raw[row * stride : (row + 1) * stride]
        assert line[0] == 0, "filter type 0 expected"
        pixels += [tuple(line[i : i + 4]) for i in range(1, len(line), 4)]
    return pixels  # type: ignore[return-value]


def test_the_zip_holds_exactly_the_manifest_and_two_icons_at_its_root(
    package: zipfile.ZipFile,
) -> None:
    assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]


def test_the_placeholders_are_filled(package: zipfile.ZipFile) -> None:
    manifest = _manifest(package)
    assert manifest["id"] == APP_ID
    assert manifest["bots"][0]["botId"] == BOT_ID
    assert "{{" not in package.read("manifest.json").decode()


def test_the_bot_talks_everywhere_takes_files_and_lists_summarize(
    package: zipfile.ZipFile,
) -> None:
    (bot,) = _manifest(package)["bots"]
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is True
    assert bot["isNotificationOnly"] is False
    for scope in ("personal", "team", "groupChat"):
        commands = [
            command
            for entry in bot["commandLists"]
            if scope in entry["scopes"]
            for command in entry["commands"]
        ]
        expected = ["summarize", "forget me"] if scope == "personal" else ["summarize"]
        assert [c["title"] for c in commands] == expected, scope
        assert all(c["description"] for c in commands)


def test_the_schema_requires_these_fields(package: zipfile.ZipFile) -> None:
    manifest = _manifest(package)
    for name in ("manifestVersion", "version", "id", "developer", "name", "description"):
        assert manifest[name]
    for url in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        assert manifest["developer"][url].startswith("https://")
    assert len(manifest["name"]["short"]) <= 30
    assert len(manifest["description"]["short"]) <= 80
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", manifest["accentColor"])


def test_the_manifest_version_matches_its_schema_url(package: zipfile.ZipFile) -> None:
    manifest = _manifest(package)
    match = re.fullmatch(
        r"https://developer\.microsoft\.com/json-schemas/teams/v(?P<v>[0-9.]+)/"
        r"MicrosoftTeams\.schema\.json",
        manifest["$schema"],
    )
    assert match is not None
    assert match["v"] == manifest["manifestVersion"]


def test_the_icons_have_the_sizes_teams_requires(package: zipfile.ZipFile) -> None:
    assert _ihdr(package.read("color.png"))[:2] == (192, 192)
    assert _ihdr(package.read("outline.png"))[:2] == (32, 32)


def test_the_outline_icon_is_white_on_transparent(package: zipfile.ZipFile) -> None:
    pixels = _pixels(package.read("outline.png"))
    assert all(a == 0 or (r, g, b) == (255, 255, 255) for r, g, b, a in pixels)
    assert any(a == 255 for *_, a in pixels), "the glyph is drawn"
    assert any(a == 0 for *_, a in pixels), "the background is transparent"


def test_the_color_icon_is_opaque(package: zipfile.ZipFile) -> None:
    assert all(a == 255 for *_, a in _pixels(package.read("color.png")))


def _draw_icons() -> Any:
    """The development script that draws the icons (it is not an importable module)."""
    path = teams_package.MANIFEST_DIR / "draw_icons.py"
    spec = importlib.util.spec_from_file_location("draw_icons", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_icons_are_what_the_generator_draws() -> None:
    committed = teams_package.MANIFEST_DIR
    draw_icons = _draw_icons()
    assert _pixels((committed / "color.png").read_bytes()) == _pixels(draw_icons.draw_color_icon())
    assert _pixels((committed / "outline.png").read_bytes()) == _pixels(
        draw_icons.draw_outline_icon()
    )


def test_the_icon_drawing_is_not_shipped_with_the_service() -> None:
    assert not hasattr(teams_package, "draw_color_icon")
    assert not hasattr(teams_package, "encode_png")


@pytest.mark.parametrize(
    ("app_id", "bot_id", "flag"),
    [
        ("not-a-guid", BOT_ID, "--app-id"),
        ("{{TEAMS_APP_ID}}", BOT_ID, "--app-id"),
        (APP_ID, "28:0b6f6e3e", "--bot-id"),
        (APP_ID, "", "--bot-id"),
    ],
)
def test_an_id_that_is_not_a_guid_is_refused_naming_its_flag(
    tmp_path: Path, app_id: str, bot_id: str, flag: str
) -> None:
    with pytest.raises(ValueError, match=flag):
        build_package(tmp_path / "app.zip", app_id=app_id, bot_id=bot_id)
    assert not (tmp_path / "app.zip").exists()


def _copy_manifest_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "teams"
    shutil.copytree(teams_package.MANIFEST_DIR, folder)
    return folder


def test_an_icon_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    folder = _copy_manifest_dir(tmp_path)
    (folder / "outline.png").write_bytes(_draw_icons().encode_png(16, 16, b"\xff" * 16 * 16 * 4))
    with pytest.raises(ValueError, match=r"icons\.outline must be 32x32 pixels, not 16x16"):
        build_package(tmp_path / "app.zip", app_id=APP_ID, bot_id=BOT_ID, manifest_dir=folder)


def test_a_manifest_without_summarize_is_refused(tmp_path: Path) -> None:
    folder = _copy_manifest_dir(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["bots"][0]["commandLists"] = manifest["bots"][0]["commandLists"][:1]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no 'summarize' for team"):
        build_package(tmp_path / "app.zip", app_id=APP_ID, bot_id=BOT_ID, manifest_dir=folder)


def test_a_manifest_without_forget_me_in_the_personal_chat_is_refused(tmp_path: Path) -> None:
    folder = _copy_manifest_dir(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    personal = manifest["bots"][0]["commandLists"][0]
    assert personal["scopes"] == ["personal"]
    personal["commands"] = [c for c in personal["commands"] if c["title"] != "forget me"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no 'forget me' for personal"):
        build_package(tmp_path / "app.zip", app_id=APP_ID, bot_id=BOT_ID, manifest_dir=folder)


def test_main_takes_the_bot_id_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("MICROSOFT_APP_ID", BOT_ID)
    assert teams_package.main(["--app-id", APP_ID, "--out", "out/app.zip"]) == 0
    with zipfile.ZipFile(tmp_path / "out" / "app.zip") as archive:
        assert _manifest(archive)["bots"][0]["botId"] == BOT_ID
    assert "out/app.zip" in capsys.readouterr().out


def test_main_without_any_bot_id_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICROSOFT_APP_ID", raising=False)
    assert teams_package.main(["--app-id", APP_ID]) == 2
    assert "--bot-id or set MICROSOFT_APP_ID" in capsys.readouterr().err
    assert not (tmp_path / "teams-app.zip").exists()


def test_main_reports_a_bad_app_id_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = teams_package.main(["--app-id", "x", "--bot-id", BOT_ID, "--out", str(tmp_path / "a")])
    assert code == 2
    assert "--app-id must be a GUID" in capsys.readouterr().err


def test_streaming_and_feedback_need_no_manifest_property(package: zipfile.ZipFile) -> None:
    """Native streaming (personal chats) and the feedback buttons are turned on per message
    (``streaminfo`` entities, ``channelData.feedbackLoopEnabled``), not in the manifest: the
    bot entry keeps to schema properties (an unknown one fails Teams' upload validation) and
    includes the personal scope, the only one Teams streams in."""
    (bot,) = _manifest(package)["bots"]
    assert set(bot) == {"botId", "scopes", "supportsFiles", "isNotificationOnly", "commandLists"}
    assert "personal" in bot["scopes"]
