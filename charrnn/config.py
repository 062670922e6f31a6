"""Training settings: the TrainConfig dataclass, the two recipes (named presets) and the rule
that picks one for a time budget."""
from dataclasses import dataclass

from .corpus_profile import LANGUAGE_CODE
from .device import resolve_device
from .model import MAX_LAYERS, MAX_WIDTH
from .precision import PRECISIONS

# Two presets. Which one learns more depends on the budget (measured in bench/RESULTS.md, "How the
# default recipes were chosen"): short, one wide GRU layer over 64 rows of 64-char chunks, learns
# the most per CPU second; long, a 2-layer LSTM with dropout over 16 rows, learns slower but
# keeps improving after the short one has flattened.
RECIPES = {
    "short": dict(cell="gru", num_layers=1, dropout=0.2, batch_size=64, seq_len=64, lr=2e-3, epochs=60.0),
    "long": dict(cell="lstm", num_layers=2, dropout=0.25, batch_size=16, seq_len=128, lr=3e-3, epochs=14.0,
                 # 1.2665 against 1.2702 at 5 epochs (bench/RESULTS.md); the rest did not help
                 locked_dropout=True),
}
# On a GPU capacity is cheap and this 0.8M-char corpus is what limits: a bigger LSTM, held back by
# the regularizers. Written from the runs in issue 12 (3x1024 overfit within a minute without them);
# not yet measured on a GPU with these settings. No embedding dropout: dropping whole characters cost
# 0.067 nats/char on the CPU (bench/RESULTS.md), as AWD-LSTM's own character-level settings avoid it.
RECIPES["gpu"] = dict(cell="lstm", num_layers=3, dropout=0.4, batch_size=64, seq_len=256, lr=2e-3,
                      epochs=200.0, hidden_size=1024, embed_dim=256, locked_dropout=True, embed_dropout=0.0,
                      weight_drop=0.3, ema_decay=0.999, max_minutes=10.0)
REGULARIZERS_OFF = dict(locked_dropout=False, embed_dropout=0.0, weight_drop=0.0, ema_decay=0.0)
for _recipe in RECIPES.values():
    _recipe.update({**REGULARIZERS_OFF, **_recipe})
SHORT_MAX_MINUTES = 10.0  # the largest budget at which the short recipe was measured ahead
_LONG = RECIPES["long"]
# the settings --resume may change
RESUMABLE = ("max_minutes", "epochs", "eval_every", "patience", "precision")
# When a run keeps a half-precision snapshot of its weights (charrnn/snapshots.py), for the app's
# "Watch it learn" tab: words appear after ~100 steps, names and dialogue later.
SNAPSHOTS = "100,500,epoch1,half,best"


def recipe_for_budget(max_minutes: float, device: str = "cpu") -> str:
    """The default recipe: gpu on CUDA; on the CPU short up to SHORT_MAX_MINUTES, long above.
    device "auto" means CUDA when there is one."""
    device = device.strip().lower()
    if device == "auto":

        try:
            device = resolve_device("auto").type
        except ValueError:  # a bad $CHARRNN_DEVICE: reported where the run resolves its device
            device = "cpu"
    if device.startswith("cuda"):
        return "gpu"
    return "short" if max_minutes <= SHORT_MAX_MINUTES else "long"


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the long recipe with its 27 minutes: what
    `python train.py` runs. `TrainConfig.from_recipe` starts from a named recipe instead."""
    # a file or a folder of .txt files; None: the default corpus (cache, ../shared/data, download)
    data: str | None = None
    dataset: str | None = None  # or a Hugging Face dataset: a folder saved with save_to_disk, or a Hub id
    dataset_config: str | None = None
    text_column: str = "text"
    strip_accents: bool = False  # True reproduces the tutorials' accent-free text
    # how pages (the card, the app, the Space) name the corpus; None: from the file, folder or dataset
    title: str | None = None
    description: str | None = None
    language: str | None = None  # an ISO 639 code; None: detected from the text ("unknown" when unsure)
    recipe: str = "long"  # the preset the settings below started from (a record: they win)
    # model
    cell: str = _LONG["cell"]
    embed_dim: int = 128
    hidden_size: int = 512
    num_layers: int = _LONG["num_layers"]
    dropout: float = _LONG["dropout"]  # on the embedding's and the RNN's outputs, and between layers
    # one dropout mask per sequence (AWD-LSTM's variational dropout)
    locked_dropout: bool = _LONG["locked_dropout"]
    embed_dropout: float = _LONG["embed_dropout"]  # of the embedding table's rows: whole chars, per batch
    weight_drop: float = _LONG["weight_drop"]  # DropConnect on the hidden-to-hidden weights
    # optimization
    batch_size: int = _LONG["batch_size"]  # rows: contiguous parts of the text, side by side
    seq_len: int = _LONG["seq_len"]  # chars per chunk; gradients are truncated at chunk boundaries
    lr: float = _LONG["lr"]
    weight_decay: float = 0.01
    warmup_frac: float = 0.03  # of the run, warming up linearly
    min_lr_frac: float = 0.05  # of lr, where the cosine ends
    grad_clip: float = 1.0
    # also score an exponential moving average of the weights, kept when it reads better; 0: off
    ema_decay: float = _LONG["ema_decay"]
    # budget: the run ends at whichever comes first; the lr schedule follows the same clock
    epochs: float = _LONG["epochs"]
    max_minutes: float = 27.0
    # evaluation
    val_frac: float = 0.2
    eval_every: int = 600  # steps
    eval_rows: int = 16  # see validation.nats_per_char; the final score uses 1
    # evaluations read at most this many validation chars (the default corpus has 204k)
    max_eval_chars: int = 1_000_000
    patience: int = 5  # evaluations without improvement before an early stop
    training_seed: int = 1337  # the run's random numbers: initial weights, dropout, chunk offsets
    snapshots: str = SNAPSHOTS  # moments to keep a snapshot of the weights (snapshot_moments), or "none"
    device: str = "auto"
    precision: str = "auto"  # fp32, bf16 (autocast), or auto: bf16 where the hardware does it
    out: str = "weights"

    @classmethod
    def from_recipe(cls, recipe: str | None = None, **settings) -> "TrainConfig":
        """The named recipe (None: the one for settings' max_minutes and device, cpu if not
        given), with `settings` on top."""
        recipe = recipe or recipe_for_budget(settings.get("max_minutes", cls.max_minutes),
                                              settings.get("device", "cpu"))
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
        return cls(**{**RECIPES[recipe], **settings, "recipe": recipe})

    def validate(self) -> "TrainConfig":
        """This config, or a ValueError that names the bad setting."""
        if not str(self.out).strip():
            raise ValueError("--out is empty: name the folder for the weights, e.g. --out weights")
        if not isinstance(self.max_minutes, (int, float)) or not self.max_minutes > 0:
            raise ValueError(f"max-minutes must be positive, not {self.max_minutes!r}")
        positive = ["embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "eval_every",
                    "eval_rows", "max_eval_chars", "patience"]
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive whole number, not {v!r}")
        if self.hidden_size > MAX_WIDTH or self.embed_dim > MAX_WIDTH or self.num_layers > MAX_LAYERS:
            raise ValueError(f"sizes this large will not train here: hidden/embed at most {MAX_WIDTH}, "
                             f"at most {MAX_LAYERS} layers")
        if self.language is not None and not LANGUAGE_CODE.match(self.language):
            raise ValueError(f"language must be an ISO 639 code such as en, es or zh (or 'unknown'), "
                             f"not {self.language!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be gru or lstm, not {self.cell!r}")
        for name in ("dropout", "embed_dropout", "weight_drop", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be in [0, 1), not {getattr(self, name)}")
        if not (self.lr > 0 and self.epochs > 0 and self.grad_clip > 0):
            raise ValueError("lr, epochs and grad-clip must be positive")
        if not (0 <= self.warmup_frac < 1 and 0 <= self.min_lr_frac <= 1 and 0 < self.val_frac < 1):
            raise ValueError("warmup-frac must be in [0, 1), min-lr-frac in [0, 1], val-frac in (0, 1)")
        snapshot_moments(self.snapshots)
        return self


def snapshot_moments(spec) -> tuple[str, ...]:
    """--snapshots as its moments, each one of: N (after N optimizer steps), epochN (after N
    epochs), P% (when P% of the run is done; half = 50%), best (the weights the run keeps);
    "none" for no snapshots. ValueError names a moment that is none of these."""
    if not isinstance(spec, str):
        raise ValueError(f"snapshots must be a comma-separated list of moments, not {spec!r}")
    words = [w.strip().lower() for w in spec.split(",") if w.strip()]
    if words in ([], ["none"]):
        return ()
    for w in words:
        number = w.removeprefix("epoch").removesuffix("%")
        counted = number.isdigit() and int(number) > 0 and (w[-1] != "%" or int(number) <= 100)
        if not (w in ("half", "best") or counted) or (w.startswith("epoch") and w.endswith("%")):
            raise ValueError(f"snapshots: {w!r} is not a moment; give steps (500), epochs (epoch1), a share "
                             f"of the run (25%, half) or best, comma-separated, or none")
    return tuple(dict.fromkeys(words))
