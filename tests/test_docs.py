"""The documentation: the site builds without a warning, every page is in its nav, the
README's links lead somewhere and its library example runs with the current API."""

import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _nav_pages(nav) -> list[str]:
  """The page files named anywhere in mkdocs.yml's (nested) nav."""
  if isinstance(nav, str):
    return [nav]
  if isinstance(nav, dict):
    return [page for value in nav.values() for page in _nav_pages(value)]
  return [page for item in nav for page in _nav_pages(item)]


def _mkdocs_config() -> dict:
  return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def test_site_builds_strict_without_warnings(tmp_path):
  # Given the site's sources, when mkdocs builds them with --strict (offline: the config
  # fetches nothing), then it succeeds, says no WARNING, and the API page is rendered.
  site = tmp_path / "site"
  env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
  done = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
       "-d", str(site)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  output = done.stdout + done.stderr
  assert done.returncode == 0, output
  assert "WARNING" not in output, output
  api = (site / "api" / "index.html").read_text()
  for name in ("batch_unroll", "access_step", "allocation_weights", "OptimizerConfig"):
    assert name in api, f"the API reference lacks {name}"


def test_config_fetches_nothing_at_build_time():
  text = (REPO / "mkdocs.yml").read_text()
  assert "import:" not in text  # no external object inventories
  plugins = [p if isinstance(p, str) else next(iter(p)) for p in _mkdocs_config()["plugins"]]
  assert set(plugins) <= {"search", "mkdocstrings"}, plugins  # e.g. no social cards (fonts)


def test_every_docs_page_is_in_the_nav():
  in_nav = _nav_pages(_mkdocs_config()["nav"])
  pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
  assert sorted(set(in_nav)) == pages
  assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"


def test_readme_relative_links_point_to_files():
  targets = LINK.findall((REPO / "README.md").read_text())
  relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
  assert relative, "the README links into docs/"
  missing = [t for t in relative if not (REPO / t.split("#")[0]).exists()]
  assert not missing, f"README.md links to missing files: {missing}"


@pytest.mark.slow
def test_readme_library_example_runs():
  # In a process of its own, as a reader runs it: the tests' conftest turns on float64.
  example, *others = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
  check = ("\nassert set(grads) == set(params)\n"
           "assert all(g.shape == params[k].shape for k, g in grads.items())\n"
           "assert all(bool(jax.numpy.isfinite(g).all()) for g in grads.values())\n")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
  done = subprocess.run([sys.executable, "-c", example + check], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  (flax_example,) = others  # "Use the DNC in your own Flax model"
  done = subprocess.run([sys.executable, "-c", flax_example + "\nassert variables['params']\n"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
