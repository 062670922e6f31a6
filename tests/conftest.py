"""Shared fixtures and constants: a tiny trained CharRNN saved like the real weights, an offline
environment, the app served on a local port, a browser, the Hub's calls recorded; and the test tiers.

Tiers: a test that starts a subprocess, a server, a browser, torchrun or a wheel build is marked
`slow`; `python -m pytest -m "not slow"` runs the rest in about a minute. Tests that use the
`launch_app` or `browser` fixtures are marked here; a test that starts another Python without
the mark fails, saying so (see `_unmarked_tests_start_no_python`).
"""
import http.client
import json
import os
import subprocess
import tempfile
import time
from urllib.parse import urlparse

# Tests never reach the network: the Hub client fails fast offline, Gradio sends no analytics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Token files the tests prepare go to a folder of their own, not the user's ~/.cache/charrnn.
os.environ["CHARRNN_CACHE"] = tempfile.mkdtemp(prefix="charrnn-test-cache-")

import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `import app` and `import charrnn` from the repo, wherever pytest runs
SEED = "En un lugar de la Mancha"  # the seed text most generation tests start from

# The novel's opening (public domain): enough for a tiny model to learn spaces, words and commas.
TINY_TEXT = (
    "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía un "
    "hidalgo de los de lanza en astillero, adarga antigua, rocín flaco y galgo corredor. Una olla de algo "
    "más vaca que carnero, salpicón las más noches, duelos y quebrantos los sábados, lantejas los viernes, "
    "algún palomino de añadidura los domingos, consumían las tres partes de su hacienda. El resto della "
    "concluían sayo de velarte, calzas de velludo para las fiestas, con sus pantuflos de lo mesmo, y los "
    "días de entresemana se honraba con su vellorí de lo más fino.\n¿Qué gigantes? –dijo Sancho Panza.\n"
)


PHRASE = "Sancho dijo, ¿qué gigantes? " * 20  # a line the tiny model never saw, repeated: one to learn
# A passage the tiny model never saw (it learned the novel's opening), its style easy to pick up
PASSAGE = "Querida Lucía: hoy llovió en Madrid y pensé en ti. " * 12
WORDS = ("en un lugar de la mancha de cuyo nombre no quiero acordarme no ha mucho tiempo que vivía "
         "un hidalgo de los de lanza en astillero adarga antigua rocín flaco y galgo corredor").split()


def make_text(path, n_chars=20_000, text_seed=0):
    """Pseudo-Spanish with real structure (words, commas, sentences) so a tiny model can learn it."""
    g = torch.Generator().manual_seed(text_seed)  # which pseudo-text: the same one every time
    out, length = [], 0
    while length < n_chars:
        n = int(torch.randint(4, 12, (1,), generator=g))
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=g)]
        sentence = " ".join(words).capitalize() + (", " if n % 3 == 0 else ". ")
        out.append(sentence)
        length += len(sentence)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(out), encoding="utf-8")
    return path


def tiny_config(tmp_path, **kw):
    """A TrainConfig for a one-layer GRU run of a few seconds on make_text's text, in tmp_path."""
    from charrnn.training import TrainConfig

    defaults = dict(data=str(make_text(tmp_path / "text.txt")), cell="gru", embed_dim=16, hidden_size=48,
                    num_layers=1, dropout=0.0, batch_size=8, seq_len=32, lr=1e-2, epochs=1.0,
                    max_minutes=10.0, eval_every=10, eval_rows=4, out=str(tmp_path / "out"))
    return TrainConfig(**{**defaults, **kw})


def train_tiny(cell: str = "lstm", steps: int = 120, training_seed: int = 0, text: str = TINY_TEXT):
    """A 2-layer, 32-unit model trained for about a second on `text` (TINY_TEXT by default):
    random 64-char windows, through training.py's own parts."""
    from charrnn.text import Vocab
    from charrnn.training import TrainConfig, build_model, optimizer_step

    torch.manual_seed(training_seed)
    vocab = Vocab.from_text(text)
    cfg = TrainConfig(cell=cell, embed_dim=16, hidden_size=32, num_layers=2, dropout=0.1)
    model = build_model(cfg, vocab)
    ids = torch.tensor(vocab.encode(text))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    window_starts = torch.arange(0, len(ids) - 65, 16)
    for _ in range(steps):
        batch = window_starts[torch.randint(len(window_starts), (8,))]
        x = torch.stack([ids[i: i + 64] for i in batch])  # (8, 64)
        y = torch.stack([ids[i + 1: i + 65] for i in batch])  # (8, 64)
        optimizer_step(model, optimizer, model(x, targets=y)[2])
    return model.eval()


def profile_of(model, name: str = "el_quijote.txt", nats: float | None = None, chars: int = 10_000, **given):
    """The corpus profile a run on `name` records (el_quijote.txt: the project's corpus, by its hash),
    with a validation score of `nats` over the whole last 20% when given."""
    from charrnn import corpus_profile
    from charrnn.data import CORPUS_SHA256

    digest = CORPUS_SHA256 if name == "el_quijote.txt" else "0" * 64
    profile = corpus_profile.from_corpus(given.pop("val_text", ""), model.vocab.chars, name=name,
                                         digest=digest, chars=chars, log=lambda *a: None, **given)
    if nats is not None:
        profile = corpus_profile.with_validation(profile, nats, chars // 5, chars // 5, 0.2)
    return profile


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with config.json + model.safetensors of a tiny trained LSTM, as weights/ would hold,
    and the corpus.json a run on TINY_TEXT records (seeds and passages from that text)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and kinder to a busy machine
    try:
        model = train_tiny()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    profile_of(model, "tiny.txt", chars=len(TINY_TEXT), val_text=TINY_TEXT, language="es").save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded the way the app and the CLIs load weights."""
    from charrnn import load_model

    return load_model(tiny_model_dir, "cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of 2 epochs with snapshots after 5 steps, the first epoch, half the run and the best,
    written as train.py writes its outputs: (its TrainResult, the output folder)."""
    from charrnn.train_cli import write_outputs
    from charrnn.training import train

    tmp = tmp_path_factory.mktemp("snap")
    cfg = tiny_config(tmp, epochs=2.0, snapshots="5,epoch1,half,best")
    result = train(cfg, log=lambda *_: None)
    write_outputs(result, tmp / "out", "python train.py", str(tmp / "out"))
    return result, tmp / "out"


@pytest.fixture
def one_thread():
    """One torch thread for one-char steps (latency-bound), restored afterwards for other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def launch_app():
    """launch_app(model, source, error) -> URL of the app's page for that model, served on a free
    local port until the test module ends. One torch thread meanwhile, as `python app.py` uses."""
    from charrnn.app import page, server  # gradio only for the tests that serve the page

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demos = []

    def launch(model, source: str = "weights", error: str | None = None) -> str:
        demo = page.build_demo(model, source, error)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server.serve(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
        demos.append(demo)
        return f"http://127.0.0.1:{port}/"

    launch.demos = demos  # the launched pages, last one last, for tests that look inside them
    yield launch
    for demo in demos:
        demo.readers.close()  # cancel any reading still going
        demo.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def url(launch_app, tiny_model, tiny_model_dir) -> str:
    """The app's page for the tiny model, one server per test module."""
    return launch_app(tiny_model, str(tiny_model_dir))


def connect(url: str, visitor: str | None = None):
    """A gradio_client for the page at url, quiet and without analytics; `visitor`: the address it
    comes from, as a proxy says it (X-Forwarded-For; uvicorn trusts 127.0.0.1 by default)."""
    from gradio_client import Client

    headers = {"X-Forwarded-For": visitor} if visitor else None
    return Client(url, analytics_enabled=False, verbose=False, headers=headers)


@pytest.fixture(scope="module")
def client(url):
    return connect(url)


# ---------------------------------------------------------------- visitors of a served app, over HTTP

# A text as long as the Read tab takes (handlers.READ_LIMIT: test_visitors checks they agree)
LONG = ("En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo. " * 250)[:20_000]
# a generation request of the page, its parameters in the /generate endpoint's order
GOOD = dict(seed=SEED, length=60, temperature=0.8, top_k=0, top_p=1.0, sampling_seed=5, stop_at="don't stop")


@pytest.fixture
def slow_reading(monkeypatch):
    """Every piece of a reading (a 96-char chunk adaptively) sleeps 50 ms: a 20,000-char adaptive
    reading of the tiny model then takes 10 s or more instead of well under one."""
    from charrnn import adaptive, model, static

    scored = model.target_logprobs

    def slow(logits, y):
        time.sleep(0.05)
        return scored(logits, y)

    for reader in (static, adaptive):
        monkeypatch.setattr(reader, "target_logprobs", slow)


def request(url: str, method: str, path: str, body: bytes | None = None, visitor: str = "1.1.1.1",
            read: bool = True) -> tuple[int, str]:
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    headers = {"Content-Type": "application/json", "X-Forwarded-For": visitor}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    answer = (response.status, response.read().decode() if read else "")
    conn.close()
    return answer


def call(url: str, api: str, data: list, visitor: str) -> tuple[int, str]:
    """POST /gradio_api/call/API as a script would, and not read the result: (status, event id or error)."""
    body = json.dumps({"data": data}).encode()
    status, text = request(url, "POST", f"/gradio_api/call/{api}", body, visitor)
    return status, json.loads(text).get("event_id") or text


def result(url: str, api: str, event_id: str) -> str:
    """The event stream of a /call/ event, to its end."""
    return request(url, "GET", f"/gradio_api/call/{api}/{event_id}")[1]


def wait_for(condition, what: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def app(launch_app, tiny_model, tiny_model_dir, slow_reading):
    """A fresh app (its own readers) per test; what is still reading is cancelled afterwards."""
    demos = []

    def start():
        url = launch_app(tiny_model, str(tiny_model_dir))
        demos.append(launch_app.demos[-1])
        return url, demos[-1].readers

    yield start
    for demo in demos:
        demo.readers.close()


# ---------------------------------------------------------------- a browser

CHROMIUM = os.environ.get("CHARRNN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright; skipped where either is missing, except in CI (a failure)."""
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


# ---------------------------------------------------------------- the Hub, recorded

@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """Replace HfApi's network calls with recorders: [(method, args, kwargs), ...]; a commit's
    operations are read at once into {path_in_repo: bytes}, as the Hub would receive them."""
    from huggingface_hub import HfApi

    from charrnn import hub

    calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{'spaces/' if kw.get('repo_type') == 'space' else ''}{repo_id}"

    def create_commit(self, repo_id, operations, **kw):
        files = {}
        for op in operations:
            src = op.path_or_fileobj
            files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
        calls.append(("create_commit", repo_id, {**kw, "files": files}))

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # a logged-in user, as far as the checks can tell
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: True)
    monkeypatch.setattr(HfApi, "whoami", lambda self: {"name": "someone"})
    monkeypatch.setattr(HfApi, "repo_exists", lambda self, repo_id,
                        repo_type=None: repo_id == "someone/pushed")
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


# ---------------------------------------------------------------- the tiers

SLOW_FIXTURES = {"launch_app": "serves the app", "browser": "drives a browser"}


def pytest_collection_modifyitems(items):
    """A test that serves the app or drives a browser is slow, whether or not it says so."""
    for item in items:
        if SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_python(request, monkeypatch):
    """Starting another Python (torch's import alone takes seconds) belongs to the slow tier: a test
    without the mark that does it fails, naming the mark, so the fast tier stays fast."""
    if request.node.get_closest_marker("slow"):
        return
    popen_init = subprocess.Popen.__init__

    def refuse_python(self, args, *rest, **kwargs):
        program = str(args[0] if isinstance(args, (list, tuple)) else args).split()[0]
        if program == sys.executable or Path(program).name.startswith("python"):
            raise RuntimeError(f"{request.node.name} starts a Python process: mark it @pytest.mark.slow")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_python)
