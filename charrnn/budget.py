"""The time budget of a training run (--max-minutes): it covers the whole run, evaluations and the
final exact score of the validation text included.

The run's clock (RunState.elapsed_s, which the lr schedule follows) counts training steps,
evaluations and checkpoints from the first step; the time spent off that clock (setting up before
it: the corpus, the model, these estimates; the snapshots --snapshots keeps) is taken off the
budget too. Training stops early enough to leave room for what must follow it: one evaluation (with
its checkpoint) and the final exact read of the validation text, which on a CPU reads one char
after another and can take minutes. Both are estimated before
the first step by timing them on a slice of the text; each evaluation then replaces the estimate
of the next one with what it really took.
"""
import time
from dataclasses import dataclass

import torch

from . import threads
from .validation import nats_per_char

PROBE_CHARS = 2048  # of the validation text, per probe: ~0.1-0.5 s each for the long recipe on a CPU
SAFETY = 1.15  # the estimates are of a machine whose load may change: keep a little more


@dataclass
class Budget:
    """Seconds: the whole run's, and the estimated cost of what follows the last training step."""
    total_s: float
    final_s: float = 0.0  # the final exact score (rows=1) of the evaluated validation chars
    eval_s: float = 0.0  # one evaluation with its checkpoint (the last one measured, or estimated)
    off_clock_s: float = 0.0  # spent off the run's clock: setting up before the first step, snapshots

    @property
    def training_end_s(self) -> float:
        """When training steps stop, on the run's clock, leaving room for the last evaluation and the
        final score (at least a tenth of the budget is trained). The lr schedule ends there."""
        return max(0.1 * self.total_s, self.total_s - self.off_clock_s - self.final_s - self.eval_s)

    def progress(self, elapsed_s: float, step: int, total_steps: int) -> float:
        """How far along training is, 0 to 1: by steps or by time, whichever is further."""
        return max(step / total_steps, elapsed_s / self.training_end_s)

    def last_eval_now(self, elapsed_s: float) -> bool:
        """Whether an evaluation starting now ends past the training's end: then it is the last one
        (training on after it would need one more evaluation the budget has no room for)."""
        return elapsed_s + self.eval_s >= self.training_end_s

    def measured_eval(self, seconds: float) -> None:
        """An evaluation took `seconds`: expect the next one to take as long."""
        self.eval_s = SAFETY * seconds

    def describe(self) -> str:
        """What the run will take, said at its start (once the setting up is done)."""
        after, setup = self.final_s + self.eval_s, self.off_clock_s
        if self.training_end_s > self.total_s - setup - after:  # the floor: a tenth of the budget trains
            return (f"the {self.total_s / 60:g}-minute budget is too small for this run: setting up took "
                    f"{setup:.0f} s, the last evaluation and the final exact score need ~{after:.0f} s; "
                    f"it will take ~{(setup + self.training_end_s + after) / 60:.1f} min")
        return (f"the {self.total_s / 60:g}-minute budget covers the whole run: training stops ~{after:.0f} s"
                f" before its end, for the last evaluation (~{self.eval_s:.0f} s) and the final exact score "
                f"(~{self.final_s:.0f} s)")


def seconds_of(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def estimate(model: torch.nn.Module, val_ids: torch.Tensor, total_s: float, eval_rows: int,
             models_scored: int = 1) -> Budget:
    """A Budget with the final exact read and one evaluation (of `models_scored` models: 2 with a
    weight average) of val_ids (1-D) timed on a slice of it and scaled to its length."""
    n = min(len(val_ids), PROBE_CHARS)
    probe = val_ids[:n]
    with threads.using("read", model.rnn.num_layers):  # as the final score will read (training.finish)
        nats_per_char(model, probe[:64])  # the first call pays for lazy allocations
        final = seconds_of(lambda: nats_per_char(model, probe)) * len(val_ids) / n
    rows_probe = val_ids[: n * eval_rows]
    one_eval = seconds_of(lambda: nats_per_char(model, rows_probe, rows=eval_rows))
    one_eval *= len(val_ids) / len(rows_probe) * models_scored
    return Budget(total_s, final_s=SAFETY * final, eval_s=SAFETY * one_eval)
