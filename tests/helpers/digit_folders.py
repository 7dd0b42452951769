"""An image-folder dataset made from the embedded digits: a real folder:PATH dataset (PNG files
in split/class/ directories) whose pictures are real handwriting, for tests that need a second
dataset related to digits (fine-tuning, folder evaluation)."""

from pathlib import Path

import numpy as np
from PIL import Image

import kres.data

SPLITS = {"train": "train", "validation": "val", "test": "test"}


def write_digit_folder(root, classes=range(5)):
    """PATH/{train,val,test}/digit_N/i.png for the digits of ``classes``, from the same splits
    of kres' digits; returns PATH."""
    root = Path(root)
    for split, folder in SPLITS.items():
        x, y = kres.data.arrays("digits", split)
        for c in classes:
            d = root / folder / f"digit_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(x[y == c]):
                pixels = np.clip(np.round(image[..., 0]), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(d / f"{i}.png")
    return root
