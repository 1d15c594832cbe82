"""The rules that keep nspod clean (architecture.md), checked on the source itself."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "nsPod"
# One module per outside dependency; the CLI alone talks to users.
OWNERS = {"click": {"cli.py"}, "yaml": {"spec.py"}, "pyroute2": {"network.py"},
          "prctl": {"security.py"}, "nsPod._syscalls": {"syscalls.py"},
          "pyseccomp": {"seccomp.py"}}
# The per-pod monitor must stay lean: its memory is paid once per pod.
MONITOR_FORBIDDEN = {"click", "yaml", "pyroute2"}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node


def test_one_module_per_outside_dependency():
    for path, tree in modules():
        for name, _ in imported(tree):
            for dep, owners in OWNERS.items():
                if (name == dep or name.startswith(dep + ".")) and path.name not in owners:
                    raise AssertionError(f"{path.name} imports {name}: only {owners} may")


def test_only_the_cli_prints_or_exits():
    for path, tree in modules():
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = getattr(func, "id", None) or getattr(func, "attr", None)
                owner = getattr(getattr(func, "value", None), "id", None)
                if called == "exit" and owner == "sys" and path.name not in ("monitor.py", "netd.py"):
                    raise AssertionError(f"{path.name}:{node.lineno} calls sys.exit")
                if called == "print" and isinstance(func, ast.Name):
                    # Detached helpers write to their own log file (their stderr), never to a user.
                    assert path.name in ("monitor.py", "netd.py"), \
                        f"{path.name}:{node.lineno} prints"


def test_monitor_imports_nothing_heavy_at_module_level():
    tree = ast.parse((PACKAGE / "monitor.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(n.split(".")[0] in MONITOR_FORBIDDEN for n in names), names


def test_monitor_loads_nothing_heavy_at_all():
    import subprocess
    import sys
    code = ("import sys, nsPod.monitor; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert not set(loaded) & (MONITOR_FORBIDDEN | {"pyseccomp"}), loaded
