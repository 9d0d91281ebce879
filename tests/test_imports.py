"""The library's modules import each other without cycles; the recipe parser knows nothing of the Hub or launch."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter

from helpers import REPO_ROOT

LIBRARY = REPO_ROOT / "lmrecipes"


def lmrecipes_imports(path) -> set[str]:
    """The lmrecipes modules a file imports anywhere in it (function-level imports count too)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmrecipes"):
            if node.module == "lmrecipes":
                imported.update(f"lmrecipes.{alias.name}" for alias in node.names)
            else:
                imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("lmrecipes."))
    return imported


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: lmrecipes_imports(path) & modules.keys() for name, path in modules.items()}


def test_library_modules_import_each_other_without_a_cycle():
    try:
        tuple(TopologicalSorter(import_graph()).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_hub_sits_above_cards_and_secrets():
    graph = import_graph()
    assert {"lmrecipes.cards", "lmrecipes.secrets"} <= graph["lmrecipes.hub"]
    for module in ("lmrecipes.cards", "lmrecipes.secrets", "lmrecipes.recipe"):
        assert "lmrecipes.hub" not in graph[module], module


def test_the_recipe_parser_only_parses():
    # secrets: scrubbing tokens from what it records; errors: the one-line RecipeError it raises.
    assert import_graph()["lmrecipes.recipe"] == {"lmrecipes.secrets", "lmrecipes.errors"}


def test_only_the_trainer_and_the_scripts_import_hub():
    importers = {module for module, imported in import_graph().items() if "lmrecipes.hub" in imported}
    assert importers == {"lmrecipes.training"}, importers
