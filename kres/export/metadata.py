"""TFLite model metadata for phone apps: what MediaPipe's ImageClassifier and the LiteRT Task
Library read from a .tflite file to use it without code of their own (labels, how to normalise
pixels, the image's colour space), in the TFLite metadata format (metadata_schema.fbs).

Written with the generated schema classes that ship in the ``mediapipe`` wheel, the way
mediapipe's ``MetadataPopulator`` writes them: the ModelMetadata flatbuffer goes into a buffer of
the model listed under the name ``TFLITE_METADATA``, and associated files (labels.txt) are
appended to the model file as a zip archive. mediapipe's own writer module cannot be used: on
Linux x86-64 it imports a compiled ``mediapipe.tasks.cc`` module that the wheel does not ship.

>>> meta = kres.export.metadata.read("exports/digits-resnet20/resnet20_int8.tflite")
>>> meta["labels"][:3], meta["input"]["normalization"]
(['0', '1', '2'], {'mean': [0.0], 'std': [1.0]})
"""

from __future__ import annotations

import dataclasses
import io
import zipfile

from kres.export.tflite_graph import file_bytes

METADATA_NAME = "TFLITE_METADATA"  # the name TFLite readers look the buffer up by
LABELS_FILE = "labels.txt"
# Every field written here exists since version 1.0.0 of metadata_schema.fbs (its history lists
# later additions: vocabularies, tokenizers, tensor groups, audio, custom metadata).
MIN_PARSER_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class ImageClassifierInfo:
    """What a classifier's metadata says. ``mean``/``std`` are what an app subtracts and divides
    by before feeding float pixels in [0, 255] (mean 0, std 1 when the model normalises inside);
    ``labels`` are the class names in output order."""

    name: str
    description: str
    labels: tuple = ()
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    channels: int = 3
    version: str = ""
    author: str = "kres"
    license: str = ""

    def color_space(self, schema):
        return {3: schema.ColorSpaceType.RGB, 1: schema.ColorSpaceType.GRAYSCALE}.get(
            self.channels, schema.ColorSpaceType.UNKNOWN)


def _schema():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    return schema


def metadata_buffer(info: ImageClassifierInfo) -> bytes:
    """The serialised ModelMetadata flatbuffer (file identifier ``M001``) for ``info``."""
    import flatbuffers

    s = _schema()
    image = _tensor(s, "images", "Input image, pixel values in [0, 255].", "ImageProperties")
    image.content.contentProperties.colorSpace = info.color_space(s)
    normalization = s.ProcessUnitT()
    normalization.optionsType = s.ProcessUnitOptions.NormalizationOptions
    normalization.options = s.NormalizationOptionsT()
    normalization.options.mean = [float(m) for m in info.mean]
    normalization.options.std = [float(v) for v in info.std]
    image.processUnits = [normalization]
    image.stats = s.StatsT()
    image.stats.min, image.stats.max = [0.0], [255.0]
    scores = _tensor(s, "predictions", "Logits, one per class (apply softmax for "
                     "probabilities).", "FeatureProperties")
    if info.labels:
        labels = s.AssociatedFileT()
        labels.name = LABELS_FILE
        labels.description = "Class names, one per line, in output order."
        labels.type = s.AssociatedFileType.TENSOR_AXIS_LABELS
        scores.associatedFiles = [labels]

    graph = s.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [image], [scores]
    model = s.ModelMetadataT()
    model.name, model.description = info.name, info.description
    model.version, model.author, model.license = info.version, info.author, info.license
    model.subgraphMetadata = [graph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


def attach(model_object, info: ImageClassifierInfo):
    """Add the metadata buffer to a TFLite model object (``flatbuffer_utils``' object API), in
    place. The labels file is appended after serialisation by :func:`append_files`."""
    from tensorflow.lite.python import schema_py_generated as tflite_schema

    buffer = tflite_schema.BufferT()
    buffer.data = list(metadata_buffer(info))
    model_object.buffers.append(buffer)
    entry = tflite_schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model_object.buffers) - 1
    model_object.metadata = [m for m in (model_object.metadata or [])
                             if m.name not in (METADATA_NAME, METADATA_NAME.encode())] + [entry]


def _tensor(s, name, description, properties):
    """A TensorMetadataT whose content has ``properties`` (a ContentProperties member name)."""
    tensor = s.TensorMetadataT()
    tensor.name, tensor.description = name, description
    tensor.content = s.ContentT()
    tensor.content.contentPropertiesType = getattr(s.ContentProperties, properties)
    tensor.content.contentProperties = getattr(s, f"{properties}T")()
    return tensor


def append_files(flatbuffer: bytes, info: ImageClassifierInfo) -> bytes:
    """The model bytes with its associated files appended as a zip archive (TFLite readers find
    them by the zip's central directory at the end of the file)."""
    if not info.labels:
        return flatbuffer
    out = io.BytesIO()
    out.write(flatbuffer)
    # A fixed date in the zip entry (zip's earliest, 1980-01-01), not the clock's: the same model
    # exports to the same bytes, so a file's SHA-256 says which model it is.
    entry = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(entry, "\n".join(info.labels) + "\n")
    return out.getvalue()


def read(path_or_bytes) -> dict | None:
    """The image-classifier metadata of a .tflite file as a dict (None when it has none):
    ``name``, ``description``, ``min_parser_version``, ``labels``, and ``input`` with
    ``color_space``, ``normalization`` and ``range``. Parsed with the same generated schema."""
    from tensorflow.lite.python import schema_py_generated as tflite_schema

    data = file_bytes(path_or_bytes)

    s = _schema()
    model = tflite_schema.Model.GetRootAsModel(data, 0)
    buffer_index = None
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name().decode() == METADATA_NAME:
            buffer_index = model.Metadata(i).Buffer()
    if buffer_index is None:
        return None
    raw = model.Buffers(buffer_index).DataAsNumpy().tobytes()
    meta = s.ModelMetadataT.InitFromObj(s.ModelMetadata.GetRootAsModelMetadata(raw, 0))
    graph = meta.subgraphMetadata[0]
    image = graph.inputTensorMetadata[0]
    spaces = {v: k for k, v in vars(s.ColorSpaceType).items() if not k.startswith("_")}
    norm = next(u.options for u in image.processUnits or []
                if u.optionsType == s.ProcessUnitOptions.NormalizationOptions)
    files = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {n: archive.read(n).decode() for n in archive.namelist()}
    label_files = [f.name.decode() for t in graph.outputTensorMetadata
                   for f in t.associatedFiles or []
                   if f.type == s.AssociatedFileType.TENSOR_AXIS_LABELS]
    labels = files.get(label_files[0], "").splitlines() if label_files else []
    return {
        "name": meta.name.decode(), "description": meta.description.decode(),
        "min_parser_version": meta.minParserVersion.decode(),
        "labels": labels,
        "input": {"color_space": spaces[image.content.contentProperties.colorSpace],
                  "normalization": {"mean": [float(v) for v in norm.mean],
                                    "std": [float(v) for v in norm.std]},
                  "range": [float(image.stats.min[0]), float(image.stats.max[0])]},
    }
