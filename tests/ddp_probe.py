"""train.py's main as torchrun runs it, except that each rank also saves the parameters its loop
ended with (before rank 0 goes back to its best weights) to OUT/rank{R}-params.pt: what
test_distributed compares across ranks. With PROBE_STOP=RANK:STEP, that rank acts as if Ctrl-C
had been pressed at that step (the stop must reach every rank)."""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train
from charrnn import training

real_loop = training.train_loop


def train_loop(cfg, vocab, model, *args, **kwargs):
    reason = real_loop(cfg, vocab, model, *args, **kwargs)
    torch.save(model.state_dict(), Path(cfg.out) / f"rank{os.environ['RANK']}-params.pt")
    return reason


class StopRequest(training.StopRequest):
    @property
    def requested(self):
        rank, step = os.environ.get("PROBE_STOP", "-1:0").split(":")
        return os.environ["RANK"] == rank and steps_taken >= int(step)

    @requested.setter
    def requested(self, value):
        pass


steps_taken = 0
real_advance = training.advance


def advance(*args, **kwargs):
    global steps_taken
    steps_taken += 1
    return real_advance(*args, **kwargs)


# train() looks them up in its module at call time
training.train_loop, training.StopRequest, training.advance = train_loop, StopRequest, advance
sys.exit(train.main())
