"""Best-of-N SSIM/PSNR evaluation (`python -m svg_lightning.evaluate ckpt_path=...`)."""
