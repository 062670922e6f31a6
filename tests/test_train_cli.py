"""train.py and charrnn.evaluate as a user runs them: files written, clear one-line errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_text

TINY = ["--cell", "gru", "--embed-dim", "16", "--hidden-size", "32", "--num-layers", "1", "--batch-size", "8",
        "--seq-len", "32", "--eval-every", "20", "--eval-rows", "8", "--lr", "0.01"]


def run(*args, timeout=240, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


def assert_clean_error(proc, pattern):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and pattern in lines[-1], proc.stderr


@pytest.mark.slow
def test_train_writes_weights_card_metrics_plot_then_evaluate(tmp_path):
    text = make_text(tmp_path / "text.txt")
    out = tmp_path / "w"
    proc = run("train.py", "--data", str(text), "--out", str(out), "--epochs", "1", *TINY)
    assert proc.returncode == 0, proc.stderr
    for name in ["config.json", "model.safetensors", "README.md", "corpus.json", "metrics.jsonl", "loss.png"]:
        assert (out / name).stat().st_size > 0, name
    card = (out / "README.md").read_text(encoding="utf-8")
    profile = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    assert profile["name"] == "text.txt" and profile["source"] == str(text) and profile["seeds"]
    # the card's samples start from the corpus's own seeds
    assert f"**Seed:** `{profile['seeds'][0]!r}`" in card
    # and so does the closing hint
    assert f"--seed-text '{profile['seeds'][0]}'" in proc.stdout.splitlines()[-1]
    assert "nats/char" in card and "loss.png" in card and "from_pretrained" in card
    assert "Recipe `long`" in card  # TINY's flags override parts of the default recipe, which is recorded
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "elapsed_s", "train_loss", "val_loss", "lr", "chars_per_s"} <= set(rows[0])

    ev = run("-m", "charrnn.evaluate", "--weights", str(out), "--data", str(text), "--split", "val")
    assert ev.returncode == 0, ev.stderr
    score = json.loads(ev.stdout)
    n_chars = len(text.read_text(encoding="utf-8"))
    assert score["unknown_chars"] == 0 and score["chars"] == int(n_chars * 0.2)  # the last 20%
    assert abs(score["bits_per_char"] - score["nats_per_char"] / 0.693147) < 1e-3
    assert score["nats_per_char"] < 3.0
    # the card and the profile report the same validation loss as the evaluator computes
    assert f"{score['nats_per_char']:.4f}" in card
    assert round(profile["validation"]["nats_per_char"], 4) == round(score["nats_per_char"], 4)
    assert profile["validation"]["chars"] == profile["validation"]["split_chars"] == score["chars"]

    (tmp_path / "other.txt").write_text("Hola €€ mundo, qué tal.", encoding="utf-8")
    ev = run("-m", "charrnn.evaluate", "--weights", str(out), "--data", str(tmp_path / "other.txt"))
    assert ev.returncode == 0 and json.loads(ev.stdout)["unknown_chars"] >= 2


@pytest.mark.slow
def test_ctrl_c_then_resume(tmp_path):
    text = make_text(tmp_path / "text.txt", n_chars=40_000)
    out = tmp_path / "w"
    args = ["train.py", "--data", str(text), "--out", str(out), "--epochs", "4", *TINY]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "python train.py --resume" in err
    steps_before = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    resumed = run("train.py", "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step" in resumed.stdout
    step = int(resumed.stdout.split("resuming from step ")[1].split()[0])
    assert step >= steps_before[-1]
    steps_after = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps_after[: len(steps_before)] == steps_before and steps_after == sorted(steps_after)
    assert len(steps_after) > len(steps_before) and (out / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent/quijote.txt"], "no such file"),
    (["--hidden-size", "0"], "hidden-size must be a positive"),
    (["--hidden-size", "-5"], "hidden-size must be a positive"),
    (["--dropout", "2"], "dropout"),
    (["--device", "tpu"], "unknown device"),
    (["--resume"], "nothing to resume"),
    (["--push-to-hub", "no-slash"], "OWNER/NAME"),
])
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    text = make_text(tmp_path / "text.txt", n_chars=5000)
    proc = run("train.py", "--data", str(text), "--out", str(tmp_path / "o"), *TINY, *args)
    assert_clean_error(proc, message)


@pytest.mark.slow
def test_a_bad_device_in_the_environment_is_one_line_too(tmp_path):
    text = make_text(tmp_path / "text.txt", n_chars=5000)  # $CHARRNN_DEVICE is read to pick the recipe, too
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CHARRNN_DEVICE": "tpu"}
    proc = subprocess.run([sys.executable, "train.py", "--data", str(text), "--out", str(tmp_path / "o"),
                           *TINY],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert_clean_error(proc, "unknown device")


@pytest.mark.slow
def test_bad_corpus_files(tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert_clean_error(run("train.py", "--data", str(tmp_path / "empty.txt"), *TINY),
                       "training needs at least")
    (tmp_path / "latin1.txt").write_bytes(("el año " * 500).encode("latin-1"))
    assert_clean_error(run("train.py", "--data", str(tmp_path / "latin1.txt"), *TINY), "not UTF-8")
    proc = run("train.py", "--hidden-size", "abc")
    assert proc.returncode == 2 and "invalid int value: 'abc'" in proc.stderr


@pytest.mark.slow
def test_wrong_hash_of_default_corpus(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "el_quijote.txt").write_text("not the real text", encoding="utf-8")
    env = {**os.environ, "CHARRNN_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "o"), *TINY], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert_clean_error(proc, "expected a82846e6")


@pytest.mark.slow
def test_evaluate_bad_input(tmp_path):
    assert_clean_error(run("-m", "charrnn.evaluate", "--weights", str(tmp_path / "none"), "--data", "x.txt"),
                       "no weights folder")


def config(*argv):
    """The TrainConfig the command line gives, on a machine whose "auto" device is the CPU."""
    from charrnn.train_cli import parse_args, to_config

    os.environ["CHARRNN_DEVICE"] = "cpu"
    try:
        return to_config(parse_args(list(argv))).validate()
    finally:
        del os.environ["CHARRNN_DEVICE"]


def test_flags_left_out_follow_the_budget_and_the_reproduce_command_says_only_the_rest():
    from charrnn.train_cli import reproduce_command

    assert config().cell == "lstm" and config("--max-minutes", "10").cell == "gru"
    assert reproduce_command(config()) == "python train.py"
    assert reproduce_command(config("--max-minutes", "10")) == "python train.py --max-minutes 10.0"
    assert reproduce_command(config("--max-minutes", "10", "--cell", "lstm", "--strip-accents")) == \
        "python train.py --strip-accents --cell lstm --max-minutes 10.0"
    assert reproduce_command(config("--dropout", "0.1")) == "python train.py --dropout 0.1"
    # a named recipe is said only where the budget would pick the other one
    assert config("--recipe", "short").cell == "gru"
    assert reproduce_command(config("--recipe", "short")) == "python train.py --recipe short"
    assert reproduce_command(config("--recipe", "short", "--max-minutes",
                                    "5")) == "python train.py --max-minutes 5.0"
    assert reproduce_command(config("--max-minutes=5", "--recipe=long")) == \
        "python train.py --recipe long --max-minutes 5.0"


def test_cuda_picks_the_gpu_recipe_and_its_switches_can_be_turned_off():
    from charrnn.train_cli import reproduce_command

    cfg = config("--device", "cuda")
    assert cfg.recipe == "gpu" and cfg.locked_dropout and cfg.weight_drop > 0 and cfg.ema_decay > 0
    off = config("--device", "cuda", "--no-locked-dropout", "--weight-drop", "0")
    assert not off.locked_dropout and off.weight_drop == 0
    assert reproduce_command(off) == "python train.py --recipe gpu --no-locked-dropout --weight-drop 0.0"
    assert config("--device", "cpu").recipe == "long"


def test_the_old_flag_names_still_set_the_renamed_settings():
    from charrnn.train_cli import given_settings

    assert config("--seed", "7").training_seed == 7 == config("--training-seed", "7").training_seed
    assert config("--eval-streams", "3").eval_rows == 3 == config("--eval-rows", "3").eval_rows
    assert (config().training_seed, config().eval_rows) != (7, 3)
    assert given_settings(["--seed=7"]) == given_settings(["--training-seed", "7"]) == {"training_seed"}
    assert given_settings(["--eval-streams", "3"]) == {"eval_rows"}


@pytest.mark.slow
def test_help_lists_the_recipes_and_the_rule():
    proc = run("train.py", "--help")
    assert proc.returncode == 0
    assert "short  --cell gru, --num-layers 1, --dropout 0.2, --batch-size 64, --seq-len 64" in proc.stdout
    assert "long   --cell lstm, --num-layers 2, --dropout 0.25, --batch-size 16, --seq-len 128" in proc.stdout
    assert "default: gpu on CUDA, else short for --max-minutes up to 10 and long above" in proc.stdout
    assert "gpu    --cell lstm, --num-layers 3" in proc.stdout and "--locked-dropout" in proc.stdout
    assert "(default: gru)" in run("train.py", "--max-minutes", "5", "--help").stdout  # the budget's recipe


# ---- train.main in-process: bad checkpoints, --resume flags, --out, the corpus, the Hub ----------

def call_main(capsys, *argv) -> tuple[int, str, str]:
    """train.main(argv) in this process: (exit code, stdout, stderr)."""
    sys.path.insert(0, str(ROOT))
    from charrnn import train_cli as train

    rc = train.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, pattern):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: ") and pattern in lines[-1], err


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A folder as Ctrl-C leaves it right after the first evaluation: checkpoint.pt, metrics.jsonl.
    Tests copy it before changing anything."""
    from charrnn import training

    class StopAtOnce(training.StopRequest):
        def __init__(self):
            super().__init__()
            self.requested = True

    folder = tmp_path_factory.mktemp("stopped")
    text = make_text(folder / "text.txt", n_chars=5000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "StopRequest", StopAtOnce)
        sys.path.insert(0, str(ROOT))
        from charrnn import train_cli as train

        rc = train.main(["--data", str(text), "--out", str(folder / "w"), *TINY, "--eval-every", "1"])
    assert rc == 130 and (folder / "w" / "checkpoint.pt").is_file()
    return folder


def copy_run(stopped_run, tmp_path) -> Path:
    import shutil

    shutil.copytree(stopped_run, tmp_path / "run")
    return tmp_path / "run" / "w"


def rewrite(change):
    """A damage that loads the checkpoint, changes it in place, and saves it again."""
    def damage(path):
        import torch

        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)
    return damage


def _other_optimizer_state(ckpt):
    import torch

    ckpt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)


def _bad_rng(ckpt):
    import torch

    ckpt["rng"] = torch.zeros(7, dtype=torch.uint8)


def _other_carried_state(ckpt):
    import torch

    ckpt["rnn_state"] = torch.zeros(1, 3, 5)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 16),
    "not a dict": lambda p: __import__("torch").save([1, 2, 3], p),
    "unknown config key": rewrite(lambda c: c["config"].update(colour="red")),
    "other hidden size": rewrite(lambda c: c["config"].update(hidden_size=64)),
    "other vocabulary": rewrite(lambda c: c.update(vocab=c.get("vocab", "ab")[::-1])),
    "no optimizer state": rewrite(lambda c: c.pop("optimizer")),
    "optimizer state of another model": rewrite(_other_optimizer_state),
    "bad RNG state": rewrite(_bad_rng),
    "unknown progress field": rewrite(lambda c: c["progress"].update(colour=1)),
    "progress that is not numbers": rewrite(lambda c: c["progress"].update(step="ten")),
    "carried state of another shape": rewrite(_other_carried_state),
    "absurd chunk index": rewrite(lambda c: c["progress"].update(chunk_index=10 ** 12)),
    "negative step": rewrite(lambda c: c["progress"].update(step=-5)),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_from_a_damaged_checkpoint_is_one_line_and_touches_nothing(stopped_run, tmp_path, capsys,
                                                                          damage):
    out = copy_run(stopped_run, tmp_path)
    DAMAGE[damage](out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, _, err = call_main(capsys, "--resume", "--out", out)
    assert_one_line_error(rc, err, "checkpoint.pt")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_when_the_corpus_changed_names_the_vocabulary(stopped_run, tmp_path, capsys):
    out = copy_run(stopped_run, tmp_path)
    text = out.parent / "text.txt"
    text.write_text(text.read_text(encoding="utf-8").replace("a", "á"), encoding="utf-8")
    rewrite(lambda c: c["config"].update(data=str(text)))(out / "checkpoint.pt")  # the copy's text
    rc, _, err = call_main(capsys, "--resume", "--out", out)
    assert_one_line_error(rc, err, "another vocabulary")


def test_resume_reads_a_checkpoint_of_the_earlier_format(stopped_run, tmp_path, capsys):
    """warmup/min_lr, seed/eval_streams, chunk/elapsed/bad_evals and no vocab or recipe: what earlier
    versions wrote."""
    def old_format(ckpt):
        config, progress = ckpt["config"], ckpt["progress"]
        config["warmup"], config["min_lr"] = config.pop("warmup_frac"), config.pop("min_lr_frac")
        config["seed"], config["eval_streams"] = config.pop("training_seed"), config.pop("eval_rows")
        del config["recipe"], ckpt["vocab"]
        for new, old in [("chunk_index", "chunk"), ("elapsed_s", "elapsed"),
                         ("evals_without_gain", "bad_evals")]:
            progress[old] = progress.pop(new)

    out = copy_run(stopped_run, tmp_path)
    rewrite(old_format)(out / "checkpoint.pt")
    rc, stdout, err = call_main(capsys, "--resume", "--out", out, "--epochs", "0.3")
    assert rc == 0, err
    assert "resuming from step 1" in stdout


def test_resume_applies_the_budget_and_names_the_ignored_flags(stopped_run, tmp_path, capsys):
    import torch

    out = copy_run(stopped_run, tmp_path)
    rc, stdout, err = call_main(capsys, "--resume", "--out", out, "--hidden-size", "128", "--lr", "0.5",
                                "--epochs", "0.3", "--max-minutes", "20")
    assert rc == 0, err
    assert "ignored: --hidden-size, --lr" in stdout
    config = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    assert (config["epochs"], config["max_minutes"]) == (0.3, 20.0)  # applied
    assert (config["hidden_size"], config["lr"]) == (32, 0.01)  # the checkpoint's, as TINY set them


def _read_only_dir(tmp_path) -> Path:
    """A folder this process cannot write into (root ignores permission bits: /sys refuses it too)."""
    if os.geteuid() == 0:
        return Path("/sys/charrnn-test-out")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "w"


@pytest.mark.parametrize("where, message", [
    ("a file", "is a file, not a folder"),
    ("under a file", "which is a file"),
    ("read-only", "cannot be written"),
    ("too long", "too long a path"),
])
def test_bad_out_is_refused_before_training(tmp_path, capsys, monkeypatch, where, message):
    from charrnn import training

    (tmp_path / "file").write_text("x")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "w",
           "read-only": _read_only_dir(tmp_path), "too long": tmp_path / ("x" * 300) / "w"}[where]

    def no_training(cfg):
        raise AssertionError("the corpus was read before --out was checked")

    monkeypatch.setattr(training, "load_corpus", no_training)
    rc, _, err = call_main(capsys, "--out", out, *TINY)
    assert_one_line_error(rc, err, message)


@pytest.mark.parametrize("content, message", [
    pytest.param("a" * 5000, "only one distinct character", id="one char"),
    pytest.param(("el año " * 500).encode("utf-16"), "is UTF-16", id="utf-16 with BOM"),
    pytest.param(("el año " * 500).encode("utf-16-le"), "is UTF-16", id="utf-16 without BOM"),
])
def test_corpus_problems_are_said_as_such(tmp_path, capsys, content, message):
    path = tmp_path / "text.txt"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    rc, _, err = call_main(capsys, "--data", path, "--out", tmp_path / "w", *TINY)
    assert_one_line_error(rc, err, message)


# ---- --push-to-hub: the token and the Hub are checked before training ---------------------------

@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """The Hub as each test answers it: huggingface_hub's own HTTP client, over a MockTransport that
    records every request. hub["whoami"] is the answer to /api/whoami-v2 (a dict or a status code);
    hub["down"] makes every request fail as a network without the Hub does. Anything else (creating
    a repo, uploading) is refused with 403."""
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    hub = {"whoami": {"name": "someone", "orgs": [{"name": "team"}],
                      "auth": {"accessToken": {"role": "write"}}},
           "down": False, "requests": []}

    def answer(request):
        hub["requests"].append(request)
        if hub["down"]:
            raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)
        if request.url.path == "/api/whoami-v2":
            if isinstance(hub["whoami"], int):
                return httpx2.Response(hub["whoami"],
                                       json={"error": "Invalid credentials in Authorization header"})
            return httpx2.Response(200, json=hub["whoami"])
        if request.method == "HEAD" and request.url.path in ("", "/"):
            return httpx2.Response(200)
        return httpx2.Response(403, json={"error": "this test's Hub refuses everything else"})

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest's offline mode, as the client would see it
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    yield hub
    huggingface_hub.set_client_factory(_http.default_client_factory)


@pytest.fixture
def no_training(monkeypatch):
    from charrnn import training

    def refuse(cfg):
        raise AssertionError("training started before the Hub was checked")

    monkeypatch.setattr(training, "load_corpus", refuse)


@pytest.mark.parametrize("setup, message", [
    (lambda hub, mp: mp.setenv("HF_HUB_OFFLINE", "1"), "HF_HUB_OFFLINE is set"),
    (lambda hub, mp: mp.delenv("HF_TOKEN"), "no Hugging Face token"),
    (lambda hub, mp: hub.update(down=True), "the Hub cannot be reached"),
    (lambda hub, mp: hub.update(whoami=401), "does not accept the token"),
    (lambda hub, mp: hub.update(whoami={"name": "someone", "orgs": []}), "cannot write under 'team'"),
    (lambda hub, mp: hub.update(whoami={"name": "someone", "orgs": [{"name": "team"}],
                                        "auth": {"accessToken": {"role": "read"}}}), "read-only"),
], ids=["offline", "no token", "no network", "token refused", "not the owner", "read-only token"])
def test_push_to_hub_problems_are_found_before_training(fake_hub, no_training, monkeypatch, tmp_path, capsys,
                                                        setup, message):
    setup(fake_hub, monkeypatch)
    rc, _, err = call_main(capsys, "--out", tmp_path / "w", *TINY, "--push-to-hub", "team/quijote")
    assert_one_line_error(rc, err, message)
    assert "error: cannot push to team/quijote: " in err
    assert not (tmp_path / "w").exists()


def test_push_to_hub_checks_then_trains_and_keeps_the_files_when_the_push_fails(fake_hub, tmp_path, capsys):
    text = make_text(tmp_path / "text.txt", n_chars=5000)
    out = tmp_path / "w"
    rc, stdout, err = call_main(capsys, "--data", text, "--out", out, *TINY, "--epochs", "0.3",
                                "--push-to-hub", "someone/quijote")
    whoami = [r for r in fake_hub["requests"] if r.url.path == "/api/whoami-v2"]
    # Asked before training (the push asks again): each time with the user's token.
    assert whoami and all(r.headers["authorization"] == "Bearer hf_test_token" for r in whoami)
    assert "wrote" in stdout  # trained and saved, then the Hub refused the upload
    assert_one_line_error(rc, err, "could not push to someone/quijote")
    assert "Everything is saved in" in err and (out / "model.safetensors").is_file()


# ---- the end of a run: outputs first, the finished mark last; --resume completes the rest ---------

OUTPUTS = ["config.json", "model.safetensors", "README.md", "loss.png", "metrics.jsonl"]
FINISHING_STEPS = {  # (module, name) of each step of the finishing sequence, in order
    "exact score": ("charrnn.training", "finish"),
    "weights": ("charrnn.hub", "save_weights"),
    "plot": ("charrnn.hub", "plot_losses"),
    "card": ("charrnn.hub", "model_card"),
    "finished mark": ("charrnn.training", "mark_finished"),
}


def stop_at(monkeypatch, step: str, error: BaseException):
    import importlib

    module, name = FINISHING_STEPS[step]

    def stop(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, stop)


@pytest.fixture(scope="module")
def spent_run(tmp_path_factory) -> Path:
    """A run whose whole budget is trained, stopped before its end sequence began (its checkpoint
    still open), and the reference its uninterrupted end writes: (folder to copy, reference outputs)."""
    folder = tmp_path_factory.mktemp("spent")
    text = make_text(folder / "text.txt", n_chars=5000)
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, "exact score", KeyboardInterrupt())
        from charrnn import train_cli as train

        rc = train.main(["--data", str(text), "--out", str(folder / "w"), *TINY, "--epochs", "0.5"])
    assert rc == 130 and not any((folder / "w" / name).exists() for name in OUTPUTS[:-1])
    reference = copy_run(folder, tmp_path_factory.mktemp("reference"))
    assert train.main(["--resume", "--out", str(reference)]) == 0
    return folder, outputs(reference)


def outputs(out: Path) -> dict[str, bytes]:
    """The run's output files, the folder's own path in the card written as OUT."""
    return {name: (out / name).read_bytes().replace(str(out).encode(), b"OUT") for name in OUTPUTS}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")],
                         ids=["Ctrl-C", "full disk"])
@pytest.mark.parametrize("step", FINISHING_STEPS)
def test_a_stop_while_finishing_keeps_the_run_and_resume_completes_it(spent_run, tmp_path, capsys,
                                                                      monkeypatch, step, error):
    import torch

    folder, reference = spent_run
    out = copy_run(folder, tmp_path)
    with monkeypatch.context() as mp:
        stop_at(mp, step, error)
        rc, _, err = call_main(capsys, "--resume", "--out", out)
    assert "Traceback" not in err and "--resume" in err.strip().splitlines()[-1], err
    assert rc == (130 if isinstance(error, KeyboardInterrupt) else 2), err
    assert not torch.load(out / "checkpoint.pt", weights_only=True)["finished"]  # still resumable

    rc, stdout, err = call_main(capsys, "--resume", "--out", out)
    assert rc == 0, err
    steps = json.loads(reference["metrics.jsonl"].decode().splitlines()[-1])["step"]
    assert f"resuming from step {steps}" in stdout  # nothing more is trained: only the end is done again
    assert outputs(out) == reference
    assert torch.load(out / "checkpoint.pt", weights_only=True)["finished"]


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                 "data/3: file write failed"),
], ids=["OSError", "torch's zip writer"])
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch, error):
    import torch

    text = make_text(tmp_path / "text.txt", n_chars=5000)
    out = tmp_path / "w"
    save, saves = torch.save, []

    def save_until_the_disk_fills(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 1:
            return save(obj, path, *args, **kwargs)
        Path(path).write_bytes(b"PK\x03\x04 half a zip")  # as a write cut short leaves it
        raise error

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    rc, _, err = call_main(capsys, "--data", text, "--out", out, *TINY, "--epochs", "0.5",
                           "--eval-every", "4")
    assert_one_line_error(rc, err, "the previous checkpoint is kept")
    monkeypatch.undo()
    assert len(saves) == 2 and not (out / "checkpoint.pt.tmp").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["step"] == 4
    rc, stdout, err = call_main(capsys, "--resume", "--out", out)
    assert rc == 0 and "resuming from step 4" in stdout, err


# ---- --out: never empty, ~ expanded, never over files no run wrote -------------------------------

def test_an_empty_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = call_main(capsys, "--out", "", *TINY)
    assert_one_line_error(rc, err, "--out is empty")
    assert list(tmp_path.iterdir()) == []


def test_out_expands_the_home_folder(tmp_path, capsys, monkeypatch):
    text = make_text(tmp_path / "text.txt", n_chars=5000)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = call_main(capsys, "--data", text, "--out", "~/runs/x", *TINY, "--epochs", "0.3")
    assert rc == 0, err
    assert (tmp_path / "home" / "runs" / "x" / "model.safetensors").is_file()
    assert not (tmp_path / "~").exists()
    assert f"wrote {tmp_path / 'home' / 'runs' / 'x'}/" in stdout


@pytest.mark.parametrize("files", [
    {"README.md": "---\ntitle: my project\nsdk: gradio\n---\n# My project\n"},  # as the repository's own
    {"README.md": "# notes\n"},
    {"config.json": "{}", "loss.png": "x"},
    {"corpus.json": "{}"},
], ids=["a Space's README", "a plain README", "other files", "a corpus.json"])
def test_a_run_never_overwrites_files_no_run_wrote_unless_told(tmp_path, capsys, files):
    text = make_text(tmp_path / "text.txt", n_chars=5000)
    out = tmp_path / "project"
    out.mkdir()
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8")
    rc, _, err = call_main(capsys, "--data", text, "--out", out, *TINY, "--epochs", "0.3")
    assert_one_line_error(rc, err, "--overwrite")
    assert all(name in err for name in files)
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == files  # nothing written

    rc, _, err = call_main(capsys, "--data", text, "--out", out, *TINY, "--epochs", "0.3", "--overwrite")
    assert rc == 0, err
    assert "library_name: charrnn" in (out / "README.md").read_text(encoding="utf-8")


def test_a_run_writes_over_an_earlier_runs_files(tmp_path, capsys):
    text = make_text(tmp_path / "text.txt", n_chars=5000)
    for _ in range(2):  # the second run replaces the first one's outputs without being told
        rc, _, err = call_main(capsys, "--data", text, "--out", tmp_path / "w", *TINY, "--epochs", "0.3")
        assert rc == 0, err


@pytest.mark.parametrize("absent", [("matplotlib",), ("tqdm", "matplotlib")])
def test_missing_training_extras_are_named_before_any_training(tmp_path, capsys, monkeypatch, absent):
    import importlib.util

    from charrnn import training

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name,
                        *a: None if name in absent else find_spec(name, *a))
    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained without the [train] extra"))
    rc, _, err = call_main(capsys, "--out", tmp_path / "w", *TINY)
    assert_one_line_error(rc, err, 'pip install "charrnn-quijote[train]"')
    assert f"training needs {' and '.join(absent)}, which are not installed" in err
    assert not (tmp_path / "w").exists()


def test_the_extras_training_checks_are_in_the_train_extra():
    import tomllib

    from charrnn.train_cli import TRAIN_NEEDS

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]
    assert set(TRAIN_NEEDS) <= {r.split(">")[0].split("<")[0].split("=")[0] for r in extra["train"]}


def test_help_says_each_default_once():
    from charrnn.train_cli import build_parser

    text = " ".join(build_parser("long").format_help().split())
    assert "(default: None)" not in text
    data_help = text.split("--data DATA ")[1].split(" --dataset")[0]
    assert "el_quijote.txt" in data_help and "default" not in data_help


def test_the_apps_labels_are_plain_text():
    """Gradio shows a label as written: Markdown's backticks would show literally."""
    import ast

    for path in (ROOT / "charrnn" / "app").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "label" and isinstance(node.value, ast.Constant):
                assert "`" not in str(node.value.value), f"{path.name}: {node.value.value}"
