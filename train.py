"""Train charrnn and write Hugging Face-format weights: `python train.py --help` lists every flag.

    python train.py                          # long recipe, ~27 min on a 2-core CPU -> weights/
    torchrun --standalone --nproc_per_node 2 train.py --out runs/ddp   # several processes or GPUs

The command lives in the package (charrnn/train_cli.py), so an installed `charrnn train` is the
same program; this file keeps `python train.py` and torchrun's `train.py` working from a checkout.
"""
import sys

from charrnn.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
