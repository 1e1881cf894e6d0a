"""The layout contracts: the library never imports the entrypoints, docs are indexed, the README stays a manual."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return names


# benchmarks/device_check.py is itself an entrypoint (`python -m benchmarks.device_check`): it reads the
# experiment configs at the top and hands them down.
ENTRYPOINTS_OUTSIDE_EXPERIMENTS = {"benchmarks/device_check.py"}


def test_library_and_benchmarks_never_import_the_entrypoints():
  offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.split(".")[0] == "experiments")
               for folder in ("gan_jax", "benchmarks") for p in (ROOT / folder).rglob("*.py")
               if str(p.relative_to(ROOT)) not in ENTRYPOINTS_OUTSIDE_EXPERIMENTS}
  assert {p: n for p, n in offenders.items() if n} == {}


def test_docs_index_links_every_file_under_docs():
  index = (ROOT / "docs" / "README.md").read_text()
  linked = {m.split("#")[0] for m in re.findall(r"\]\(([^)]+)\)", index)}
  files = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*") if p.is_file()} - {"README.md"}
  assert files - linked == set(), "docs/README.md does not link these"
  assert {l for l in linked if not l.startswith("http")} - files == set(), "docs/README.md links missing files"


def test_every_results_file_starts_with_the_command_that_made_it():
  for path in (ROOT / "docs").rglob("results*.md"):
    head = path.read_text().split("\n## ")[0]
    assert "```bash\n" in head and "python -m " in head, path


def test_readme_is_a_manual_of_at_most_300_lines():
  readme = (ROOT / "README.md").read_text()
  assert len(readme.splitlines()) <= 300
  for entrypoint in sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem not in ("__init__", "common")):
    assert f"experiments.{entrypoint}" in readme, entrypoint
