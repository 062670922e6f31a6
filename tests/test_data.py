import hashlib

import pytest
import torch

from charrnn import data


def test_split_is_by_position_without_overlap():
    ids = torch.arange(1000)
    train, val = data.split(ids, 0.2)
    assert len(train) == 800 and len(val) == 200
    assert torch.equal(torch.cat([train, val]), ids)  # disjoint, in order, nothing lost
    assert train.max() < val.min()  # validation is the last 20%


def test_batch_rows_are_contiguous_and_targets_are_next_chars():
    ids = torch.arange(1003)
    s = data.batch_rows(ids, batch_size=4, offset=3)  # (4, 250)
    assert s.shape == (4, 250)
    assert torch.equal(s[1], torch.arange(253, 503))  # row 1 continues the text
    pieces = list(data.chunks(s, seq_len=64))
    assert len(pieces) == data.num_chunks(len(ids), 4, 64, offset=3)
    x0, y0 = pieces[0]
    assert torch.equal(y0, x0 + 1)
    # consecutive chunks continue each other, so a carried state is the state of the text before
    x1, _ = pieces[1]
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)
    assert sum(x.size(1) for x, _ in pieces) == 249  # every char but the last of a row is an input


def test_read_text_errors(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load_text(tmp_path / "missing.txt")
    with pytest.raises(data.DataError, match="not a file"):
        data.load_text(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("año".encode("latin-1"))
    with pytest.raises(data.DataError, match="not UTF-8.*offset 1"):
        data.load_text(bad)
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffhola".encode("utf-8"))
    assert data.load_text(bom) == "hola"


def test_find_corpus_checks_hash_and_downloads_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "served.txt"
    source.write_text("En un lugar de la Mancha", encoding="utf-8")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    url = source.as_uri()  # urllib serves file:// like http, without a network

    # wrong hash: nothing lands in the cache
    with pytest.raises(data.DataError, match="sha256"):
        data.find_corpus(url=url, expected_sha256="0" * 64, shared=tmp_path / "none.txt")
    assert not (tmp_path / "cache" / data.CORPUS_NAME).exists()

    path = data.find_corpus(url=url, expected_sha256=digest, shared=tmp_path / "none.txt")
    assert path == tmp_path / "cache" / data.CORPUS_NAME and path.read_text() == source.read_text()

    # a damaged cached copy is refused, not trained on
    path.write_text("damaged")
    with pytest.raises(data.DataError, match="damaged or a different text"):
        data.find_corpus(url=url, expected_sha256=digest, shared=tmp_path / "none.txt")


def test_find_corpus_uses_shared_copy_and_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    shared = tmp_path / "shared.txt"
    shared.write_text("texto", encoding="utf-8")
    digest = hashlib.sha256(shared.read_bytes()).hexdigest()
    assert data.find_corpus(url="http://127.0.0.1:9/x", expected_sha256=digest, shared=shared) == shared
    with pytest.raises(data.DataError, match="could not download.*--data"):
        data.find_corpus(url="http://127.0.0.1:9/x", expected_sha256=digest, shared=tmp_path / "none.txt")


def test_shared_copy_of_the_real_corpus_matches_its_hash():
    if not data.SHARED_COPY.exists():
        pytest.skip("../shared/data is not beside this checkout")
    assert data.sha256(data.SHARED_COPY) == data.CORPUS_SHA256
