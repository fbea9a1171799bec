"""The layout's rules (docs/layout.md): the library stands on its own."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "gim_zoo"
FORBIDDEN = ("absl", "matplotlib", "experiments", "training")


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_library_imports_no_driver_flags_or_plotting():
    offending = [f"{path.relative_to(LIBRARY.parent)}: {module}"
                 for path in sorted(LIBRARY.rglob("*.py"))
                 for module in imported_modules(path)
                 if module.split(".")[0] in FORBIDDEN]
    assert offending == [], "gim_zoo/ must not import absl, matplotlib or training/"


def test_the_rule_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from experiments.pretraining import train\n")
    assert list(imported_modules(sample)) == ["experiments.pretraining"]
