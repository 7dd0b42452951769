"""Table 5, pictures: images/s of ``kres.predict`` over a folder of JPEG files through the int8
TFLite file, the fp32 ONNX file and the .keras model of one model, each against its runtime
alone on the same pictures already decoded and prepared: what finding, decoding, resizing and
ranking cost on top of the model. Runs on the TensorFlow backend (the converters need it)."""

from __future__ import annotations

import os
import statistics
import tempfile

import numpy as np

from kres.bench.common import alternate, cores_busy, rate
from kres.machine import cpu_info


def write_jpegs(folder, count, size, seed=0) -> list:
    """``count`` JPEG files (quality 90) of ``size`` (width, height): random crops of the two
    photographs scikit-learn ships (china.jpg and flower.jpg, 640x427), resized. Their paths."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(image) for image in load_sample_images().images]
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        scale = rng.uniform(0.5, 1.0) * min(width / size[0], height / size[1])
        crop_w, crop_h = int(size[0] * scale), int(size[1] * scale)
        left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
        picture = photo.crop((left, top, left + crop_w, top + crop_h)).resize(size)
        paths.append(os.path.join(folder, f"{i:05d}.jpg"))
        picture.save(paths[-1], quality=90)
    return paths


def measure(rows, batch, rounds, threads=None) -> list:
    """One row per (model, file) for each of ``rows``: (model name, input side, (JPEG width,
    height), number of JPEG files). A random-weight model's int8 TFLite file (calibrated on the
    pictures), fp32 ONNX file and .keras file; each round runs, alternating, ``kres.predict``
    over the folder and the runtime alone over the pixels ``kres.predict`` prepares, for each
    file, and the decoding and preparing alone."""
    import kres
    import kres.export
    import kres.predict
    from kres.predict import images as pictures

    threads = threads or os.cpu_count() or 1
    table = []
    for name, size, jpeg, images in rows:
        with tempfile.TemporaryDirectory(prefix="kres-bench-predict-") as tmp:
            files = write_jpegs(os.path.join(tmp, "jpegs"), images, tuple(jpeg))
            model = kres.build(name, input_shape=(size, size, 3), include_preprocessing=True)
            recipe = kres.predict.open_source(model).recipe
            pixels, _, _ = kres.predict.prepare(files, recipe, threads=threads)
            paths = {"tflite int8": os.path.join(tmp, f"{name}_int8.tflite"),
                     "onnx fp32": os.path.join(tmp, f"{name}_fp32.onnx"),
                     "keras": os.path.join(tmp, f"{name}.keras")}
            kres.export.to_tflite(model, paths["tflite int8"], "int8",
                                  calibration=pixels[:32])
            kres.export.to_onnx(model, paths["onnx fp32"])
            model.save(paths["keras"])
            opened = {k: kres.predict.open_source(p, threads=threads) for k, p in paths.items()}
            folder = os.path.dirname(files[0])
            items, _ = pictures.find(folder)

            def predict(source):
                return lambda: kres.predict(source, folder, batch_size=batch, threads=threads)

            def runtime(source):
                return lambda: [source.runner.predict(pixels[i:i + batch], batch_size=batch)
                                for i in range(0, len(pixels), batch)]

            def decode():
                for _ in pictures.batches(items, [recipe], batch, threads):
                    pass

            candidates = {"decode": (decode, 1)}
            for key, source in opened.items():
                candidates[(key, "predict")] = (predict(source), 1)
                candidates[(key, "runtime")] = (runtime(source), 1)
            for work, _ in candidates.values():  # warm: graphs traced, tensors allocated
                work()
            seconds, cpu = alternate(candidates, rounds)
            decode_rate = rate(images, 1, seconds["decode"])
            for key, source in opened.items():
                end_to_end = rate(images, 1, seconds[(key, "predict")])
                alone = rate(images, 1, seconds[(key, "runtime")])
                table.append({
                    "model": name, "input_size": size, "file": key, "images": images,
                    "jpeg_size": list(jpeg), "batch": batch, "threads": threads,
                    "recipe": recipe.describe(), "runtime": source.runner.runtime,
                    "images_per_second": end_to_end, "runtime_images_per_second": alone,
                    "vs_runtime": end_to_end / alone,
                    "decode_images_per_second": decode_rate,
                    "cores_busy": cores_busy(seconds[(key, "predict")], cpu[(key, "predict")]),
                    "runs": rounds, "seconds_median": statistics.median(
                        seconds[(key, "predict")]),
                    "cpu_flags": cpu_info()["flags"]})
    return table
