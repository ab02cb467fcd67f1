"""``python -m svg_lightning.evaluate ckpt_path=...`` (``svg evaluate``)."""

from svg_lightning.evaluate import evaluate
from svg_lightning.hydra_entry import hydra_command

if __name__ == "__main__":
    hydra_command("eval", evaluate)()
