"""Any corpus, any size: files, folders and datasets prepared once into a token file read through a
memmap, the split and batches as before, bounded evaluation, clear errors."""
import dataclasses
import json
import unicodedata

import numpy as np
import pytest
import torch

from charrnn import data, sources, train_cli
from charrnn.text import Vocab, normalize
from charrnn.training import TrainConfig, open_corpus, train
from conftest import make_text

# NFD, as the real corpus stores accents, with CRLF line ends and a BOM-free start
TEXT = unicodedata.normalize("NFD", "¿Qué dices, Sancho?\r\nAño de pingüino, ñandú, allá. " * 40)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Token files go to a fresh cache folder per test."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def prepared(source, **kw) -> data.Corpus:
    return data.load(source, log=lambda *_: None, **kw)


def test_file_read_in_tiny_blocks_gives_the_ids_of_the_whole_text(tmp_path, monkeypatch):
    """Blocks of 7 bytes cut UTF-8 sequences, letters from their accents and \\r from \\n."""
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode("utf-8"))  # with a BOM, which is not text
    monkeypatch.setattr(sources, "BLOCK_BYTES", 7)
    corpus = prepared(sources.FileSource(path))
    vocab = Vocab.from_text(TEXT)
    assert corpus.vocab.chars == vocab.chars
    assert corpus.ids.dtype == np.uint8 and isinstance(corpus.ids, np.memmap)
    assert corpus.ids.tolist() == vocab.encode(TEXT)
    assert corpus.info.chars == len(normalize(TEXT)) and not corpus.info.default


def test_default_corpus_gives_the_same_data_and_split_as_before():
    if not data.SHARED_COPY.exists():
        pytest.skip("../shared/data is not beside this checkout")
    corpus = open_corpus(TrainConfig(), log=lambda *_: None)
    text = data.load_text(data.SHARED_COPY)  # the old way: all in memory
    vocab = Vocab.from_text(text)
    ids = torch.tensor(vocab.encode(text))
    train_ids, val_ids = data.split(ids, 0.2)
    assert corpus.vocab.chars == vocab.chars
    assert torch.equal(data.as_tensor(corpus.train), train_ids)
    assert torch.equal(corpus.eval_ids(), val_ids)  # its validation split is read whole: exact
    assert corpus.info.default and corpus.info.exact and corpus.info.name == data.CORPUS_NAME


def test_folder_of_txt_files_is_read_in_name_order_one_document_after_another(tmp_path):
    folder = tmp_path / "novelas"
    folder.mkdir()
    (folder / "b.txt").write_text("Segundo libro, sin salto final." * 20, encoding="utf-8")
    (folder / "a.txt").write_text("Primer libro.\n" * 40, encoding="utf-8")
    (folder / "notas.md").write_text("not a .txt file: left out", encoding="utf-8")
    corpus = prepared(sources.open_source(str(folder)))
    expected = "Primer libro.\n" * 40 + "Segundo libro, sin salto final." * 20 + "\n"
    assert corpus.vocab.decode(corpus.ids) == expected
    assert corpus.info.name == "novelas/ (2 .txt files)" and corpus.info.source == str(folder)


def test_dataset_saved_to_disk_is_read_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = ["En un lugar de la Mancha,", "de cuyo nombre no quiero acordarme,\n", "",
            "no ha mucho tiempo"] * 100
    ds = datasets.Dataset.from_dict({"id": list(range(len(rows))), "texto": rows})
    datasets.DatasetDict({"train": ds, "test": ds.select(range(3))}).save_to_disk(tmp_path / "ds")
    corpus = prepared(sources.open_source(dataset=str(tmp_path / "ds"), text_column="texto"))
    # the train split's rows, one document per row, each ending a line; empty rows add nothing
    expected = "".join(r if r.endswith("\n") else r + "\n" for r in rows if r)
    assert corpus.vocab.decode(corpus.ids) == expected
    assert corpus.info.name == f"{tmp_path / 'ds'}, column 'texto'"

    with pytest.raises(data.DataError, match="no column 'text'; its columns: id, texto"):
        sources.open_source(dataset=str(tmp_path / "ds"))
    with pytest.raises(data.DataError, match="holds .*not text"):
        sources.open_source(dataset=str(tmp_path / "ds"), text_column="id")
    with pytest.raises(data.DataError,
                       match="^HF_HUB_OFFLINE is set and the dataset no-such/dataset-here could "
                             "not be read from the local Hugging Face cache"):
        # offline (HF_HUB_OFFLINE=1): one line, no traceback
        sources.open_source(dataset="no-such/dataset-here")


def test_second_preparation_of_the_same_content_reads_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    first = prepared(sources.FileSource(path))
    copy = tmp_path / "copy.txt"
    copy.write_text(TEXT, encoding="utf-8")  # same content, another name: same token file

    def encode_again(*a, **kw):
        raise AssertionError("re-encoded a corpus whose token file is cached")

    monkeypatch.setattr(data, "encode_pass", encode_again)
    again = prepared(sources.FileSource(copy))
    assert again.ids.filename == first.ids.filename and again.ids.tolist() == first.ids.tolist()
    path.write_text(TEXT + "Otro.", encoding="utf-8")  # new content: prepared anew
    with pytest.raises(AssertionError, match="re-encoded"):
        prepared(sources.FileSource(path))
    # stripping accents is another text, so another token file
    monkeypatch.undo()
    stripped = prepared(sources.FileSource(copy), strip_accents=True)
    assert stripped.ids.filename != first.ids.filename and "é" not in stripped.vocab.chars


def test_failed_preparation_leaves_nothing_behind(tmp_path, cache, monkeypatch):
    path = tmp_path / "bad.txt"
    path.write_bytes(("é" * 2500).encode("utf-8") + "año".encode("latin-1"))  # the offset counts bytes
    monkeypatch.setattr(sources, "BLOCK_BYTES", 7)  # blocks that cut the é's in two
    with pytest.raises(data.DataError, match=r"not UTF-8 text \(byte 0xf1 at offset 5001\)"):
        prepared(sources.FileSource(path))
    assert list((cache / "tokens").iterdir()) == []  # no half-written token file to be found later

    def disk_full(*a):
        raise OSError(28, "No space left on device")

    def ctrl_c(*a):
        raise KeyboardInterrupt

    path.write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(data, "remap", disk_full)
    with pytest.raises(data.DataError, match="could not write the token file .*No space left.*CHARRNN_CACHE"):
        prepared(sources.FileSource(path))
    monkeypatch.setattr(data, "encode_pass", ctrl_c)
    with pytest.raises(data.DataError, match="interrupted while preparing bad.txt; nothing was kept"):
        prepared(sources.FileSource(path))
    assert list((cache / "tokens").iterdir()) == []


def test_memmap_batches_equal_the_in_memory_row_batches(tmp_path):
    corpus = prepared(sources.FileSource(make_text(tmp_path / "t.txt", n_chars=5000)))
    ids = data.as_tensor(corpus.train)
    for batch_size, seq_len, offset in [(4, 32, 0), (8, 50, 7), (3, 64, 63)]:
        old = list(data.chunks(data.batch_rows(ids, batch_size, offset), seq_len))
        n = data.num_chunks(len(corpus.train), batch_size, seq_len, offset)
        new = [data.load_chunk(corpus.train, batch_size, seq_len, offset, i) for i in range(n)]
        assert n == len(old)
        for (x0, y0), (x1, y1) in zip(old, new):
            assert x1.dtype == torch.long and torch.equal(x0, x1) and torch.equal(y0, y1)
        # a resumed epoch reads its chunk directly, without reading the ones before
        x5, _ = data.load_chunk(corpus.train, batch_size, seq_len, offset, 5)
        assert torch.equal(x5, old[5][0])


def test_evaluation_reads_a_bounded_stated_number_of_validation_chars(tmp_path):
    text = make_text(tmp_path / "t.txt", n_chars=20_000)
    corpus = prepared(sources.FileSource(text), max_eval_chars=1500)
    n_val = corpus.info.val_chars
    assert n_val == int(corpus.info.chars * 0.2) > 1500
    assert corpus.info.eval_chars == 1500
    assert not corpus.info.exact
    assert torch.equal(corpus.eval_ids(), data.as_tensor(corpus.val[:1500]))  # the start of the split
    assert f"{n_val:,} val chars (evaluated on the first 1,500)" in corpus.info.describe()

    cfg = TrainConfig(data=str(text), cell="gru", embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0,
                      batch_size=8, seq_len=32, lr=1e-2, epochs=0.2, max_minutes=5.0, eval_every=5,
                      eval_rows=4, max_eval_chars=1500, out=str(tmp_path / "out"))
    logs = []
    summary = train(cfg, log=logs.append)
    assert any("evaluated on the first 1,500" in line for line in logs)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["val_chars"] == 1500 for r in rows)
    assert summary.corpus.eval_chars == 1500
    assert summary.corpus.val_chars == n_val
    assert summary.corpus == corpus.info


def test_loss_plot_compares_with_the_tutorial_only_on_the_default_corpus(tmp_path, monkeypatch):
    import matplotlib.axes

    from charrnn.hub import plot_losses

    lines = []
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y, **kw: lines.append(y))
    history = [dict(elapsed_s=60, train_loss=1.5, val_loss=1.6)]
    info = prepared(sources.FileSource(make_text(tmp_path / "t.txt"))).info
    plot_losses(history, tmp_path / "mine.png", "mine", info)
    assert lines == [] and (tmp_path / "mine.png").stat().st_size > 0
    plot_losses(history, tmp_path / "quijote.png", "quijote", dataclasses.replace(info, default=True))
    assert lines == [1.2446]


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/empty"], "no .txt files in the folder"),
    (["--data", "{tmp}/nothing-here"], "no such file or folder"),
    (["--data", "{tmp}/latin1.txt"], "is not UTF-8 text (byte 0xf1 at offset 1)"),
    (["--data", "{tmp}/empty/../latin1.txt", "--dataset", "x"], "pass --data or --dataset, not both"),
    (["--text-column", "body"], "--dataset-config and --text-column go with --dataset"),
    (["--dataset", "{tmp}/ds", "--text-column", "body"], "no column 'body'; its columns: text"),
    (["--data", "{tmp}/good.txt", "--max-eval-chars", "1"], "max-eval-chars must be at least 2"),
])
def test_bad_corpus_flags_are_one_line_errors(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "latin1.txt").write_bytes("año".encode("latin-1"))
    make_text(tmp_path / "good.txt")
    if "--dataset" in args:
        datasets = pytest.importorskip("datasets")
        datasets.Dataset.from_dict({"text": ["hola"]}).save_to_disk(tmp_path / "ds")
    argv = [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_file_changed_while_it_is_prepared_is_never_cached_under_its_old_hash(tmp_path, monkeypatch, kind):
    path = tmp_path / "texts" / "t.txt"
    path.parent.mkdir()
    path.write_text(TEXT * 40, encoding="utf-8")  # 100 KB: past the reader's own 8 KB buffer
    original = path.read_bytes()
    changed = original[:50_000] + b"Z" * 200 + original[50_200:]  # a byte range overwritten, mid-way
    monkeypatch.setattr(sources, "BLOCK_BYTES", 4096)
    source = sources.FileSource(path) if kind == "file" else sources.FolderSource(path.parent)
    read_pieces = type(source).pieces

    def overwritten_after_the_first_block(self, progress=None):
        for i, piece in enumerate(read_pieces(self, progress)):
            if i == 0:
                path.write_bytes(changed)
            yield piece

    monkeypatch.setattr(type(source), "pieces", overwritten_after_the_first_block)
    with pytest.raises(data.DataError, match="changed while it was being prepared; nothing was kept"):
        prepared(source)
    monkeypatch.undo()

    path.write_bytes(original)  # restored: its preparation must not find a token file of the changed text
    corpus = prepared(sources.FileSource(path) if kind == "file" else sources.FolderSource(path.parent))
    assert "Z" not in corpus.vocab.chars and corpus.vocab.chars == Vocab.from_text(TEXT).chars
    assert corpus.info.chars >= len(normalize(TEXT * 40))  # all of it (a folder adds a final newline)


def test_a_nul_byte_anywhere_in_the_text_is_refused(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT.encode("utf-8") * 4 + b"\x00" + TEXT.encode("utf-8"))  # far past the first 4 KB
    assert path.stat().st_size > 4096 * 2
    rc = train_cli.main(["--data", str(path), "--out", str(tmp_path / "out"), "--max-minutes", "0.05",
                         "--hidden-size", "16", "--num-layers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: t.txt is binary, not text: it has a NUL character at char"), err


def test_a_hub_dataset_without_a_network_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    """As a model's repo id: the Hub is probed once, and without an answer only the cache is read,
    with no request that huggingface_hub would retry five times over 25 s."""
    datasets = pytest.importorskip("datasets")
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    from charrnn import weights

    requests = []

    def answer(request):  # a Hub that answers would be asked: record it
        requests.append(request)
        return httpx2.Response(404, json={"error": "not here"})

    monkeypatch.delenv("HF_HUB_OFFLINE")  # no offline mode set: only the network is gone
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=0: False)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    try:
        rc = train_cli.main(["--dataset", "someone/cartas", "--out", str(tmp_path / "out")])
    finally:
        huggingface_hub.set_client_factory(_http.default_client_factory)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "\n".join(err)
    said = ("error: the Hub cannot be reached (no answer from it within 3 s) and the dataset someone/cartas "
            "could not be read from the local Hugging Face cache")
    assert err[-1].startswith(said), err
    assert requests == [] and datasets.config.HF_HUB_OFFLINE is False  # no request; the setting restored
