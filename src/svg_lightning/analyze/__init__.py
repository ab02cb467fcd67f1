"""Checks of SVG's uncertainty claims on SM-MNIST (spec section 8), as numbers and plots.

``python -m svg_lightning.analyze prior ckpt_path=...``: does the learned prior's sigma spike at
wall collisions (Fig. 6)? ``python -m svg_lightning.analyze trajectories ckpt_path=...``: do the
digit displacements in samples follow the true post-bounce distribution (Fig. 5)?
"""
