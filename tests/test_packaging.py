"""The package's declared dependencies: ranges (read with ``packaging``) that admit the tree
the tests run on and the releases after it, an upper bound only where a break is known, and
the library's dependencies free of the explorer's (Streamlit, Altair) and of W&B.

The tested versions come from ``constraints.txt`` (the exact tree ``make test`` installs),
so a range that excludes what CI runs fails here."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent

KNOWN_BREAKS = {"transformer-lens": Version("4")}
"""The first release known to break jsae, per package: TransformerLens 4 removed
``HookedTransformer``."""

APP_ONLY = {"streamlit", "altair"}
"""Imported by the explorer (``streamlit_app.py``, ``app/``, ``jsae.charts``) only."""


def declared(group: str | None = None) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (
        project["dependencies"]
        if group is None
        else project.get("optional-dependencies", {}).get(group, [])
    )
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements}


def pinned(path: Path) -> dict[str, Version]:
    """``name==version`` lines of a requirements or constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)", line.strip())
        if match:
            name = canonicalize_name(match.group(1).split("[")[0])
            pins[name] = Version(match.group(2))
    return pins


def next_releases(version: Version) -> list[Version]:
    """The next patch, minor and major releases after ``version``."""
    major, minor, micro = (*version.release, 0, 0)[:3]
    return [
        Version(f"{major}.{minor}.{micro + 1}"),
        Version(f"{major}.{minor + 1}.0"),
        Version(f"{major + 1}.0.0"),
    ]


TESTED = pinned(ROOT / "constraints.txt") | pinned(ROOT / "requirements-ray.txt")
RUNTIME = declared()
EXTRAS = {group: declared(group) for group in ("app", "wandb", "ray")}


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_each_range_admits_the_tested_version_and_the_releases_after_it(name):
    spec = RUNTIME[name].specifier
    tested = TESTED[name]
    assert spec.contains(tested), f"{name}{spec} refuses the tested {tested}"
    for later in next_releases(tested):
        if name in KNOWN_BREAKS and later >= KNOWN_BREAKS[name]:
            assert not spec.contains(later), f"{name}{spec} admits {later}, a known break"
        else:
            assert spec.contains(later), f"{name}{spec} refuses {later}, with no break known"


def test_torch_is_a_floor_not_a_pin():
    spec = RUNTIME["torch"].specifier
    for version in ("2.6.0", "2.13.0", "2.14.0", "2.14.1", "2.15.0"):
        assert spec.contains(version), version
    assert not any(s.operator in ("==", "===", "~=") for s in spec)


def test_no_library_dependency_is_pinned_exactly():
    for name, requirement in {**RUNTIME, **EXTRAS["app"], **EXTRAS["wandb"]}.items():
        assert not any(s.operator in ("==", "===") for s in requirement.specifier), name


@pytest.mark.parametrize(
    ("name", "floor"),
    [("transformers", "5.9"), ("numpy", "2"), ("pandas", "2.2.2"), ("wandb", "0.19.10")],
)
def test_floors_the_code_needs(name, floor):
    """transformers ≥ 5.9 (TransformerLens 3.9's), numpy ≥ 2 (np.trapezoid), pandas ≥ 2.2.2
    (DataFrame.map, built for NumPy 2), wandb ≥ 0.19.10 (reinit="create_new")."""
    requirement = {**RUNTIME, **EXTRAS["wandb"]}[name]
    below = Version(floor).release
    below = Version(".".join(map(str, (*below[:-1], below[-1] - 1)))) if below[-1] else None
    assert requirement.specifier.contains(floor)
    if below is not None:
        assert not requirement.specifier.contains(below), f"{name} admits {below}"


def test_the_explorer_and_wandb_are_extras_of_a_library_that_never_imports_them():
    assert not APP_ONLY & set(RUNTIME), "Streamlit/Altair are the explorer's, not the library's"
    assert "wandb" not in RUNTIME
    assert APP_ONLY | {"wandb"} <= set(EXTRAS["app"])
    assert set(EXTRAS["wandb"]) == {"wandb"}
    for extra in EXTRAS.values():
        for name, requirement in extra.items():
            assert requirement.specifier.contains(TESTED[name]), name


def test_every_runtime_and_extra_dependency_is_in_the_tested_tree():
    required = set(pinned(ROOT / "requirements.txt"))
    for name in [*RUNTIME, *EXTRAS["app"], *EXTRAS["wandb"]]:
        assert name in required, f"{name} is declared but requirements.txt does not pin it"


def test_requirements_keep_the_local_cpu_torch():
    assert pinned(ROOT / "requirements.txt")["torch"] == Version("2.13.0")
    assert TESTED["torch"] == Version("2.13.0")
