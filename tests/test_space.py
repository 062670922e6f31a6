"""charrnn.space: the files a Space gets, the front matter, and the exact Hub hub_calls (network replaced)."""
import shutil
import re

import pytest
from huggingface_hub import SpaceCard

from charrnn import space
from charrnn.hub import save_weights
from conftest import ROOT

EXPECTED = ["LICENSE", "README.md", "app.py", "charrnn/__init__.py", "charrnn/app/__init__.py", "charrnn/model.py", "requirements.txt",
            "weights/README.md", "weights/config.json", "weights/metrics.jsonl", "weights/model.safetensors"]


@pytest.fixture
def checkout(tmp_path, tiny_model):
    """A repository with everything a working tree holds, the things a Space must not get included."""
    root = tmp_path / "repo"
    (root / "charrnn" / "__pycache__").mkdir(parents=True)
    (root / "charrnn" / "app").mkdir()
    (root / "charrnn" / "app" / "__init__.py").write_text("# the page\n", encoding="utf-8")
    for name in ["app.py", "requirements.txt", "LICENSE", "README.md"]:
        shutil.copy(ROOT / name, root / name)
    for name in ["__init__.py", "model.py"]:
        (root / "charrnn" / name).write_text(f"# {name}\n", encoding="utf-8")
    (root / "charrnn" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    save_weights(tiny_model, root / "weights")
    (root / "weights" / "README.md").write_text(str(tiny_model.generate_model_card()), encoding="utf-8")
    (root / "weights" / "metrics.jsonl").write_text('{"step": 1}\n', encoding="utf-8")
    (root / "weights" / "checkpoint.pt").write_bytes(b"optimizer state")
    for junk in ["tests/test_x.py", "bench/RESULTS.md", "runs/quick/model.safetensors", "notes/x.md", ".git/HEAD"]:
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("not for the Space", encoding="utf-8")
    return root


def test_dry_run_lists_exactly_the_space_files_and_sends_nothing(checkout, capsys, hub_calls):
    assert space.main(["someone/demo", "--dry-run"], root=checkout) == 0
    assert capsys.readouterr().out.splitlines() == EXPECTED
    assert hub_calls == []


def test_deploy_creates_a_gradio_space_and_uploads_those_files_in_one_commit(checkout, capsys, hub_calls):
    assert space.main(["someone/demo", "--private"], root=checkout) == 0
    assert capsys.readouterr().out == "deployed to https://huggingface.co/spaces/someone/demo\n"
    assert [c[0] for c in hub_calls] == ["create_repo", "create_commit"]
    assert hub_calls[0][1:] == ("someone/demo", {"repo_type": "space", "space_sdk": "gradio", "private": True,
                                             "exist_ok": True})
    repo_id, kw = hub_calls[1][1:]
    assert repo_id == "someone/demo" and kw["repo_type"] == "space"
    files = kw["files"]
    assert sorted(files) == EXPECTED
    assert files["weights/model.safetensors"] == (checkout / "weights" / "model.safetensors").read_bytes()
    front = SpaceCard(files["README.md"].decode("utf-8")).data
    assert front.sdk == "gradio" and front.app_file == "app.py" and front.models is None  # no repo named: absent
    assert "models:" not in files["README.md"].decode("utf-8").split("\n---\n")[0]


def test_model_option_names_a_pushed_repo_in_the_front_matter(checkout, capsys, hub_calls):
    assert space.main(["someone/demo", "--model", "someone/pushed"], root=checkout) == 0
    readme = hub_calls[1][2]["files"]["README.md"].decode("utf-8")
    assert SpaceCard(readme).data.models == ["someone/pushed"]
    assert readme.split("\n---\n", 1)[1] == (checkout / "README.md").read_text(encoding="utf-8").split("\n---\n", 1)[1]


def test_a_model_repo_that_does_not_exist_is_refused_before_anything_is_created(checkout, capsys, hub_calls):
    assert space.main(["someone/demo", "--model", "someone/never-pushed"], root=checkout) == 2
    assert capsys.readouterr().err == ("error: there is no model repo someone/never-pushed on the Hub: push the "
                                       "weights first with `charrnn push weights someone/never-pushed`\n")
    assert hub_calls == []


@pytest.mark.parametrize("argv", [["demo"], ["a/b/c"], ["someone/demo", "--model", "x"]])
def test_bad_repo_ids_exit_2(checkout, capsys, argv):
    assert space.main(argv, root=checkout) == 2
    assert "is not a Hub repo id like OWNER/NAME" in capsys.readouterr().err


def test_offline_deploy_fails_in_one_line(checkout, capsys):
    assert space.main(["someone/demo"], root=checkout) == 2  # conftest sets HF_HUB_OFFLINE
    assert capsys.readouterr().err == "error: HF_HUB_OFFLINE is set: unset it to upload to the Hub\n"


def test_weights_that_do_not_load_are_not_deployed(checkout, capsys):
    (checkout / "weights" / "model.safetensors").write_bytes(b"\0garbage")
    assert space.main(["someone/demo", "--dry-run"], root=checkout) == 2
    assert "could not load weights" in capsys.readouterr().err


def test_the_repository_itself_deploys_as_a_space():
    files = space.space_files(ROOT)
    assert not [f for f in files if f.split("/")[0] in ("tests", "bench", "runs", "notes") or f.endswith(".pt")]
    assert {"app.py", "LICENSE", "requirements.txt", "weights/model.safetensors", "charrnn/space.py",
            "charrnn/app/page.py", "charrnn/app/server.py"} <= set(files)
    front = SpaceCard.load(ROOT / "README.md").data
    gradio_pin = re.search(r"^gradio==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert front.sdk == "gradio" and front.sdk_version == gradio_pin and front.app_file == "app.py"
    assert front.models is None  # named only by `--model`, once a weights repo is really pushed
