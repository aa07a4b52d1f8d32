"""The weight-free core stands alone: omnimatte_core imports nothing from casper_core (casper_core may import it)."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import omnimatte_core

CORE = Path(omnimatte_core.__file__).parent


def _imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` or ``from … import`` statement of the file names (relative ones with their dots)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_no_omnimatte_core_file_imports_casper_core():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    offending = {str(path.relative_to(CORE)): name for path in files for name in _imported_modules(path)
                 if name.split(".")[0] == "casper_core" or name.lstrip(".").startswith("casper_core")}
    assert offending == {}


def test_importing_every_omnimatte_core_module_loads_no_casper_core():
    modules = sorted(info.name for info in pkgutil.walk_packages([str(CORE)], prefix="omnimatte_core."))
    assert "omnimatte_core.removal" in modules and "omnimatte_core.clean_plate" in modules
    code = (f"import sys, importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('casper_core', 'diffusers', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
