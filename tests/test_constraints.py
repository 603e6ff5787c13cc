"""constraints.txt pins what the committed measurements were taken with (scripts/setup.sh installs with
it). A dependency added to pyproject.toml without a pin, or a pin outside pyproject's range, would let a
fresh install (CI's) drift from the measured versions again, so both are checked here."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, Version]:
    out: dict[str, Version] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, ver = line.partition("==")
        assert sep and ver, f"constraints.txt line {n}: {line!r} is not name==version"
        key = canonicalize_name(name)
        assert key not in out, f"constraints.txt line {n}: {name} is pinned twice"
        out[key] = Version(ver)
    return out


def installed_extras() -> list[str]:
    """The extras scripts/setup.sh installs (`-e ".[ui,llm,…]"`)."""
    m = re.search(r'-e "\.\[([a-z,_-]+)\]"', (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8"))
    assert m, "scripts/setup.sh no longer installs the project with extras"
    return m.group(1).split(",")


def requirements() -> list[Requirement]:
    """pyproject's dependencies and those of every extra setup.sh installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in installed_extras():
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_every_dependency_is_pinned_inside_its_range():
    pinned = pins()
    problems = []
    for req in requirements():
        key = canonicalize_name(req.name)
        if key == "torch":  # pinned by scripts/setup.sh (TORCH_SPEC), the CPU build
            continue
        if key not in pinned:
            problems.append(f"{req.name}: not in constraints.txt")
        elif not req.specifier.contains(pinned[key], prereleases=True):
            problems.append(f"{req.name}: pinned {pinned[key]}, pyproject asks {req.specifier}")
    assert not problems, "; ".join(problems) + " (fix: reinstall with scripts/setup.sh and regenerate " \
        "constraints.txt as its header says)"


def test_torch_is_left_to_setup():
    # a torch pin here would fight TORCH_SPEC (the CPU build on Linux, the default wheel on macOS)
    assert "torch" not in pins()
