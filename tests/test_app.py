"""The app (charrnn/app, started by app.py) served on a free local port and called through
gradio_client, as an API user would."""
import html
import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import pytest
import torch
from gradio_client.exceptions import AppError

from charrnn.app import page, server, views
from charrnn.generate import MAX_SEED_CHARS, Settings, complete
from conftest import GOOD, ROOT, SEED, connect


def args(**changes):
    return list({**GOOD, **changes}.values())


def still_serving(client) -> bool:
    greedy, sampled, *_ = client.predict(*args(length=50), api_name="/generate")
    return len(greedy) == len(sampled) == len(SEED) + 50


def test_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    # label-only events: private
    assert set(endpoints) == {"/generate", "/resample", "/score", "/inside", "/watch", "/write_like"}
    assert [p["parameter_name"] for p in endpoints["/generate"]["parameters"]] == list(GOOD)


def test_generate_returns_greedy_and_sampled_side_by_side(client, tiny_model):
    greedy, sampled, surprise, candidates, info = client.predict(*args(), api_name="/generate")
    want = complete(tiny_model, SEED, Settings(length=60, temperature=0.8, sampling_seed=5))
    assert greedy == SEED + want.greedy and sampled == SEED + want.sampled
    assert html.unescape(re.sub(r"<[^>]+>", "", surprise)) == sampled  # every char, coloured by views' scale
    assert surprise.count(f"background-color: {views.COLORS[views.SEED_LABEL]}") == 1  # the seed, one run
    assert set(re.findall(r"background-color: (#[0-9a-f]{6})", surprise)) <= set(views.COLORS.values())
    confidences = [c["confidence"] for c in candidates["confidences"]]
    assert len(confidences) == 10 and confidences == sorted(confidences, reverse=True)
    assert candidates["label"] == views.SHOWN_CHARS.get(want.candidates[0][0], want.candidates[0][0])
    assert "60 greedy + 60 sampled characters" in info and "sampling seed **5**" in info
    assert client.predict(*args(), api_name="/generate")[1] == sampled  # same sampling seed, same text


def test_generate_streams_growing_text(client):
    job = client.submit(*args(length=1000, sampling_seed=None), api_name="/generate")
    final = job.result()
    updates = job.outputs()
    assert len(updates) >= 2 and updates[-1] == final
    assert len(updates[0][1]) < len(final[1])  # the first update comes before the text is complete
    for before, after in zip(updates, updates[1:]):
        assert after[0].startswith(before[0]) and after[1].startswith(before[1])
    assert len(final[0]) == len(final[1]) == len(SEED) + 1000


def sampling_seed_of(info: str) -> int:
    return int(re.search(r"sampling seed \*\*(\d+)\*\*", info).group(1))


def test_resample_draws_a_new_sampled_side(client, tiny_model):
    texts, seeds = set(), set()
    for field in (5, -3, 5):  # what the sampling seed field holds, a bad one included: never used
        sampled, surprise, candidates, info = client.predict(*args(length=200, sampling_seed=field),
                                                             api_name="/resample")
        assert sampled.startswith(SEED) and len(sampled) == len(SEED) + 200
        want = complete(tiny_model, SEED,
                        Settings(length=200, temperature=0.8, sampling_seed=sampling_seed_of(info)))
        assert sampled == SEED + want.sampled  # the reported sampling seed is the one used
        texts.add(sampled)
        seeds.add(sampling_seed_of(info))
    assert len(texts) > 1 and len(seeds) == 3  # a fresh sampling seed each time


@pytest.mark.parametrize("changes, says", [
    (dict(length=5000), "Length must be a whole number from 50 to 1,000, not 5000"),
    (dict(length=10), "Length must be"),
    (dict(length=12.5), "Length must be a whole number"),
    (dict(length="abc"), "Length must be a whole number from 50 to 1,000, not 'abc'"),
    (dict(length=None), "Length must be"),
    (dict(length=True), "Length must be"),
    (dict(temperature=0), "Temperature must be a number from 0.1 to 2"),
    (dict(temperature=99), "Temperature must be"),
    (dict(temperature="hot"), "Temperature must be"),
    (dict(temperature=[1]), "Temperature must be"),
    (dict(top_k=-1), "Top-k must be"),
    (dict(top_k=10_000), "Top-k must be"),
    (dict(top_p=0), "Top-p must be"),
    (dict(top_p=1.5), "Top-p must be"),
    (dict(sampling_seed=-3), "The sampling seed must be a whole number from -1 to 2,147,483,647, not -3"),
    (dict(sampling_seed="seven"), "The sampling seed must be"),
    (dict(sampling_seed=1.5), "The sampling seed must be"),
    (dict(stop_at="end of chapter"), "'Stop at' must be one of"),
    (dict(stop_at=[]), "'Stop at' must be one of: don't stop, end of sentence, end of paragraph."),
    (dict(stop_at={}), "'Stop at' must be one of"),
    (dict(length=10**400), "Length must be a whole number from 50 to 1,000, not 1000000"),
    (dict(temperature=10**400), "Temperature must be a number from 0.1 to 2, not 1000000"),
    (dict(top_k=10**400), "Top-k must be"),
    (dict(top_p=-(10**400)), "Top-p must be"),
    (dict(sampling_seed=10**400), "The sampling seed must be"),
    (dict(seed=123), "The seed must be text"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_bad_input_gives_a_clear_error_and_the_server_stays_up(client, changes, says):
    # resample draws its own
    endpoints = ["/generate"] + (["/resample"] if "sampling_seed" not in changes else [])
    for endpoint in endpoints:
        with pytest.raises(AppError) as e:
            client.predict(*args(**changes), api_name=endpoint)
        assert says in str(e.value)
    assert still_serving(client)


@pytest.mark.parametrize("fresh", [-1, None])  # asks for a fresh sampling seed: -1 the page's, None an API's
def test_no_sampling_seed_means_a_fresh_one_each_time(client, tiny_model, fresh):
    seeds = set()
    for _ in range(3):
        greedy, sampled, *_, info = client.predict(*args(sampling_seed=fresh), api_name="/generate")
        seeds.add(sampling_seed_of(info))
        want = complete(tiny_model, SEED,
                        Settings(length=60, temperature=0.8, sampling_seed=sampling_seed_of(info)))
        assert sampled == SEED + want.sampled  # the reported sampling seed replays the text
    assert len(seeds) == 3


@pytest.mark.parametrize("seed, notice",
                         [("", "empty"), (None, "empty"), ("kiwi ™ ñ", "Dropped 3 character(s)"),
                          ("Ñandú", "'Ñ' → 'ñ'")])
def test_odd_seeds_give_output_and_a_visible_notice(client, seed, notice):
    greedy, sampled, surprise, candidates, info = client.predict(*args(seed=seed), api_name="/generate")
    assert len(greedy) > 60 and len(sampled) > 60 and notice in info


def test_a_30k_char_seed_is_trimmed_with_a_notice(client):
    seed = ("de la Mancha " * 3000)[:30_000]
    greedy, sampled, surprise, candidates, info = client.predict(*args(seed=seed), api_name="/generate")
    assert greedy == seed[-MAX_SEED_CHARS:] + greedy[MAX_SEED_CHARS:] and len(greedy) == MAX_SEED_CHARS + 60
    assert "30,000 characters long" in info
    assert still_serving(client)


def post(url: str, body: bytes, chunked: bool = False) -> tuple[int | None, str]:
    """POST a raw body to the generate endpoint, with or without a Content-Length. Status None:
    the server closed the connection before taking the whole body (a refusal that raced the upload:
    its 413 can be lost with the reset)."""
    import http.client
    from urllib.parse import urlparse

    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    parts = [body[i:i + 16384] for i in range(0, len(body), 16384)] if chunked else body
    try:
        conn.request("POST", "/gradio_api/call/generate", body=iter(parts) if chunked else parts,
                     headers={"Content-Type": "application/json"}, encode_chunked=chunked)
    except (BrokenPipeError, ConnectionResetError):
        conn.close()
        return None, ""
    response = conn.getresponse()
    answer = (response.status, response.read().decode())
    conn.close()
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_request_body_over_64_kb_is_refused_before_parsing(url, client, chunked):
    status, text = post(url, json.dumps({"data": args(seed="a" * 200_000)}).encode(), chunked)
    if status is not None:  # else refused mid-upload, before the body was read (see post)
        assert status == 413 and "The request is too large (over 64 KB)" in json.loads(text)["detail"]
    status, text = post(url, b"[" * 100_000, chunked)  # not even JSON: never parsed
    assert status in (413, None)
    status, text = post(url, json.dumps({"data": args()}).encode(), chunked)
    assert status == 200 and "event_id" in text
    assert still_serving(client)


def test_the_per_client_limit_answers_with_a_sentence(launch_app, tiny_model, tiny_model_dir, monkeypatch):
    from charrnn.engine import Engine
    from charrnn.scheduler import Limits

    engines = []  # no rows: the first request waits, and is all this visitor may have

    def make_engine(model):
        engines.append(Engine(model, Limits(max_rows=0, per_visitor=1, per_visitor_waiting=0)))
        return engines[-1]

    monkeypatch.setattr(page, "make_engine", make_engine)
    url = launch_app(tiny_model, str(tiny_model_dir))
    first = connect(url).submit(*args(), api_name="/generate")
    for _ in range(600):
        if engines[0].scheduler.waiting:
            break
        time.sleep(0.05)
    with pytest.raises(AppError, match="You already have 1 generation running or waiting: let one finish"):
        connect(url).predict(*args(), api_name="/generate")
    first.cancel()
    for _ in range(200):  # Gradio closes the stream in its own time; closing it cancels the request
        if not engines[0].scheduler.waiting:
            break
        time.sleep(0.05)
    assert not engines[0].scheduler.waiting and engines[0].load == 0


def test_eight_concurrent_clients_all_get_answers(url):
    def one(i):
        greedy, sampled, *_ = connect(url).predict(*args(length=300, sampling_seed=i), api_name="/generate")
        return len(greedy), len(sampled)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert answers == [(len(SEED) + 300,) * 2] * 8


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_missing_or_corrupt_weights_give_a_page_level_error(launch_app, tiny_model_dir, tmp_path, problem):
    folder = tmp_path / "weights"
    if problem == "corrupt":
        folder.mkdir()
        (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
    model, error = server.load(str(folder), "cpu")
    assert model is None and "train.py" in error and "CHARRNN_MODEL" in error
    assert ("no weights folder" if problem == "missing" else "could not load weights") in error
    url = launch_app(model, str(folder), error)
    config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
    assert "No model is loaded" in config and json.dumps(error)[1:-1] in config
    with pytest.raises(AppError, match="No model is loaded"):
        connect(url).predict(*args(), api_name="/generate")


def test_about_shows_the_model_card_metrics(tiny_model, tiny_model_dir, tmp_path):
    from conftest import profile_of

    card = tiny_model.generate_model_card(corpus=profile_of(tiny_model, "tiny.txt", 1.23456, 600),
                                          recipe=["secret"])
    (tmp_path / "README.md").write_text(str(card), encoding="utf-8")
    text = views.about(tiny_model, str(tmp_path))  # from the card's model-index, not its Markdown
    assert "**1.2346 nats/char** (1.7811 bits/char) on `tiny.txt`, validation (last 20%" in text
    assert "secret" not in text
    assert "LSTM, 2 layers × 32 units" in text and f"`{tmp_path}`" in text
    assert "https://huggingface.co/owner/name" in views.about(tiny_model, "owner/name")


def test_main_leaves_host_and_port_to_gradio_unless_given(monkeypatch, tiny_model_dir):
    calls = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: calls.append(kw))
    monkeypatch.setattr(server, "configure", lambda work: None)  # the thread rule: not for this process
    switches = []  # the app's process hands the GIL back sooner (for the engine's stepper)
    monkeypatch.setattr(server.sys, "setswitchinterval", switches.append)
    monkeypatch.setenv("CHARRNN_MODEL", str(tiny_model_dir))
    server.main([])  # Gradio then reads $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT, as Spaces set them
    server.main(["--host", "0.0.0.0", "--port", "9000"])
    assert [(c["server_name"], c["server_port"]) for c in calls] == [(None, None), ("0.0.0.0", 9000)]
    assert all(c["css"] == page.CSS and c["ssr_mode"] is False for c in calls)
    assert all("middleware" in c["app_kwargs"] for c in calls)
    assert switches == [server.GIL_SWITCH_S] * 2 and server.GIL_SWITCH_S < 0.005  # Python's default: 5 ms


@pytest.mark.parametrize("device", ["cuda", "tpu"])
def test_a_device_error_gives_device_advice(tiny_model_dir, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, error = server.load(str(tiny_model_dir), device)
    assert model is None and "--device cpu" in error and "--device auto" in error
    assert "train.py" not in error and ".." not in error


def test_weights_errors_end_in_one_period(monkeypatch):
    def offline(*args):
        raise server.WeightsError("owner/name is not cached and the Hub cannot be reached: HF_HUB_OFFLINE is "
                                  "on.")

    monkeypatch.setattr(server, "load_model", offline)
    model, error = server.load("owner/name", "cpu")
    assert "HF_HUB_OFFLINE is on. Train a model" in error and ".." not in error


@pytest.mark.skipif(not (ROOT / "weights" / "model.safetensors").is_file(), reason="no trained weights/ yet")
def test_shipped_weights_load_and_generate():
    model, error = server.load(str(ROOT / "weights"), "cpu")
    assert error is None
    out = complete(model, SEED, Settings(length=100, temperature=0.8, sampling_seed=0))
    assert len(out.sampled) == 100 and out.notices == []
    assert "**1.1942 nats/char**" in views.about(model, str(ROOT / "weights"))


def test_a_client_that_goes_away_frees_its_rows(launch_app, tiny_model, tiny_model_dir, monkeypatch):
    from charrnn.engine import Engine
    from charrnn.generate import Batch

    engines, step = [], Batch.step

    def slow_step(self):  # ~10 s for 1000 chars: the request is still running when its client leaves
        time.sleep(0.01)
        return step(self)

    monkeypatch.setattr(Batch, "step", slow_step)
    monkeypatch.setattr(page, "make_engine", lambda model: engines.append(Engine(model)) or engines[-1])
    url = launch_app(tiny_model, str(tiny_model_dir))
    job = connect(url).submit(*args(length=1000), api_name="/generate")
    for _ in range(600):
        if job.outputs():
            break
        time.sleep(0.02)
    assert engines[0].running and engines[0].batch.rows
    job.cancel()
    for _ in range(300):
        if not engines[0].running:
            break
        time.sleep(0.02)
    assert engines[0].running == [] and engines[0].batch.rows == [] and engines[0].load == 0


def test_user_mistakes_print_no_traceback_in_the_server_log(client, capfd):
    capfd.readouterr()
    for call in (lambda: client.predict(*args(temperature=99), api_name="/generate"),
                 lambda: client.predict("", False, api_name="/score"),
                 lambda: client.predict("Hola", 10**6, api_name="/inside")):
        with pytest.raises(AppError):
            call()
    log = capfd.readouterr()
    assert "Traceback" not in log.err + log.out


def test_the_log_says_which_model_device_serving_mode_and_threads_at_start(monkeypatch, tiny_model_dir,
                                                                           capsys):
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: None)
    monkeypatch.setattr(server.torch, "set_num_threads", lambda n: None)
    server.main(["--model", str(tiny_model_dir), "--device", "cpu"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"charrnn app: model {tiny_model_dir} (LSTM 2x32, ")
    assert "device cpu, serving engine" in line and "torch thread(s)" in line
    server.main(["--model", str(tiny_model_dir / "missing")])
    assert "charrnn app: no model loaded from" in capsys.readouterr().out


NOVEL = ["Quijote", "Cervantes", "Spanish", "Mancha", "ñ, ¿ and ¡"]
GREEK = ("Καλημέρα σας, τι κάνετε σήμερα; Ο καιρός είναι ωραίος και η θάλασσα ήσυχη. "
         "Πήγαμε στο λιμάνι με τους φίλους μας το πρωί. Τα παιδιά έπαιζαν στην άμμο ως το βράδυ.\n") * 20
CHINESE = ("我们今天去公园散步，天气很好。他说：“明天会下雨吗？”"
           "我不知道。孩子们在草地上玩耍，笑声不断。\n") * 20


@pytest.mark.parametrize("text", [GREEK, CHINESE], ids=["greek", "chinese"])
def test_a_page_for_another_script_says_nothing_of_the_novel(text, tmp_path):
    """The page's texts (title, intro, examples, passages, About, Look inside's default text), built
    from the model's corpus.json, without a browser."""
    from charrnn import corpus_profile
    from charrnn.hub import save_weights
    from charrnn.model import CharRNN

    model = CharRNN("".join(sorted(set(text))), hidden_size=16, embed_dim=8, num_layers=1).eval()
    save_weights(model, tmp_path)
    profile = corpus_profile.from_corpus(text, model.vocab.chars, name="t.txt", log=lambda *a: None)
    corpus_profile.with_validation(profile, 2.5, 400, 400, 0.2).save(tmp_path)
    demo = page.build_demo(model, str(tmp_path))
    try:
        config = json.dumps(demo.config, ensure_ascii=False)
    finally:
        demo.engine.close()
    assert not [w for w in NOVEL if w in config], [w for w in NOVEL if w in config]
    assert demo.config["title"] == "charrnn · t" and profile.seeds[0] in config
    # offered, and Look inside's text
    assert json.dumps(profile.passages[0], ensure_ascii=False)[1:-1] in config
    about = views.about(model, str(tmp_path))
    assert views.shown_vocabulary(model.vocab.chars) in about and profile.language in about
