"""nbgrader's JupyterLab and server extensions load in the JupyterLab this project installs."""
import re
import subprocess
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
JUPYTER = str(Path(sys.executable).parent / "jupyter")


def listing(*command: str) -> str:
    done = subprocess.run([JUPYTER, *command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return ANSI.sub("", done.stdout + done.stderr)


def test_nbgrader_labextension_is_enabled():
    text = listing("labextension", "list")
    version = re.search(r"JupyterLab v(\d+)\.(\d+)", text)
    assert version and (4, 2) <= (int(version[1]), int(version[2])) < (5, 0), (
        f"nbgrader 0.9 needs JupyterLab >= 4.2, < 5; found: {version and version[0]}")
    assert re.search(r"@jupyter/nbgrader v0\.9\.\d+\s+enabled\s+OK", text), text


def test_nbgrader_server_extensions_are_enabled():
    text = listing("server", "extension", "list")
    for extension in ("formgrader", "assignment_list", "validate_assignment"):
        assert re.search(rf"nbgrader\.server_extensions\.{extension}\s+enabled", text), (extension, text)
        assert re.search(rf"nbgrader\.server_extensions\.{extension}\s+OK", text), (extension, text)
