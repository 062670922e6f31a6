"""charrnn.space: a Space for any weights folder, from a checkout or an installed package; the
front matter from the model's corpus.json; the dry run's report; the exact Hub calls (network replaced)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard

from charrnn import space
from charrnn.hub import save_weights
from conftest import profile_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted(f"charrnn/{p.relative_to(ROOT / 'charrnn').as_posix()}"
                 for p in (ROOT / "charrnn").rglob("*.py"))
WEIGHTS = ["weights/README.md", "weights/config.json", "weights/corpus.json", "weights/metrics.jsonl",
           "weights/model.safetensors"]


@pytest.fixture
def mine(tmp_path, tiny_model):
    """A run's folder as `charrnn train --out runs/mine` leaves it, a checkpoint and stray files included,
    for a corpus titled "Release notes"."""
    folder = tmp_path / "runs" / "mine"
    save_weights(tiny_model, folder)
    profile = profile_of(tiny_model, "notes.txt", 1.75, 600, title="Release notes", language="en")
    profile.save(folder)
    card = tiny_model.generate_model_card(repo_id="runs/mine", corpus=profile)
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n', encoding="utf-8")
    (folder / "checkpoint.pt").write_bytes(b"optimizer state")
    (folder / "notes.md").write_text("not for the Space", encoding="utf-8")
    return folder


def test_dry_run_reports_address_front_matter_files_sizes_total_and_sends_nothing(mine, tiny_model, capsys,
                                                                                  hub_calls):
    calls = hub_calls
    assert space.main(["someone/demo", "--weights", str(mine), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert calls == []
    assert out.startswith("Space: https://huggingface.co/spaces/someone/demo (dry run: nothing is sent)\n")
    assert f"weights: {mine} loads: LSTM 2x32, {len(tiny_model.vocab)}-character vocabulary" in out
    assert "title: charrnn Release notes\n" in out
    assert "short_description: A character-level model trained on Release notes\n" in out
    rows = out.split(" files:\n")[1].splitlines()
    listed = {line.split()[1]: int(line.split()[0].replace(",", "")) for line in rows}
    total = listed.pop("total")
    assert sorted(listed) == sorted(["LICENSE", "README.md", "app.py", "requirements.txt",
                                     *PACKAGE, *WEIGHTS])
    assert listed["weights/model.safetensors"] == (mine / "model.safetensors").stat().st_size
    assert total == sum(listed.values())


def test_deploy_creates_a_gradio_space_and_uploads_those_files_in_one_commit(mine, capsys, hub_calls):
    calls = hub_calls
    assert space.main(["someone/demo", "--weights", str(mine), "--private"]) == 0
    assert capsys.readouterr().out == "deployed to https://huggingface.co/spaces/someone/demo\n"
    assert [c[0] for c in calls] == ["create_repo", "create_commit"]
    assert calls[0][1:] == ("someone/demo", {"repo_type": "space", "space_sdk": "gradio", "private": True,
                                             "exist_ok": True})
    repo_id, kw = calls[1][1:]
    files = kw["files"]
    assert repo_id == "someone/demo" and kw["repo_type"] == "space"
    assert sorted(files) == sorted(["LICENSE", "README.md", "app.py", "requirements.txt", *PACKAGE, *WEIGHTS])
    assert files["weights/model.safetensors"] == (mine / "model.safetensors").read_bytes()
    assert files["weights/corpus.json"] == (mine / "corpus.json").read_bytes()
    assert files["app.py"].decode().count("\n") < 8 and b"charrnn.app.server import main" in files["app.py"]
    import gradio

    assert f"gradio=={gradio.__version__}" in files["requirements.txt"].decode().splitlines()
    readme = files["README.md"].decode("utf-8")
    front = SpaceCard(readme).data
    want = ("charrnn Release notes", "gradio", "app.py", gradio.__version__)
    assert (front.title, front.sdk, front.app_file, front.sdk_version) == want
    assert front.models is None and "models:" not in readme.split("\n---\n")[0]  # no repo named: absent
    assert 'CharRNN.from_pretrained("weights")' in readme  # the card's code loads what the Space holds
    assert not [w for w in ("Quijote", "Cervantes", "Spanish", "Mancha") if w in readme]


def test_model_option_names_a_pushed_repo_in_the_front_matter(mine, capsys, hub_calls):
    calls = hub_calls
    assert space.main(["someone/demo", "--weights", str(mine), "--model", "someone/pushed"]) == 0
    readme = calls[1][2]["files"]["README.md"].decode("utf-8")
    assert SpaceCard(readme).data.models == ["someone/pushed"]
    assert 'CharRNN.from_pretrained("someone/pushed")' in readme


def test_a_model_repo_that_does_not_exist_is_refused_before_anything_is_created(mine, capsys, hub_calls):
    calls = hub_calls
    assert space.main(["someone/demo", "--weights", str(mine), "--model", "someone/never-pushed"]) == 2
    assert capsys.readouterr().err == ("error: there is no model repo someone/never-pushed on the Hub: push "
                                       "the weights first with `charrnn push WEIGHTS someone/never-pushed`\n")
    assert calls == []


@pytest.mark.parametrize("argv", [["demo"], ["a/b/c"], ["someone/demo", "--model", "x"]])
def test_bad_repo_ids_exit_2(mine, capsys, argv):
    assert space.main([*argv, "--weights", str(mine)]) == 2
    assert "is not a Hub repo id like OWNER/NAME" in capsys.readouterr().err


def test_offline_deploy_fails_in_one_line(mine, capsys):
    assert space.main(["someone/demo", "--weights", str(mine)]) == 2  # conftest sets HF_HUB_OFFLINE
    assert capsys.readouterr().err == "error: HF_HUB_OFFLINE is set: unset it to upload to the Hub\n"


def test_weights_that_do_not_load_or_are_not_there_are_not_deployed(mine, tmp_path, capsys):
    assert space.main(["someone/demo", "--weights", str(tmp_path / "nowhere"), "--dry-run"]) == 2
    assert capsys.readouterr().err == (f"error: no weights folder at {tmp_path / 'nowhere'}: pass --weights "
                                       "FOLDER, a folder that `charrnn train --out FOLDER` wrote\n")
    (mine / "model.safetensors").write_bytes(b"\0garbage")
    assert space.main(["someone/demo", "--weights", str(mine), "--dry-run"]) == 2
    assert "could not load weights" in capsys.readouterr().err


@pytest.mark.slow
def test_an_installed_package_deploys_without_a_checkout(mine, tmp_path):
    """The package alone on the path (as pip installs it: no app.py, README or requirements.txt
    beside it), run from a folder that is no checkout."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "charrnn", site / "charrnn", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(mine, elsewhere / "runs" / "mine")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "charrnn.cli", "space", "someone/demo", "--weights",
                           "runs/mine",
                           "--dry-run"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "weights: runs/mine loads: LSTM 2x32" in proc.stdout
    assert "title: charrnn Release notes" in proc.stdout
    assert " app.py\n" in proc.stdout and " charrnn/app/server.py\n" in proc.stdout
    assert " weights/model.safetensors\n" in proc.stdout and " weights/corpus.json\n" in proc.stdout


def test_the_shipped_weights_deploy_as_the_novels_space(capsys):
    contents = space.space_contents(ROOT / "weights")
    assert not [f for f in contents if f.split("/")[0] in ("tests", "bench", "runs",
                                                           "notes") or f.endswith(".pt")]
    assert {"app.py", "LICENSE", "requirements.txt", "weights/model.safetensors", "weights/corpus.json",
            "charrnn/space.py", "charrnn/app/page.py"} <= set(contents)
    front = SpaceCard(contents["README.md"].decode("utf-8")).data
    assert front.title == "charrnn Don Quijote" and front.license == "mit" and front.models is None
    assert len(front.short_description) <= space.SHORT_DESCRIPTION_CHARS
