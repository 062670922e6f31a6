"""Weight files, checked before they become a model: where they are (a folder, or a Hub repo's
snapshot found quickly when offline), config.json read as a JSON object, the safetensors header's
shapes and dtypes compared with what the config implies, and the tensors read and found finite.

The bottom of the package: no charrnn imports. model.CharRNN.from_pretrained strings these
together (the one loading path); every failure is a WeightsError with one line that says why.
"""
import json
import os
from pathlib import Path

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.utils import get_session
from safetensors import safe_open
from safetensors.torch import load_file

WEIGHT_FILES = ("config.json", "model.safetensors")
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
PROBE_TIMEOUT_S = 3.0  # how long to wait for the Hub before falling back to the local cache


class WeightsError(Exception):
    """Weights that cannot be loaded; the message says which and why."""


def first_line(e: BaseException) -> str:
    """An exception as one line for the user: libraries' messages can run to many."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---- the Hub: offline, reachable ---------------------------------------------------------------

def is_repo_id(name: str) -> bool:
    """OWNER/NAME, as the Hub spells repo ids (not a path like ./x/y or /x/y)."""
    return name.count("/") == 1 and not name.startswith((".", "/")) and not name.endswith("/")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, looked up now rather than at import."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One quick request to the Hub, through huggingface_hub's own session (its proxies, its
    endpoint): the download functions would otherwise retry for ~25 s before giving up."""
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, refused, timeout, TLS: all mean "not now"
        return False
    return True


def offline_reason() -> str | None:
    """Why only the local cache can be used now (HF_HUB_OFFLINE, or no answer from the Hub), or
    None when the Hub answers."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable():
        return f"the Hub cannot be reached (no answer from it within {PROBE_TIMEOUT_S:g} s)"
    return None


# ---- where the files are -----------------------------------------------------------------------

def weights_folder(weights: str | os.PathLike, cache_dir: str | None = None, log=print,
                   optional: tuple[str, ...] = ()) -> Path:
    """The folder holding config.json and model.safetensors: `weights` itself, or the snapshot of
    the Hub repo it names (with the `optional` files it has, e.g. the card)."""
    path = Path(weights)
    if path.is_dir():
        missing = [f for f in WEIGHT_FILES if not (path / f).is_file()]
        if missing:
            raise WeightsError(f"{path} is missing {', '.join(missing)}: train with `python train.py --out "
                               f"{path}`")
        return path
    if path.exists() or not is_repo_id(str(weights)):
        raise WeightsError(f"no weights folder at {weights} (and it is not a Hub repo id like OWNER/NAME)")
    return download(str(weights), cache_dir, log, optional)


def download(repo_id: str, cache_dir: str | None, log, optional: tuple[str, ...] = ()) -> Path:
    """The weight files of a Hub repo (and the `optional` ones it has), as a local folder. Offline
    (HF_HUB_OFFLINE, or the Hub unreachable) only the cache is used, and we say so once."""
    offline = offline_reason()
    try:
        files = [Path(hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=bool(offline)))
                 for name in WEIGHT_FILES]
    except Exception as e:
        if offline:
            raise WeightsError(f"{offline} and {repo_id} is not in the local Hugging Face cache: connect and "
                               f"try again, or pass a weights folder") from None
        raise WeightsError(f"could not download {repo_id} from the Hub: {first_line(e)}") from None
    if offline:
        log(f"{offline}: using the cached copy of {repo_id}")
    for name in optional:
        try:
            hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=bool(offline))
        except Exception:  # an optional file: the repo may not have it
            pass
    return files[0].parent


# ---- what they hold ----------------------------------------------------------------------------

def load_config(path: Path, known: set[str]) -> dict:
    """config.json as a dict of the settings in `known`; a WeightsError names what is wrong."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path.name} is not valid JSON ({e})") from None
    except RecursionError:  # arrays nested thousands deep
        raise WeightsError(f"{path.name} is nested too deeply to be a model's settings") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path.name} must hold a JSON object of CharRNN's settings")
    unknown = sorted(set(config) - known)
    if unknown:
        raise WeightsError(f"{path.name} has settings CharRNN does not take: {', '.join(unknown)}")
    return config


def load_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype)} from the safetensors header alone: no tensor is loaded."""
    try:
        with safe_open(str(path), "pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError
        raise WeightsError(f"{path.name} is not a readable safetensors file: {first_line(e)}") from None
    not_float = {k: d for k, (_, d) in header.items() if d not in FLOAT_DTYPES}
    if not_float:
        name, dtype = next(iter(sorted(not_float.items())))
        raise WeightsError(f"{path.name}: tensor {name} is {dtype}, not floating point: these are not "
                           "trained weights")
    return header


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model.safetensors, every value finite."""
    try:
        state = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"{path.name} could not be read: {first_line(e)}") from None
    for name, t in state.items():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise WeightsError(f"{path.name}: tensor {name} has {bad:,} NaN or infinite value(s): "
                               f"the training that wrote it diverged")
    return state


# ---- do they agree -----------------------------------------------------------------------------

def check_shapes(expected: dict[str, tuple], header: dict, said: dict) -> None:
    """The weights' shapes (`header`) must be exactly those the config implies (`expected`);
    `said` is the config's settings with their defaults, to name the fields the shapes contradict."""
    got = {k: shape for k, (shape, _) in header.items()}
    if got == expected:
        return
    fields = disagreeing_fields(said, got)
    tensor = first_difference(expected, got)
    raise WeightsError(f"model.safetensors does not match config.json: "
                       f"{fields + ' (' + tensor + ')' if fields else tensor}")


def first_difference(expected: dict, got: dict) -> str:
    for name in expected:
        if name not in got:
            return f"the weights lack tensor {name}, which config.json implies"
        if got[name] != expected[name]:
            return (f"tensor {name} is {list(got[name])} in the weights, "
                    f"config.json implies {list(expected[name])}")
    name = next(n for n in got if n not in expected)
    return f"the weights have tensor {name} {list(got[name])}, which config.json does not imply"


def disagreeing_fields(said: dict, got: dict) -> str:
    """Which config.json fields the weights' shapes contradict, e.g. 'config.json has
    hidden_size 32, the weights 16'; empty when the shapes do not say."""
    try:
        vocab, embed_dim = got["embed.weight"]
        gates, hidden = got["rnn.weight_hh_l0"]
        layers = sum(1 for n in got if n.startswith("rnn.weight_hh_l"))
    except (KeyError, ValueError):
        return ""
    cell = {4: "lstm", 3: "gru"}.get(gates // hidden if hidden else 0)
    implied = {"vocab": vocab, "embed_dim": embed_dim, "hidden_size": hidden, "num_layers": layers,
               "cell": cell}
    said = {k: said[k] for k in implied}
    said["vocab"] = len(said["vocab"])
    wrong = [k for k in implied if implied[k] is not None and said[k] != implied[k]]
    shown = {"vocab": lambda v: f"{v} characters"}
    return "; ".join(f"config.json has {k} {shown.get(k, repr)(said[k])}, the weights "
                     f"{shown.get(k, repr)(implied[k])}" for k in wrong)
