"""The package as users install it: pyproject, the wheel's contents, and the `charrnn` command."""
import ast
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

from charrnn import cli
from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
IMPORT_TO_DIST = {"huggingface_hub": "huggingface_hub", "safetensors": "safetensors", "torch": "torch",
                  "numpy": "numpy", "tqdm": "tqdm", "matplotlib": "matplotlib", "gradio": "gradio",
                  "datasets": "datasets", "py3langid": "py3langid",
                  # the app's middleware base: gradio's own web framework, installed with it
                  "starlette": "gradio"}


def dist_name(requirement: str) -> str:
    return requirement.split("[")[0].split("<")[0].split(">")[0].split("=")[0].split(";")[0].strip()


def test_pyproject_declares_a_free_name_the_package_and_the_command():
    project = PYPROJECT["project"]
    assert project["name"] == "charrnn-quijote"  # `charrnn` on the package index is someone else's
    assert PYPROJECT["tool"]["setuptools"]["packages"] == ["charrnn", "charrnn.app"]
    assert project["scripts"] == {"charrnn": "charrnn.cli:main"}
    assert {dist_name(r) for r in project["dependencies"]} == {"torch", "numpy", "safetensors",
                                                               "huggingface_hub"}
    assert all("<" in r and ">=" in r for r in project["dependencies"])  # ranges, not pins
    assert set(project["optional-dependencies"]) == {"app", "train", "datasets", "dev"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_every_third_party_import_of_the_package_is_declared():
    declared = {dist_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"].values()
    declared |= {dist_name(r) for extra in extras for r in extra}
    for path in (ROOT / "charrnn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"charrnn"}:
                lacking = f"{path.name} imports {top}, which pyproject lacks"
                assert IMPORT_TO_DIST.get(top) in declared, lacking


@pytest.mark.slow
def test_the_wheel_holds_the_package_alone(tmp_path):
    """Built from a copy of the working tree with its clutter (runs/, bench/, weights/, tests/)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist"))
    (src / "runs").mkdir(exist_ok=True)
    (src / "runs" / "stray.py").write_text("", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                          timeout=300)
    assert out.returncode == 0, out.stderr
    [wheel] = (tmp_path / "dist").glob("charrnn_quijote-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"charrnn", wheel.name.split("-py3")[0] + ".dist-info"}
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "charrnn").rglob("*.py")}
    assert package == {n for n in names if n.startswith("charrnn/")}
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "charrnn = charrnn.cli:main" in entry


@pytest.mark.parametrize("command, module", [("sample", "charrnn.sample"), ("evaluate", "charrnn.evaluate"),
                                             ("push", "charrnn.hub"), ("space", "charrnn.space"),
                                             ("app", "charrnn.app.server")])
def test_each_subcommand_runs_its_modules_main_with_the_rest(monkeypatch, command, module):
    import importlib

    seen = []
    monkeypatch.setattr(importlib.import_module(module), "main", lambda argv: seen.append(argv) or 3)
    assert cli.main([command, "--weights", "w", "x y"]) == 3
    assert seen == [["--weights", "w", "x y"]]


def test_train_runs_the_packaged_training_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0 and "--max-minutes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--no-such-flag"])
    assert e.value.code == 2


def test_unknown_or_missing_commands_exit_2(capsys):
    for argv in (["bogus"], []):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.slow
def test_console_command_from_a_subprocess(tiny_model_dir):
    """`python -m charrnn.cli` is what the installed `charrnn` script runs."""
    out = subprocess.run([sys.executable, "-m", "charrnn.cli", "sample", "--weights", str(tiny_model_dir),
                          "--seed-text", "En un lugar", "--length", "20", "--sampling-seed", "1"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and len(out.stdout) >= 20, out.stderr


@pytest.mark.slow
def test_the_library_imports_without_gradio_and_app_py_starts_the_packaged_app():
    """gradio is the [app] extra: `import charrnn` must not need it; app.py is only an entry."""
    code = "import sys, charrnn, charrnn.app.views; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    out = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0 and "--model" in out.stdout and "--device" in out.stdout, out.stderr
