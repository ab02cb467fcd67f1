"""``python -m svg_lightning [overrides]`` (``svg train``): train a model."""

from svg_lightning.hydra_entry import hydra_command
from svg_lightning.train import train

if __name__ == "__main__":
    hydra_command("train", train)()
