"""The API reference builds (pdoc, from the docstrings) with no warning: every module imports
and every name in a package's ``__all__`` resolves. The README's Python example imports from
``jsae`` only, and ``jsae.__all__`` holds every name it uses."""

import ast
import re
from pathlib import Path

import jsae
from docs.api import build, modules

ROOT = Path(__file__).parent.parent


def test_the_api_reference_builds_without_warnings(tmp_path):
    assert build(tmp_path) == []
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert len(pages) >= len(modules())
    index = (tmp_path / "jsae.html").read_text()
    for name in jsae.__all__:  # every public name has its entry on the package's page
        assert f'id="{name}"' in index, name


def test_every_public_name_resolves_and_is_documented():
    for name in jsae.__all__:
        value = getattr(jsae, name)
        if callable(value) and not name.endswith("Error"):
            assert (value.__doc__ or "").strip(), f"jsae.{name} has no docstring"


def test_the_readme_python_example_imports_from_jsae_only_and_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    tree = ast.parse(code)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports and all(isinstance(n, ast.ImportFrom) and n.module == "jsae" for n in imports)
    used = {alias.name for n in imports for alias in n.names}
    assert used <= set(jsae.__all__)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # and it runs as written
    assert jsae.read_provenance(tmp_path / "run.parquet").source == "demo"


def test_the_package_is_typed():
    assert (ROOT / "jsae" / "py.typed").is_file()
