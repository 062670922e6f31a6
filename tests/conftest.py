"""Shared fixtures: a tiny trained CharRNN saved like the real weights, and an offline environment."""
import os
import tempfile

# Tests never reach the network: the Hub client fails fast offline, Gradio sends no analytics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Token files the tests prepare go to a folder of their own, not the user's ~/.cache/charrnn.
os.environ["CHARRNN_CACHE"] = tempfile.mkdtemp(prefix="charrnn-test-cache-")

import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `import app` and `import charrnn` from the repo, wherever pytest runs

# The novel's opening (public domain): enough for a tiny model to learn spaces, words and commas.
TINY_TEXT = (
    "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía un "
    "hidalgo de los de lanza en astillero, adarga antigua, rocín flaco y galgo corredor. Una olla de algo "
    "más vaca que carnero, salpicón las más noches, duelos y quebrantos los sábados, lantejas los viernes, "
    "algún palomino de añadidura los domingos, consumían las tres partes de su hacienda. El resto della "
    "concluían sayo de velarte, calzas de velludo para las fiestas, con sus pantuflos de lo mesmo, y los "
    "días de entresemana se honraba con su vellorí de lo más fino.\n¿Qué gigantes? –dijo Sancho Panza.\n"
)


def train_tiny(cell: str = "lstm", steps: int = 120, seed: int = 0):
    """A 2-layer, 32-unit model trained for about a second on TINY_TEXT: random 64-char windows,
    through training.py's own parts."""
    from charrnn.text import Vocab
    from charrnn.training import TrainConfig, build_model, optimizer_step

    torch.manual_seed(seed)
    vocab = Vocab.from_text(TINY_TEXT)
    cfg = TrainConfig(cell=cell, embed_dim=16, hidden_size=32, num_layers=2, dropout=0.1)
    model = build_model(cfg, vocab)
    ids = torch.tensor(vocab.encode(TINY_TEXT))
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
    profile = corpus_profile.from_corpus(given.pop("val_text", ""), model.vocab.chars, name=name, digest=digest,
                                         chars=chars, log=lambda *a: None, **given)
    if nats is not None:
        profile = corpus_profile.with_validation(profile, nats, chars // 5, chars // 5, 0.2)
    return profile


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with config.json + model.safetensors of a tiny trained LSTM, as weights/ would hold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and kinder to a busy machine
    try:
        model = train_tiny()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded the way the app and the CLIs load weights."""
    from charrnn.hub import load_model

    return load_model(tiny_model_dir, "cpu")


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

    yield launch
    for demo in demos:
        demo.close()
    torch.set_num_threads(threads)
