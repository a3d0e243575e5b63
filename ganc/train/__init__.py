"""Training stages run by Ray Train: teacher (pix2pix / CycleGAN) and once-for-all
supernet distillation. Per-worker loops are plain PyTorch; Ray lives in ``launch`` and
``session.RaySession`` only."""
