"""``chatbot teams-package``: the Teams app package to upload as a custom app.

Teams installs a bot from a zip holding ``manifest.json`` and its two icons at the zip's root.
The manifest in ``manifest/teams/`` carries two placeholders, ``{{TEAMS_APP_ID}}`` (the Teams
app's own GUID, kept the same across updates) and ``{{MICROSOFT_APP_ID}}`` (the Azure Bot's
app id); :func:`build_package` fills them, checks what Teams would refuse (missing fields, the
wrong icon sizes), and writes the zip. See docs/teams.md.

The two icons are committed beside the manifest; ``manifest/teams/draw_icons.py`` (a
development script, not part of the service) draws them, so they can be reviewed and
regenerated as code.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifest" / "teams"
APP_ID_PLACEHOLDER = "{{TEAMS_APP_ID}}"
BOT_ID_PLACEHOLDER = "{{MICROSOFT_APP_ID}}"
# (width and height in pixels) Teams' app package rules: a full-colour icon and a white outline
# icon on a transparent background.
ICON_SIZES = {"color": 192, "outline": 32}
BOT_SCOPES = ("personal", "team", "groupChat")
SUMMARIZE_COMMAND = "summarize"
FORGET_COMMAND = "forget me"  # personal chat only: the answer says what was erased

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SCHEMA_URL = re.compile(r"/v(?P<version>[0-9.]+)/MicrosoftTeams\.schema\.json$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES_WITH_ALPHA = (4, 6)  # grey + alpha, RGB + alpha
# A fixed timestamp makes the same inputs give the same zip, byte for byte.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class TeamsPackageError(ValueError):
    """The package cannot be built; the message says what to fix."""


def build_package(
    out: Path, *, app_id: str, bot_id: str, manifest_dir: Path = MANIFEST_DIR
) -> Path:
    """Fill the manifest's placeholders, validate it and its icons, and write the zip to ``out``."""
    if not _GUID.match(app_id):
        raise TeamsPackageError(
            f"--app-id must be a GUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301 "
            f"(the Teams app's own id; create one once with uuidgen), not {app_id!r}"
        )
    if not _GUID.match(bot_id):
        raise TeamsPackageError(
            f"--bot-id must be a GUID: the Azure Bot's Microsoft App ID (MICROSOFT_APP_ID), "
            f"not {bot_id!r}"
        )
    manifest = load_manifest(manifest_dir, app_id=app_id, bot_id=bot_id)
    validate_manifest(manifest, manifest_dir)
    icons = manifest["icons"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as package:
        _add(package, "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
        for kind in ICON_SIZES:
            _add(package, icons[kind], (manifest_dir / icons[kind]).read_bytes())
    return out


def load_manifest(manifest_dir: Path, *, app_id: str, bot_id: str) -> dict[str, Any]:
    """The manifest with both placeholders filled (the ids must already be valid GUIDs)."""
    path = manifest_dir / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TeamsPackageError(f"no Teams manifest at {path}") from exc
    text = text.replace(APP_ID_PLACEHOLDER, app_id).replace(BOT_ID_PLACEHOLDER, bot_id)
    left = sorted(set(re.findall(r"\{\{[^}]*\}\}", text)))
    if left:
        raise TeamsPackageError(f"{path} has placeholders nothing fills: {', '.join(left)}")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TeamsPackageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise TeamsPackageError(f"{path} must hold a JSON object")
    return manifest


def validate_manifest(manifest: dict[str, Any], manifest_dir: Path) -> None:
    """Raise :class:`TeamsPackageError` listing every problem Teams would reject the app for.

    Not the whole JSON schema: the fields the schema requires, the bot this product needs
    (scopes, files, the ``summarize`` command), and the icon files, which no schema checks.
    """
    problems: list[str] = []
    for name in ("manifestVersion", "version", "id", "developer", "name", "description"):
        if not manifest.get(name):
            problems.append(f"{name} is missing")
    schema = _SCHEMA_URL.search(str(manifest.get("$schema", "")))
    if schema is None:
        problems.append("$schema must be a .../vX.Y/MicrosoftTeams.schema.json URL")
    elif schema["version"] != manifest.get("manifestVersion"):
        problems.append(
            f"manifestVersion {manifest.get('manifestVersion')!r} does not match "
            f"the $schema URL's v{schema['version']}"
        )
    if not _GUID.match(str(manifest.get("id", ""))):
        problems.append("id must be a GUID")
    developer = _object(manifest, "developer")
    if not developer.get("name"):
        problems.append("developer.name is missing")
    for url in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        if not str(developer.get(url, "")).startswith("https://"):
            problems.append(f"developer.{url} must be an https:// URL")
    _check_text(problems, manifest, "name", "short", 30)
    _check_text(problems, manifest, "name", "full", 100, required=False)
    _check_text(problems, manifest, "description", "short", 80)
    _check_text(problems, manifest, "description", "full", 4000)
    if not _HEX_COLOR.match(str(manifest.get("accentColor", ""))):
        problems.append("accentColor must be a colour like #232F3E")
    problems += _bot_problems(manifest.get("bots"))
    problems += _icon_problems(_object(manifest, "icons"), manifest_dir)
    if problems:
        raise TeamsPackageError("the Teams manifest is not valid: " + "; ".join(problems))


def png_header(data: bytes) -> tuple[int, int, int]:
    """Width, height and colour type from a PNG's IHDR chunk (which must come first)."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise TeamsPackageError("not a PNG file")
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    return width, height, color_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags, for ``chatbot teams-package`` or :func:`main`."""
    parser.add_argument(
        "--app-id",
        required=True,
        help="the Teams app's own GUID: make one once (uuidgen) and keep it for every update",
    )
    parser.add_argument(
        "--bot-id", help="the Azure Bot's Microsoft App ID (default: MICROSOFT_APP_ID)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("teams-app.zip"), help="zip to write (teams-app.zip)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the package the parsed flags describe; 0 when written, 2 with a message if not."""
    bot_id = args.bot_id
    if bot_id is None:
        from core.config import ConfigError, load_settings

        try:
            bot_id = load_settings().microsoft_app_id
        except ConfigError as exc:
            print(f"chatbot: configuration error: {exc}", file=sys.stderr)
            return 2
        if not bot_id:
            print(
                "chatbot teams-package: no bot id: pass --bot-id or set MICROSOFT_APP_ID",
                file=sys.stderr,
            )
            return 2
    try:
        out = build_package(args.out, app_id=args.app_id, bot_id=bot_id)
    except TeamsPackageError as exc:
        print(f"chatbot teams-package: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"chatbot teams-package: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{out}: upload it in Teams (Apps → Manage your apps → Upload an app)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chatbot teams-package", description="Build the Teams app package (a zip)."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


# --- manifest checks ----------------------------------------------------------------------


def _object(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    value = manifest.get(name)
    return value if isinstance(value, dict) else {}


def _check_text(
    problems: list[str],
    manifest: dict[str, Any],
    section: str,
    field: str,
    limit: int,
    *,
    required: bool = True,
) -> None:
    value = _object(manifest, section).get(field)
    if value is None or value == "":
        if required:
            problems.append(f"{section}.{field} is missing")
    elif not isinstance(value, str) or len(value) > limit:
        problems.append(f"{section}.{field} must be text of at most {limit} characters")


def _bot_problems(bots: object) -> list[str]:
    if not isinstance(bots, list) or len(bots) != 1 or not isinstance(bots[0], dict):
        return ["bots must hold exactly one bot"]
    bot: dict[str, Any] = bots[0]
    problems = []
    if not _GUID.match(str(bot.get("botId", ""))):
        problems.append("bots[0].botId must be a GUID")
    scopes = bot.get("scopes") or []
    missing = [scope for scope in BOT_SCOPES if scope not in scopes]
    if missing:
        problems.append(f"bots[0].scopes lacks {', '.join(missing)}")
    if bot.get("supportsFiles") is not True:
        problems.append("bots[0].supportsFiles must be true (files in the personal chat)")
    if bot.get("isNotificationOnly", False) is not False:
        problems.append("bots[0].isNotificationOnly must be false (people talk to it)")
    for scope in BOT_SCOPES:
        titles = {
            command.get("title")
            for entry in bot.get("commandLists") or []
            if scope in (entry.get("scopes") or [])
            for command in entry.get("commands") or []
        }
        if SUMMARIZE_COMMAND not in titles:
            problems.append(f"bots[0].commandLists has no {SUMMARIZE_COMMAND!r} for {scope}")
        if scope == "personal" and FORGET_COMMAND not in titles:
            problems.append(f"bots[0].commandLists has no {FORGET_COMMAND!r} for {scope}")
    return problems


def _icon_problems(icons: dict[str, Any], manifest_dir: Path) -> list[str]:
    problems = []
    for kind, size in ICON_SIZES.items():
        name = icons.get(kind)
        if not isinstance(name, str) or not name:
            problems.append(f"icons.{kind} is missing")
            continue
        if "/" in name or "\\" in name or name == "manifest.json":
            problems.append(f"icons.{kind} must be a file name at the package root, not {name!r}")
            continue
        path = manifest_dir / name
        try:
            width, height, color_type = png_header(path.read_bytes())
        except FileNotFoundError:
            problems.append(f"icons.{kind}: {path} does not exist")
            continue
        except TeamsPackageError:
            problems.append(f"icons.{kind}: {path} is not a PNG")
            continue
        if (width, height) != (size, size):
            problems.append(f"icons.{kind} must be {size}x{size} pixels, not {width}x{height}")
        if kind == "outline" and color_type not in _PNG_COLOR_TYPES_WITH_ALPHA:
            problems.append("icons.outline needs an alpha channel (white on transparent)")
    if icons.get("color") == icons.get("outline"):
        problems.append("icons.color and icons.outline must be two files")
    return problems


def _add(package: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    package.writestr(info, data)


if __name__ == "__main__":
    sys.exit(main())
