"""Where a corpus comes from: a UTF-8 file, a folder of .txt files, or a Hugging Face dataset.

Each source loads its text piece by piece (never all at once), says how far through it is
for a progress bar, and hashes its content, so that a prepared token file can be found again.
Loading the pieces hashes the bytes as they are loaded (`loaded_digest`, set once all are loaded), so
that a file changed during its preparation is never stored under the hash of its earlier content.
Documents (the files of a folder, the rows of a dataset) are joined with a newline when they do
not already end with one.
"""
import codecs
import hashlib
from contextlib import contextmanager
from pathlib import Path

from .data import DataError, find_corpus, refuse_utf16
from .weights import first_line, offline_reason

BLOCK_BYTES = 8 << 20  # load files 8 MiB at a time


def open_source(data: str | None = None, dataset: str | None = None, dataset_config: str | None = None,
                text_column: str = "text"):
    """The source the flags name: --data FILE or FOLDER, or --dataset NAME (a saved dataset's folder
    or a Hub dataset id). Neither: the default corpus, el_quijote.txt."""
    if data and dataset:
        raise DataError("pass --data or --dataset, not both")
    if not dataset and (dataset_config or text_column != "text"):
        raise DataError("--dataset-config and --text-column go with --dataset")
    if dataset:
        return DatasetSource(dataset, dataset_config, text_column)
    if not data:
        return FileSource(find_corpus())
    path = Path(data)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    return FileSource(path)


def load_blocks(path: Path, progress=None, seen=None):
    """Decoded text of a UTF-8 file, BLOCK_BYTES at a time, without its byte-order mark; `seen` (a
    hashlib object) is updated with every byte loaded."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(BLOCK_BYTES)
            if seen is not None:
                seen.update(raw)
            if offset == 0:
                refuse_utf16(path, raw[:4096])
            pending = decoder.getstate()[0]  # the start of a character cut by the last block
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:  # e.object is pending + raw
                at, byte = offset - len(pending) + e.start, e.object[e.start]
                raise DataError(f"{path} is not UTF-8 text (byte 0x{byte:02x} at offset {at}); "
                                f"convert it, e.g. iconv -f latin1 -t utf-8") from None
            if offset == 0:
                text = text.removeprefix("\ufeff")  # an encoding marker, not text
            offset += len(raw)
            if progress is not None:
                progress.update(len(raw))
            if text:
                yield text
            if not raw:
                return


def hash_files(paths, h=None):
    """sha256 (or `h`, updated) over the files' bytes, loaded a block at a time."""
    h = h or hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(BLOCK_BYTES):
                h.update(block)
    return h


class FileSource:
    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"not a file: {self.path}")
        self.name, self.location, self.unit = self.path.name, str(self.path), "B"
        self.total = self.path.stat().st_size

    def digest(self) -> str:
        """sha256 of the file's bytes: for el_quijote.txt, the hash data.CORPUS_SHA256 names."""
        return hash_files([self.path]).hexdigest()

    def pieces(self, progress=None):
        """The text; once all of it is loaded, loaded_digest is digest() of the bytes that were loaded."""
        seen = hashlib.sha256()
        yield from load_blocks(self.path, progress, seen)
        self.loaded_digest = seen.hexdigest()


def folder_digest(files) -> str:
    """sha256 over (name, sha256 of its bytes) pairs."""
    h = hashlib.sha256()
    for name, digest in files:
        h.update(f"{name}\0{digest}\0".encode())
    return h.hexdigest()


class FolderSource:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.glob("*.txt") if p.is_file())
        if not self.files:
            raise DataError(f"no .txt files in the folder {self.path}")
        self.name = f"{self.path.name}/ ({len(self.files)} .txt files)"
        self.location, self.unit = str(self.path), "B"
        self.total = sum(p.stat().st_size for p in self.files)

    def digest(self) -> str:
        """sha256 over each file's name and the sha256 of its bytes, in name order."""
        return folder_digest((p.name, hash_files([p]).hexdigest()) for p in self.files)

    def pieces(self, progress=None):
        """The files' texts, one after another; once all are loaded, loaded_digest is digest() of the
        bytes that were loaded."""
        loaded = []
        for p in self.files:
            last, seen = "", hashlib.sha256()
            for text in load_blocks(p, progress, seen):
                last = text[-1]
                yield text
            loaded.append((p.name, seen.hexdigest()))
            if last and last != "\n":
                yield "\n"
        self.loaded_digest = folder_digest(loaded)


class DatasetSource:
    """A Hugging Face dataset: load_from_disk when NAME is a folder, else load_dataset (the Hub or
    its cache). A dataset with splits contributes its "train" split; its own split by position
    is then made as for any text."""

    ROWS = 1000  # rows loaded at a time

    def __init__(self, name: str, config: str | None = None, column: str = "text"):
        self.dataset = load_dataset(name, config)
        self.column = column
        columns = self.dataset.column_names
        if column not in columns:
            raise DataError(f"the dataset {name} has no column {column!r}; its columns: "
                            f"{', '.join(columns)}. Pass --text-column NAME")
        kind = str(self.dataset.features[column])
        if "string" not in kind or "List" in kind or "Sequence" in kind:
            raise DataError(f"the column {column!r} of {name} holds {kind}, not text; pick another with "
                            "--text-column")
        self.name = f"{name}" + (f" ({config})" if config else "") + f", column {column!r}"
        self.location, self.unit, self.total = name, "rows", len(self.dataset)
        if not self.total:
            raise DataError(f"the dataset {name} has no rows")

    def digest(self) -> str:
        """sha256 of the text as it will be loaded."""
        for _ in self.pieces():
            pass
        return self.loaded_digest

    def pieces(self, progress=None):
        """The rows' texts; once all are loaded, loaded_digest is the sha256 of what was loaded."""
        seen = hashlib.sha256()
        for batch in self.dataset.select_columns([self.column]).iter(batch_size=self.ROWS):
            rows = [t for t in batch[self.column] if t]
            if progress is not None:
                progress.update(len(batch[self.column]))
            if rows:
                text = "".join(t if t.endswith("\n") else t + "\n" for t in rows)
                seen.update(text.encode("utf-8"))
                yield text
        self.loaded_digest = seen.hexdigest()


def load_dataset(name: str, config: str | None):
    """The dataset (its "train" split when it has several), or a one-line DataError. A Hub id is
    looked up as a model is (weights.offline_reason): with HF_HUB_OFFLINE set or no answer from the
    Hub within seconds, only the local cache is used, at once, instead of five retries over 25 s."""
    try:
        import datasets  # noqa: PLC0415 (the [datasets] extra: only --dataset needs it)
    except ImportError:
        raise DataError("--dataset needs the datasets library: pip install datasets") from None
    offline = None
    try:
        if Path(name).exists():
            if config:
                raise DataError(f"--dataset-config does not apply to a dataset saved on disk ({name})")
            ds = datasets.load_from_disk(name)
        else:
            offline = offline_reason()
            with datasets_offline(datasets, offline is not None):
                ds = datasets.load_dataset(name, config)
    except DataError:
        raise
    except Exception as e:  # not found, offline, a bad config: each library layer raises its own kind
        if offline:
            raise DataError(f"{offline} and the dataset {name} could not be read from the local Hugging Face "
                            f"cache ({first_line(e)}): connect and try again, or pass --data FILE") from None
        raise DataError(f"could not load the dataset {name}: {first_line(e)}") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"the dataset {name} has no 'train' split (it has {', '.join(ds)})")
        ds = ds["train"]
    return ds


@contextmanager
def datasets_offline(datasets, offline: bool):
    """datasets' own offline mode (its cache only, no request), for this call: it reads
    HF_HUB_OFFLINE once, at import, into datasets.config, so a Hub found unreachable later is said
    there."""
    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before
