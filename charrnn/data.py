"""Find (or download) the corpus, prepare it once as a token file on disk, split it by position,
and load it as contiguous rows, one (B, T+1) window per step, through a memmap.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .text import Vocab, normalize_pieces

CORPUS_URL = "https://mymldatasets.s3.eu-de.cloud-object-storage.appdomain.cloud/el_quijote.txt"
CORPUS_SHA256 = "a82846e648e0f1f7faf71c4224c98dd89ec2cfa7d03275c060b8dea155b08048"
CORPUS_NAME = "el_quijote.txt"
# ../shared/data next to the repository (the team's copy) -- looked up from the repo root.
SHARED_COPY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / CORPUS_NAME
MIN_CHARS = 1000  # below this there is not enough text for a train and a validation split
TOKENS_FORMAT = 1  # bump when the token file's layout or the normalization changes
MAX_VOCAB = 1 << 16  # ids are stored as uint16 at most
REMAP_BLOCK = 16 << 20  # ids rewritten at a time after the pass


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


def refuse_utf16(path, raw: bytes) -> None:
    """DataError if `raw` (a file's bytes, or its first block) is UTF-16 or binary, not UTF-8 text."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw:  # text files hold no NUL bytes
        raise DataError(f"{path} is UTF-16 (or binary), not UTF-8 text: it has a UTF-16 byte-order mark or "
                        f"NUL bytes; convert it, e.g. iconv -f utf-16 -t utf-8")


def load_text(path) -> str:
    """Load a UTF-8 text file with errors a user can act on."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    raw = path.read_bytes()
    refuse_utf16(path, raw)
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


@dataclass(frozen=True)
class CorpusInfo:
    """What a model was trained on, as the log, metrics and model card state it."""
    # e.g. "el_quijote.txt", "novelas/ (3 .txt files)", "wikitext (wikitext-2-raw-v1), column 'text'"
    name: str
    source: str  # the path or dataset id it was loaded from
    default: bool  # the project's el_quijote.txt (by content hash), the one compared with the tutorials
    sha256: str  # of the content: the file's bytes for a file
    strip_accents: bool
    chars: int  # after normalization
    vocab_size: int
    train_chars: int  # the first (1 - val_frac), by position
    val_chars: int  # the rest
    # validation chars each evaluation reads: the first ones, all of them unless the split is large
    eval_chars: int

    @property
    def exact(self) -> bool:
        return self.eval_chars == self.val_chars

    def describe(self) -> str:
        bounded = "" if self.exact else f" (evaluated on the first {self.eval_chars:,})"
        val = f"{self.val_chars:,} val chars{bounded}"
        return (f"{self.name}: {self.chars:,} chars, vocab {self.vocab_size}, "
                f"{self.train_chars:,} train / {val}")

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(source, strip_accents: bool = False, log=print) -> tuple[Path, str]:
    """The folder holding the source's token file (tokens.bin + meta.json), and its content hash.

    The first time, one pass, piece by piece, normalizes, finds the vocabulary and writes the ids, with a
    progress bar (as nanoGPT's prepare.py, but cached by content hash under the cache folder); later
    runs on the same content find it and skip the pass."""
    digest = source.digest()
    kind = "stripped" if strip_accents else "nfc"
    folder = cache_dir() / "tokens" / f"{digest[:32]}-{kind}-v{TOKENS_FORMAT}"
    if (folder / "meta.json").is_file():
        return folder, digest
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".preparing-"))
    try:
        first_seen = encode_pass(source, strip_accents, tmp / "first_seen.u16")
        # what was loaded is not what was hashed: never cache it under that hash
        if source.loaded_digest != digest:
            raise DataError(f"{source.name} changed while it was being prepared; nothing was kept: run again "
                            f"once nothing writes to it")
        chars = "".join(sorted(first_seen))
        dtype = np.uint8 if len(chars) <= 256 else np.uint16
        length = remap(tmp / "first_seen.u16", tmp / "tokens.bin", first_seen, chars, dtype)
        (tmp / "first_seen.u16").unlink()
        meta = dict(format=TOKENS_FORMAT, source=source.name, sha256=digest, strip_accents=strip_accents,
                    chars=chars, dtype=np.dtype(dtype).name, length=length)
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        try:
            os.rename(tmp, folder)  # atomic: a half-written token file is never found
        except OSError:
            if not (folder / "meta.json").is_file():  # else another process prepared it meanwhile
                raise
    except KeyboardInterrupt:
        raise DataError(f"interrupted while preparing {source.name}; nothing was kept, "
                        f"run again to redo it") from None
    except OSError as e:  # a full disk, a read-only cache
        raise DataError(f"could not write the token file in {folder.parent}: {e.strerror or e}; free some "
                        f"space or point CHARRNN_CACHE at another folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"prepared {source.name}: {length:,} chars, vocab {len(chars)}, token file {folder}")
    return folder, digest


def encode_pass(source, strip_accents: bool, path: Path) -> list[str]:
    """Normalize and encode the source in one pass, piece by piece, writing uint16 ids to `path`. The sorted
    vocabulary is only known at the end, so ids are given in order of first appearance; returns
    the characters in that order."""
    table = np.full(0x110000, -1, dtype=np.int32)  # code point -> id
    chars: list[str] = []
    bar = tqdm(total=source.total, unit=source.unit, unit_scale=True, desc=f"preparing {source.name}",
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    done = 0  # chars encoded so far
    with bar, open(path, "wb") as f:
        for piece in normalize_pieces(source.pieces(bar), strip_accents):
            nul = piece.find("\x00")
            if nul >= 0:  # text holds no NUL: checked in every piece, not only the first bytes of a file
                raise DataError(f"{source.name} is binary, not text: it has a NUL character at char "
                                f"{done + nul:,}")
            done += len(piece)
            codes = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
            ids = table[codes]
            if (ids < 0).any():
                for code in np.unique(codes[ids < 0]):
                    table[code] = len(chars)
                    chars.append(chr(code))
                if len(chars) > MAX_VOCAB:
                    raise DataError(f"{source.name} has more than {MAX_VOCAB:,} distinct characters: "
                                    f"too many for a character-level model")
                ids = table[codes]
            f.write(ids.astype(np.uint16).tobytes())
    return chars


def remap(src: Path, dst: Path, first_seen: list[str], chars: str, dtype) -> int:
    """Rewrite first-appearance ids as ids of the sorted vocabulary, in blocks; returns the length."""
    rank = {c: i for i, c in enumerate(chars)}
    lut = np.array([rank[c] for c in first_seen], dtype=dtype)
    n = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while (ids := np.fromfile(fin, dtype=np.uint16, count=REMAP_BLOCK)).size:
            fout.write(lut[ids].tobytes())
            n += ids.size
    return n


class Corpus:
    """A prepared corpus: the token file as a read-only memmap, split by position. # (N,)"""

    def __init__(self, folder: Path, source, digest: str, val_frac: float = 0.2,
                 max_eval_chars: int = 1_000_000):
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
        self.vocab = Vocab(meta["chars"], meta["strip_accents"])
        if meta["length"] < MIN_CHARS:
            raise DataError(f"{source.name} has {meta['length']} characters; training needs at least "
                            f"{MIN_CHARS}")
        if len(self.vocab) < 2:  # with one character there is nothing to predict
            raise DataError(f"{source.name} holds only one distinct character ({self.vocab.chars!r}): "
                            "there is nothing to learn")
        self.ids = np.memmap(Path(folder) / "tokens.bin", dtype=meta["dtype"], mode="r",
                             shape=(meta["length"],))
        self.train, self.val = split(self.ids, val_frac)  # (N_train,), (N_val,) views of the file
        self.info = CorpusInfo(name=source.name, source=source.location, default=digest == CORPUS_SHA256,
                               sha256=digest, strip_accents=meta["strip_accents"], chars=len(self.ids),
                               vocab_size=len(self.vocab), train_chars=len(self.train),
                               val_chars=len(self.val), eval_chars=min(len(self.val), max_eval_chars))

    def val_text(self, chars: int) -> str:
        """The first `chars` chars of the validation split, as text."""
        return self.vocab.decode(np.asarray(self.val[:chars]))

    def eval_ids(self) -> torch.Tensor:
        """The validation chars evaluations read, in memory. # (N_eval,)"""
        return as_tensor(self.val[: self.info.eval_chars])


def load(source, strip_accents: bool = False, val_frac: float = 0.2, max_eval_chars: int = 1_000_000,
         log=print) -> Corpus:
    """Prepare the source's token file (or find it prepared) and open it."""
    if max_eval_chars < 2:
        raise DataError(f"max-eval-chars must be at least 2, not {max_eval_chars}")
    folder, digest = prepare(source, strip_accents, log)
    return Corpus(folder, source, digest, val_frac, max_eval_chars)


def as_tensor(ids) -> torch.Tensor:
    """Token ids (a memmap slice, uint8/uint16) as the int64 tensor the model embeds."""
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))


def batch_rows(ids: torch.Tensor, batch_size: int, offset: int = 0) -> torch.Tensor:
    """Cut the text into `batch_size` contiguous rows, side by side in the batch. # (B, L)
    Row b continues where it left off from one chunk to the next, so the recurrent state
    carried between chunks is the state of the text just before (stateful TBPTT).
    In memory: training loads the same chunks from disk, one at a time, with load_chunk."""
    ids = ids[offset:]
    length = len(ids) // batch_size
    if length < 2:
        raise DataError(f"text of {len(ids)} chars is too short for {batch_size} rows")
    return ids[: length * batch_size].view(batch_size, length)


def chunks(rows: torch.Tensor, seq_len: int):
    """Yield (x, y) chunks of the (B, L) rows with y the next char of x. # (B, T), (B, T)"""
    for i in range(0, rows.size(1) - 1, seq_len):
        t = min(seq_len, rows.size(1) - 1 - i)
        yield rows[:, i: i + t], rows[:, i + 1: i + 1 + t]


def num_chunks(n_ids: int, batch_size: int, seq_len: int, offset: int = 0) -> int:
    length = (n_ids - offset) // batch_size
    return max(0, -(-(length - 1) // seq_len))


def load_chunk(ids: np.ndarray, batch_size: int, seq_len: int, offset: int, i: int,
               device: torch.device | str = "cpu",
               rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk i of chunks(batch_rows(ids, batch_size, offset), seq_len), loaded from `ids` (a memmap) as
    one (B, T+1) window; `rows` picks some of the rows (a DDP rank takes its own). # (B, T), (B, T)"""
    length = (len(ids) - offset) // batch_size
    if length < 2:
        raise DataError(f"text of {len(ids)} chars is too short for {batch_size} rows")
    row_starts = offset + length * np.arange(batch_size)[rows, None]  # (B, 1): where each row starts
    t = min(seq_len, length - 1 - i * seq_len)
    window = as_tensor(ids[row_starts + i * seq_len + np.arange(t + 1)]).to(device)  # (B, t+1)
    return window[:, :-1], window[:, 1:]
