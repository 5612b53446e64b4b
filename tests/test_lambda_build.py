"""The Lambda packages infra/Makefile builds: each function's lock resolves for Lambda's platform
with the Makefile's own pip command, and the ingress's lock holds what the ingress imports.

The tests marked ``index`` are the only ones in the suite that leave this machine, on purpose:
they ask the package index for the locked wheels exactly as ``sam build`` does (the Makefile's
pip command, plus ``--dry-run --report``: nothing is installed), so a lock with no wheel for
Lambda's arm64 CPython 3.12 fails here rather than in someone's first deploy. They read pip's
index settings (``PIP_INDEX_URL``, proxies, certificates) but no config file, find-links or extra
index, so no wheel on this machine's disk can stand in for one the index lacks. pip downloads
every locked wheel to check its hash (with hashes it never fetches metadata only); pip's cache
keeps later runs short. ``pytest -m "not index"`` leaves them out; without a reachable index
they are skipped, and say so.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "infra" / "Makefile"
LOCKS = {"IngressFunction": "requirements-ingress.lock", "WorkerFunction": "requirements.lock"}
# Lambda's python3.12 runtime on arm64 (Amazon Linux 2023, glibc 2.34).
LAMBDA_PLATFORMS = {"manylinux_2_28_aarch64", "manylinux2014_aarch64"}
LAMBDA_MARKERS = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.12",
    "python_full_version": "3.12.12",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
}
WORKER_ONLY = {"numpy", "pypdf", "python-docx", "lxml", "tenacity", "boto3", "s3transfer"}
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|ConnectTimeout|ProxyError|Network is unreachable"
)


# ------------------------------------------------------------------------------- the Makefile


def make_commands(function: str, artifacts: Path) -> list[str]:
    """The shell commands ``make build-<function>`` runs (``make -n``: printed, not run)."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: `sam build` needs it for infra/Makefile too")
    variables = [f"ARTIFACTS_DIR={artifacts}", f"PYTHON={sys.executable}"]
    done = subprocess.run(
        [make, "-n", "--no-print-directory", "-f", str(MAKEFILE), f"build-{function}", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def pip_command(function: str, artifacts: Path) -> list[str]:
    (line,) = [c for c in make_commands(function, artifacts) if " -m pip install " in c]
    return shlex.split(line)


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == option]


def makefile_variable(name: str) -> list[str]:
    match = re.search(rf"^{name}\s*=\s*(.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"infra/Makefile defines no {name}"
    return match.group(1).split()


# ------------------------------------------------------------------------------- the locks


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    marker: str
    hashes: frozenset[str]

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        return not self.marker or Marker(self.marker).evaluate(environment)

    def requirement(self) -> str:
        """The pin without its marker, with its hashes: one line of a requirements file."""
        hashes = " ".join(f"--hash={h}" for h in sorted(self.hashes))
        return f"{self.name}=={self.version} {hashes}"


def lock_pins(lock: str) -> list[Pin]:
    pins: list[Pin] = []
    text = (ROOT / lock).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)(?:\s*;\s*(.*?))?\s+--hash", line)
        if match:
            name, version, marker = match.groups()
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]+)", line))
            pins.append(Pin(canonicalize_name(name), version, (marker or "").strip(), hashes))
    assert pins, f"no pins read from {lock}"
    return pins


# ------------------------------------------------------------------------------- offline checks


@pytest.mark.parametrize("function", sorted(LOCKS))
def test_each_function_installs_its_own_lock_as_wheels_for_lambda(
    function: str, tmp_path: Path
) -> None:
    command = pip_command(function, tmp_path)
    assert option_values(command, "-r") == [LOCKS[function]]
    assert set(option_values(command, "--platform")) == LAMBDA_PLATFORMS
    assert option_values(command, "--implementation") == ["cp"]
    assert option_values(command, "--python-version") == ["3.12"]
    assert "--only-binary=:all:" in command and "--no-compile" in command
    assert option_values(command, "--target") == [str(tmp_path)]


def test_both_functions_install_with_the_same_pip_flags(tmp_path: Path) -> None:
    ingress, worker = (pip_command(f, tmp_path) for f in ("IngressFunction", "WorkerFunction"))
    lock = ingress.index("-r") + 1
    assert ingress[:lock] == worker[:lock] and ingress[lock + 1 :] == worker[lock + 1 :]


def test_the_ingress_lock_is_the_full_lock_cut_down() -> None:
    full = {(p.name, p.version, p.marker): p for p in lock_pins(LOCKS["WorkerFunction"])}
    ingress = lock_pins(LOCKS["IngressFunction"])
    differing = [p for p in ingress if full.get((p.name, p.version, p.marker)) != p]
    assert differing == [], "requirements-ingress.lock pins what requirements.lock does not"
    assert not {p.name for p in ingress} & WORKER_ONLY
    wanted = {  # what requirements-ingress.in asks for
        canonicalize_name(line.split("#")[0].strip())
        for line in (ROOT / "requirements-ingress.in").read_text().splitlines()
        if line.split("#")[0].strip()
    }
    assert wanted <= {p.name for p in ingress}


def ingress_modules() -> list[str]:
    """Our modules the ingress can import: bots.aws.ingress and, transitively, every ``core`` or
    ``bots`` module any of them imports anywhere (functions included)."""
    seen: dict[str, Path] = {}
    pending = ["bots.aws.ingress"]
    while pending:
        name = pending.pop()
        base = ROOT.joinpath(*name.split("."))
        path = base / "__init__.py" if (base / "__init__.py").exists() else base.with_suffix(".py")
        if name in seen or not path.exists():
            continue
        seen[name] = path
        pending.extend(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            pending.extend(n for n in names if n.split(".")[0] in ("core", "bots"))
    return sorted(seen)


LOADED_BY_THE_INGRESS = """
import importlib, json, sys
before = set(sys.modules)
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
from bots.slack.ingress import build_bolt_app
from bots.teams.ingress import teams_route
from core.config import Settings
settings = Settings(slack_signing_secret="s", slack_bot_token="xoxb-x", microsoft_app_id="a",
                    microsoft_app_password="p", microsoft_app_tenant_id="t")
build_bolt_app(settings, lambda job: None)
teams_route(settings, lambda job: None, allow_unauthenticated=False, prewarm_keys=False)
print(json.dumps({
    name: getattr(module, "__file__", None) for name, module in sys.modules.items()
    if name not in before
}))
"""


def package_of(names: list[str], folder: Path) -> Path:
    """A folder holding (as links) exactly the installed files of these distributions: what
    ``pip install --target`` puts in a Lambda package, taken from this environment."""
    from importlib.metadata import distribution

    folder.mkdir()
    for name in names:
        dist = distribution(name)
        for top in {Path(f).parts[0] for f in dist.files or [] if Path(f).parts[0] != ".."}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def test_the_ingress_runs_on_what_its_lock_installs(tmp_path: Path) -> None:
    """Every module the ingress code can load (all its modules, a Bolt app, the Teams route)
    imports in a process whose only packages are those of requirements-ingress.lock, as in its
    Lambda package: an import of anything else (msrest's undeclared aiohttp, say) fails here,
    and optional ones (jsonpickle's yaml, oauthlib's blinker) are left out as in Lambda."""
    package = package_of([p.name for p in lock_pins(LOCKS["IngressFunction"])], tmp_path / "pkg")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(package)]),
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", LOADED_BY_THE_INGRESS, json.dumps(ingress_modules())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = {name: file for name, file in json.loads(done.stdout).items() if file}
    assert {"slack_bolt", "botbuilder.core", "aiohttp"} <= set(files)  # the check sees imports
    stdlib = Path(os.__file__).parent
    places = (ROOT / "core", ROOT / "bots", package, stdlib)
    elsewhere = {
        name: file
        for name, file in files.items()
        if not any(Path(file).is_relative_to(p) for p in places)
        or Path(file).is_relative_to(stdlib / "site-packages")
    }
    assert elsewhere == {}


def aws_services_called(paths: list[Path]) -> set[str]:
    """The services of every ``create_client("x", ...)`` / ``client("x", ...)`` call."""
    services = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("create_client", "client")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                services.add(str(node.args[0].value))
    return services


def test_the_ingress_package_keeps_the_botocore_models_of_the_services_it_calls(
    tmp_path: Path,
) -> None:
    import botocore
    import botocore.loaders
    import botocore.session

    paths = [
        ROOT.joinpath(*m.split(".")).with_suffix(".py")
        if not ROOT.joinpath(*m.split(".")).is_dir()
        else ROOT.joinpath(*m.split("."), "__init__.py")
        for m in ingress_modules()
    ]
    kept = makefile_variable("INGRESS_AWS_SERVICES")
    assert aws_services_called(paths) == set(kept)

    # botocore's data folder as the Makefile leaves it: top-level files, the kept services.
    data = Path(botocore.__file__).parent / "data"
    pruned = tmp_path / "data"
    pruned.mkdir()
    for entry in data.iterdir():
        if entry.is_file():
            shutil.copy(entry, pruned)
        elif entry.name in kept:
            shutil.copytree(entry, pruned / entry.name)
    session = botocore.session.Session()
    loader = botocore.loaders.Loader(
        extra_search_paths=[str(pruned)], include_default_search_paths=False
    )
    session.register_component("data_loader", loader)
    for service in kept:
        client = session.create_client(service, region_name="eu-west-1")
        assert client.meta.service_model.operation_names


# ------------------------------------------------------------------------------- the index


def pip_env() -> dict[str, str]:
    """This environment, minus pip's config files, find-links and extra indexes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def dry_run(command: list[str], report: Path) -> dict[str, Any]:
    done = subprocess.run(
        [*command, "--dry-run", "--report", str(report), "--timeout", "30", "--retries", "2"],
        cwd=ROOT,
        env=pip_env(),
        capture_output=True,
        text=True,
        timeout=170,
    )
    if done.returncode != 0 and UNREACHABLE.search(done.stderr):
        pytest.skip(f"the package index cannot be reached: {done.stderr.strip()[-300:]}")
    errors = "\n".join(done.stderr.strip().splitlines()[-12:])
    assert done.returncode == 0, f"{shlex.join(command)}\n{errors}"
    report_data: dict[str, Any] = json.loads(report.read_text())
    return report_data


def installed(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """name -> (version, wheel file name, its sha256), from pip's installation report."""
    out = {}
    for item in report["install"]:
        info = item["download_info"]
        archive = info.get("archive_info", {})
        digest = archive.get("hashes", {}).get("sha256") or archive.get("hash", "=").split("=")[1]
        wheel = info["url"].rsplit("/", 1)[-1]
        out[canonicalize_name(item["metadata"]["name"])] = (
            item["metadata"]["version"],
            wheel,
            f"sha256:{digest}",
        )
    return out


def assert_lambda_wheels(resolved: dict[str, tuple[str, str, str]], pins: list[Pin]) -> None:
    by_name = {p.name: p for p in pins}
    assert set(resolved) == set(by_name), "pip installs other packages than the lock pins"
    for name, (version, wheel, digest) in resolved.items():
        assert version == by_name[name].version, name
        assert digest in by_name[name].hashes, f"{wheel} is not one of the lock's files"
        tags = wheel.removesuffix(".whl").split("-")[-1]
        assert tags == "any" or "aarch64" in tags, f"{wheel} is not a wheel for Lambda's arm64"


@pytest.mark.index
@pytest.mark.timeout(180)
@pytest.mark.parametrize("function", sorted(LOCKS))
def test_each_lock_resolves_for_lambda_with_the_makefiles_pip_command(
    function: str, tmp_path: Path
) -> None:
    """The Makefile's command, as `sam build` runs it on this machine (pip reads the lock's
    markers for the Python running it), then the pins Lambda's Python 3.12 reads differently
    (numpy's, when this is not 3.12), with the same flags."""
    command = pip_command(function, tmp_path / "package")
    pins = lock_pins(LOCKS[function])
    resolved = installed(dry_run(command, tmp_path / "report.json"))
    assert_lambda_wheels(resolved, [p for p in pins if p.applies()])
    if function == "WorkerFunction":
        numpy = resolved["numpy"][1]
        assert "manylinux_2_28_aarch64" in numpy  # numpy 2.3+ has no manylinux2014 aarch64

    lambda_only = [p for p in pins if p.applies(LAMBDA_MARKERS) and not p.applies()]
    if lambda_only:
        requirements = tmp_path / "lambda-only.txt"
        requirements.write_text("\n".join(p.requirement() for p in lambda_only))
        lock = command.index("-r") + 1
        # pip checks Requires-Python against the interpreter running it, not --python-version:
        # this run asks only whether Lambda's wheels of these pins exist (tags still checked).
        extra = ["--no-deps", "--ignore-requires-python"]
        only = [*command[:lock], str(requirements), *command[lock + 1 :], *extra]
        resolved = installed(dry_run(only, tmp_path / "report-lambda.json"))
        assert_lambda_wheels(resolved, lambda_only)
