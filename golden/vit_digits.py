"""A small ViT on scikit-learn's digits (8×8 images, 10 classes): the model the conversion
experiments and the attention-datapath check use.

Data: the 1,797 digits that ship with scikit-learn, pixels scaled to [0, 1], split 70/30
stratified with a fixed seed (1,257 train, 540 test). Model: 2×2 patches (16 tokens), embedding
64, 2 pre-norm ``nn.TransformerEncoderLayer`` blocks with 4 heads (head dim 16) and GELU MLP 128,
mean pooling, a linear classifier. Training is deterministic for a seed (single-threaded).
"""

from __future__ import annotations

import fcntl
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["ViTConfig", "DigitsViT", "digits_split", "train_vit", "load_or_train", "accuracy",
           "DEFAULT_CHECKPOINT"]

DEFAULT_CHECKPOINT = Path(".cache") / "vit_digits.pt"


@dataclass(frozen=True)
class ViTConfig:
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp: int = 128
    patch: int = 2
    epochs: int = 150
    batch: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.01
    seed: int = 0

    @property
    def tokens(self) -> int:
        return (8 // self.patch) ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


class PositionEmbedding(nn.Module):
    """Adds a learnt embedding per token (integer form: the embedding quantised)."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)

    def forward(self, x):
        return x + self.weight

    def forward_integer(self, x, frac: int):
        return x + torch.floor(self.weight.detach().double() * 2.0 ** frac + 0.5).to(torch.int64)


class TokenMean(nn.Module):
    """Mean over the tokens (integer form: rounded half up)."""

    def forward(self, x):
        return x.mean(dim=1)

    def forward_integer(self, x, frac: int):
        n = x.shape[1]
        return torch.div(2 * x.sum(dim=1) + n, 2 * n, rounding_mode="floor")


class DigitsViT(nn.Module):
    def __init__(self, config: ViTConfig = ViTConfig()):
        super().__init__()
        c = self.config = config
        self.patch_embed = nn.Linear(c.patch * c.patch, c.dim)
        self.pos_embed = PositionEmbedding(c.tokens, c.dim)
        self.blocks = nn.Sequential(*(
            nn.TransformerEncoderLayer(c.dim, c.heads, c.mlp, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(c.depth)))
        self.norm = nn.LayerNorm(c.dim)
        self.pool = TokenMean()
        self.head = nn.Linear(c.dim, 10)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 64) or (B, 8, 8) → (B, tokens, patch²), row-major patches."""
        p = self.config.patch
        x = images.reshape(images.shape[0], 8 // p, p, 8 // p, p)
        return x.permute(0, 1, 3, 2, 4).reshape(images.shape[0], -1, p * p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pos_embed(self.patch_embed(self.patches(images)))
        return self.head(self.pool(self.norm(self.blocks(x))))


def digits_split(seed: int = 0):
    """(x_train, y_train, x_test, y_test): float32 images (N, 64) in [0, 1], int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=0.3, random_state=seed, stratify=y.numpy())
    tr, te = torch.tensor(tr), torch.tensor(te)
    return x[tr], y[tr], x[te], y[te]


@torch.no_grad()
def accuracy(model, x, y, batch: int = 512) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
                  for i in range(0, len(y), batch))
    return 100.0 * correct / len(y)


def train_vit(config: ViTConfig = ViTConfig(), progress: bool = True) -> tuple[DigitsViT, dict]:
    """Train the ViT deterministically (AdamW, cosine schedule, random pixel shifts of ±1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        x_tr, y_tr, x_te, y_te = digits_split()
        model = DigitsViT(config)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
        steps = config.epochs * ((len(y_tr) + config.batch - 1) // config.batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps)
        start = time.monotonic()
        bar = _progress(config.epochs, "training ViT", progress)
        for _ in range(config.epochs):
            model.train()
            order = torch.randperm(len(y_tr), generator=gen)
            for i in range(0, len(order), config.batch):
                idx = order[i:i + config.batch]
                xb = _shift(x_tr[idx], gen)
                loss = nn.functional.cross_entropy(model(xb), y_tr[idx], label_smoothing=0.05)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            bar.update(1)
        bar.close()
        info = {"config": asdict(config), "train_seconds": round(time.monotonic() - start, 1),
                "test_accuracy": accuracy(model, x_te, y_te),
                "train_accuracy": accuracy(model, x_tr, y_tr)}
        return model.eval(), info
    finally:
        torch.set_num_threads(threads)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel (zero fill): cheap augmentation."""
    img = x.reshape(-1, 8, 8)
    padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[:, dy:dy + 8, dx:dx + 8].reshape(-1, 64)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def _load(path: Path, config: ViTConfig) -> tuple[DigitsViT, dict]:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch.load raises many kinds on a foreign file
        raise ValueError(f"checkpoint {path} is not a digits-ViT checkpoint "
                         f"({type(error).__name__}: {error}); give another path") from None
    if not isinstance(saved, dict) or saved.get("config") != asdict(config):
        raise ValueError(f"checkpoint {path} does not hold a digits ViT of this configuration; "
                         f"delete it to train one there, or give another path")
    model = DigitsViT(config)
    model.load_state_dict(saved["state"])
    return model.eval(), saved["info"]


def load_or_train(path: Path | str = DEFAULT_CHECKPOINT, config: ViTConfig = ViTConfig(),
                  progress: bool = True) -> tuple[DigitsViT, dict]:
    """Load the checkpoint at ``path``; when there is none, train a model of ``config`` and
    save it there. A file at ``path`` that is not a checkpoint of ``config`` raises ValueError
    and is left alone."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; give a file")
    if path.exists():  # no lock needed: a checkpoint appears whole (written, then renamed)
        return _load(path, config)
    lock_path = path.with_name(path.name + ".lock")  # opened to append: never truncated
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a")
    except OSError as error:
        raise ValueError(f"checkpoint {path}: cannot use {lock_path} beside it "
                         f"({error.strerror})") from None
    # One trainer at a time (parallel test workers share the default checkpoint).
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process trained it while this one waited
            return _load(path, config)
        model, info = train_vit(config, progress)
        buf = io.BytesIO()
        torch.save({"config": asdict(config), "state": model.state_dict(), "info": info}, buf)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
        return model, info
