"""Find (or download) the corpus, split it by position, and batch it as contiguous streams."""
import hashlib
import os
import urllib.request
from pathlib import Path

import torch

CORPUS_URL = "https://mymldatasets.s3.eu-de.cloud-object-storage.appdomain.cloud/el_quijote.txt"
CORPUS_SHA256 = "a82846e648e0f1f7faf71c4224c98dd89ec2cfa7d03275c060b8dea155b08048"
CORPUS_NAME = "el_quijote.txt"
# ../shared/data next to the repository (the team's copy) -- looked up from the repo root.
SHARED_COPY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / CORPUS_NAME
MIN_CHARS = 1000  # below this there is not enough text for a train and a validation split


class DataError(Exception):
    """A problem with the corpus that the user can fix; the message says how."""


def cache_dir() -> Path:
    return Path(os.environ.get("CHARRNN_CACHE", Path.home() / ".cache" / "charrnn"))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def download(url: str, dest: Path, expected_sha256: str, timeout: float = 30) -> Path:
    """Download to a temp file, check the hash, then rename: a bad download never lands in the cache."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            tmp.write_bytes(r.read())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download the corpus from {url}: {e}. "
                        f"Pass --data PATH to use a local copy.") from None
    got = sha256(tmp)
    if got != expected_sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"the download from {url} has sha256 {got}, expected {expected_sha256}")
    os.replace(tmp, dest)
    return dest


def find_corpus(url: str = CORPUS_URL, expected_sha256: str = CORPUS_SHA256,
                shared: Path = SHARED_COPY) -> Path:
    """The default corpus: the cached copy, else the team's shared copy, else a fresh download.
    Every copy must match the known hash, so all runs train on the same text."""
    cached = cache_dir() / CORPUS_NAME
    for path in (cached, Path(shared)):
        if path.is_file():
            got = sha256(path)
            if got != expected_sha256:
                raise DataError(f"{path} has sha256 {got}, expected {expected_sha256}: "
                                f"the file is damaged or a different text; delete it or pass --data")
            return path
    return download(url, cached, expected_sha256)


def read_text(path) -> str:
    """Read a UTF-8 text file with errors a user can act on."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw:  # text files hold no NUL bytes
        raise DataError(f"{path} is UTF-16 (or binary), not UTF-8 text: it has a UTF-16 byte-order mark or NUL "
                        f"bytes; convert it, e.g. iconv -f utf-16 -t utf-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        f"convert it, e.g. iconv -f latin1 -t utf-8") from None
    return text.removeprefix("\ufeff")  # a BOM is an encoding marker, not text


def split(ids: torch.Tensor, val_frac: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """First (1 - val_frac) for training, the rest for validation: by position, never shuffled,
    so validation is text the model has not seen (as in the tutorials: the last 20%)."""
    n_val = int(len(ids) * val_frac)
    return ids[: len(ids) - n_val], ids[len(ids) - n_val:]


def streams(ids: torch.Tensor, batch_size: int, offset: int = 0) -> torch.Tensor:
    """Cut the text into `batch_size` contiguous streams, one per batch row. # (B, L)
    Row b continues where it left off from one chunk to the next, so the recurrent state
    carried between chunks is the state of the text just before (stateful TBPTT)."""
    ids = ids[offset:]
    length = len(ids) // batch_size
    if length < 2:
        raise DataError(f"text of {len(ids)} chars is too short for {batch_size} streams")
    return ids[: length * batch_size].view(batch_size, length)


def chunks(stream: torch.Tensor, seq_len: int):
    """Yield (x, y) chunks of the (B, L) streams with y the next char of x. # (B, T), (B, T)"""
    for i in range(0, stream.size(1) - 1, seq_len):
        t = min(seq_len, stream.size(1) - 1 - i)
        yield stream[:, i: i + t], stream[:, i + 1: i + 1 + t]


def num_chunks(n_ids: int, batch_size: int, seq_len: int, offset: int = 0) -> int:
    length = (n_ids - offset) // batch_size
    return max(0, -(-(length - 1) // seq_len))
