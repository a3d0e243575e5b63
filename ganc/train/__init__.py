"""Training stages run by Ray Train: teacher (pix2pix / CycleGAN) and once-for-all
supernet distillation. Per-worker loops are plain PyTorch; Ray lives in ``launch`` and
``session.RaySession`` only."""
from .supernet import train_supernet
from .teacher import train_teacher

__all__ = ["train_teacher", "train_supernet"]
