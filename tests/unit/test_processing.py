"""Processing declared at import (shipyard/processing/): the image recipe's text, its graph against
numpy, pictures decoded by Pillow, post-processing recipes, and what the friendly API makes of them."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from PIL import Image

from shipyard.errors import InvalidInput
from shipyard.processing import graph, pixels, post, reference, samples
from shipyard.processing.recipe import IMAGENET, ImageRecipe, build
from shipyard.protocol.predict import decode_predict, predictions
from shipyard.protocol.uploads import file_parts
from shipyard.scoring import sigmoid
from shipyard.signature import Scores, Signature, TensorSpec
from tests.conftest import DIGITS_SIGNATURE
from tests.models import picture_cnn

NCHW = (-1, 3, 32, 32)


def test_a_recipe_takes_its_sizes_layout_and_channels_from_the_model() -> None:
    recipe = build("image: resize=256, center_crop=32, normalize=imagenet", NCHW)
    assert (recipe.width, recipe.height, recipe.resize, recipe.center_crop) == (32, 32, 256, (32, 32))
    assert (recipe.layout, recipe.channels, (recipe.mean, recipe.std)) == ("NCHW", "RGB", IMAGENET)
    assert recipe.scale == pytest.approx(1 / 255)
    grey = build("image: scale=1, mean=0.5, std=0.25", (-1, 28, 28, 1))
    assert (grey.layout, grey.channels, grey.resize, grey.scale) == ("NHWC", "L", (28, 28), 1.0)
    flat = build("image: resize=8x8, channels=L, scale=16/255, invert=true", (-1, 64))
    assert (flat.layout, flat.depth, flat.invert) == ("FLAT", 1, True)
    assert ImageRecipe.from_dict(recipe.to_dict()) == recipe
    assert build(recipe.describe(), NCHW) == recipe  # what `model show` prints reads back the same


@pytest.mark.parametrize(
    ("text", "shape", "says"),
    [
        ("resize=256", NCHW, "expected 'image:"),
        ("image: resize=abc", NCHW, "bad resize"),
        ("image: zoom=2", NCHW, "unknown --preprocess option 'zoom'"),
        ("image: center_crop=224", NCHW, "the model takes 32x32"),
        ("image: channels=L", NCHW, "the model takes 3"),
        ("image: scale=0", NCHW, "above 0"),
        ("image: mean=0.5 0.5", NCHW, "give 1 or 3"),
        ("image: std=0", NCHW, "std cannot be 0"),
        ("image: layout=CHW", NCHW, "bad layout"),
        ("image: normalize=coco", NCHW, "bad normalize"),
        ("image: resize=8x8, channels=L", (-1, 65), "65"),
        ("image: normalize=imagenet", (-1, 3, -1, -1), "any size"),
        ("image: center_crop", NCHW, "key=value"),
    ],
)
def test_bad_recipes_say_what_is_wrong(text: str, shape: tuple[int, ...], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        build(text, shape)


@pytest.mark.parametrize(
    "text",
    [
        "image: resize=40, center_crop=32, normalize=imagenet",
        "image: resize=32x32, channels=BGR, invert=true, mean=0.1 0.2 0.3, std=0.5",
        "image: center_crop=32, scale=1",
    ],
)
def test_the_graph_computes_what_numpy_computes(text: str) -> None:
    model = onnx.load_model_from_string(picture_cnn())
    composed, recipe = graph.attach(model, text)
    decoded = np.stack([pixels(p, recipe, i) for i, p in enumerate(samples.pictures())])
    assert decoded.shape == (6, 32, 32, 3) and decoded.dtype == np.uint8
    want = ort.InferenceSession(picture_cnn()).run(
        None, {"pixels": reference(decoded, recipe, model.graph.input[0])}
    )
    got = ort.InferenceSession(composed.SerializeToString()).run(None, {"image": decoded})
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)


def test_an_nhwc_model_and_a_model_whose_input_is_called_image() -> None:
    model = onnx.load_model_from_string(picture_cnn(layout="NHWC"))
    model.graph.input[0].name = "image"
    for node in model.graph.node:
        node.input[:] = ["image" if i == "pixels" else i for i in node.input]
    composed, recipe = graph.attach(model, "image: normalize=imagenet")
    assert recipe.layout == "NHWC" and [i.name for i in composed.graph.input] == ["image"]
    decoded = np.stack([pixels(p, recipe) for p in samples.pictures()[:2]])
    want = ort.InferenceSession(model.SerializeToString()).run(
        None, {"image": reference(decoded, recipe, model.graph.input[0])}
    )
    got = ort.InferenceSession(composed.SerializeToString()).run(None, {"image": decoded})
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)


def test_pixels_resize_the_shorter_side_then_crop_the_centre() -> None:
    recipe = build("image: resize=16, center_crop=16, scale=1", (-1, 16, 16, 3))
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 16, 32))  # a blue band on the left quarter: cropped away
    out = io.BytesIO()
    wide.save(out, format="PNG")
    found = pixels(out.getvalue(), recipe)
    assert found.shape == (16, 16, 3)
    assert (found[:, 2:-2] == [255, 0, 0]).all()


def test_rgba_and_grey_pictures_are_converted_and_base64_is_read() -> None:
    recipe = build("image: resize=8x8", (-1, 3, 8, 8))
    rgba, grey = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(rgba, format="PNG")
    Image.new("L", (8, 8), 77).save(grey, format="PNG")
    assert (pixels(rgba.getvalue(), recipe) == [10, 20, 30]).all()
    assert (pixels(grey.getvalue(), recipe) == 77).all()
    encoded = base64.b64encode(grey.getvalue()).decode()
    assert (pixels(encoded, recipe) == 77).all()
    assert (pixels("data:image/png;base64," + encoded, recipe) == 77).all()


def test_a_picture_too_large_to_decode_is_refused_before_decoding() -> None:
    recipe = build("image: resize=8x8", (-1, 3, 8, 8))
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    data[16:24] = (8500).to_bytes(4, "big") * 2  # a header claiming 8500x8500: 72 megapixels
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(InvalidInput, match="8500x8500 pixels; at most 50 megapixels"):
        pixels(bytes(data), recipe)
    thin = io.BytesIO()
    Image.new("L", (1, 64000)).save(thin, format="PNG")  # 64 kilopixels, 16 gigapixels once resized
    shorter_side = build("image: resize=256, center_crop=224", (-1, 3, 224, 224))
    with pytest.raises(InvalidInput, match="1x64000 pixels, 256x16384000 once resized; at most 50"):
        pixels(thin.getvalue(), shorter_side)


def test_sixteen_bit_grey_is_scaled_and_odd_files_are_pictures_or_a_400() -> None:
    recipe = build("image: resize=4x4, channels=L, scale=1", (-1, 1, 4, 4))
    deep = io.BytesIO()
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(deep, format="PNG")
    assert (pixels(deep.getvalue(), recipe) == 40000 >> 8).all()  # not clipped to 255
    dark = io.BytesIO()
    Image.new("L", (8, 8), 0).save(dark, format="TIFF")  # all its bytes below 128: still a picture
    assert (pixels(dark.getvalue(), recipe) == 0).all()
    for bad in (b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 40, b"BM" + b"\x00" * 60, b"hello, world"):
        with pytest.raises(InvalidInput, match="item 0 is"):
            pixels(bad, recipe)


LOGITS = Signature(
    (TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1, 3)), TensorSpec("z", "FP32", (-1, 1)))
)


def test_postprocess_recipes() -> None:
    softmax = post.apply(LOGITS, "softmax, top_k=2")
    assert softmax.scores == Scores("y", "logits", None, 2)
    assert post.describe(softmax) == "softmax, output=y, top_k=2"
    tags = post.apply(LOGITS, "sigmoid, threshold=0.3")
    assert tags.scores == Scores("y", "sigmoid", 0.3)
    assert post.apply(LOGITS, "multilabel").scores == Scores("y", "probabilities", 0.5)
    price = post.apply(LOGITS, "regression, unit=EUR")
    assert (price.scores, price.unit, post.describe(price)) == (None, "EUR", "regression, unit=EUR")
    with pytest.raises(InvalidInput, match="first output, 'y'; output=z cannot be answered"):
        post.apply(LOGITS, "regression, unit=EUR, output=z")
    assert Signature.from_dict(tags.to_dict()) == tags and Signature.from_dict(price.to_dict()) == price


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("argmax", "starts with one of"),
        ("softmax, output=nope", "unknown output 'nope'"),
        ("softmax, threshold=0.5", "multi-label"),
        ("sigmoid, threshold=2", "between 0 and 1"),
        ("softmax, top_k=x", "bad top_k"),
        ("regression, top_k=2", "unit= and output="),
        ("softmax, unit=EUR", "regression outputs"),
        ("softmax, output=z", "one value a row"),
        ("softmax, colour=red", "unknown --postprocess option"),
    ],
)
def test_bad_postprocess_recipes(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        post.apply(LOGITS, text)


def test_multilabel_answers_every_class_past_the_threshold() -> None:
    logits = np.array([[2.0, -1.0, 0.5]], dtype=np.float32)
    (item,) = predictions(logits, kind="sigmoid", labels=["red", "green", "blue"], threshold=0.6)
    p = sigmoid(logits.astype(np.float64))[0]
    assert item["class"] == "red" and item["confidence"] == pytest.approx(p[0], abs=1e-6)
    assert item["classes"] == [
        {"class": "red", "confidence": round(float(p[0]), 6)},
        {"class": "blue", "confidence": round(float(p[2]), 6)},
    ]


def test_a_regression_with_a_unit_answers_the_value_and_its_unit() -> None:
    out = np.array([[1234.5], [99.0]], dtype=np.float32)
    assert predictions(out, kind=None, labels=None, unit="EUR") == [
        {"prediction": 1234.5, "unit": "EUR"},
        {"prediction": 99.0, "unit": "EUR"},
    ]


def test_tabular_rows_by_column_name() -> None:
    signature = Signature(
        (TensorSpec("input", "FP32", (-1, 3)),), DIGITS_SIGNATURE.outputs, features=("age", "income", "kids")
    )
    inputs, single = decode_predict(
        orjson.dumps({"input": {"income": 1200.5, "age": 42, "kids": 2}}), signature
    )
    assert single and inputs["input"].tolist() == [[42.0, 1200.5, 2.0]]
    inputs, _ = decode_predict(
        orjson.dumps({"inputs": [{"age": 1, "income": 2, "kids": 3}, [4, 5, 6]]}), signature
    )
    assert inputs["input"].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InvalidInput, match="missing column\\(s\\) 'kids'"):
        decode_predict(orjson.dumps({"input": {"age": 1, "income": 2}}), signature)
    with pytest.raises(InvalidInput, match="unknown column\\(s\\) 'pets'"):
        decode_predict(orjson.dumps({"input": {"age": 1, "income": 2, "kids": 3, "pets": 1}}), signature)


def test_pictures_reach_only_a_model_with_a_recipe() -> None:
    with pytest.raises(InvalidInput, match="no image recipe"):
        decode_predict(b"\x89PNG", DIGITS_SIGNATURE, "image/png")
    signature = replace(
        Signature((TensorSpec("image", "BYTES", (-1,)),), DIGITS_SIGNATURE.outputs),
        preprocess={"kind": "image"},
    )
    inputs, single = decode_predict(b"\x89PNG...", signature, "image/png")
    assert single and inputs["image"].tolist() == [b"\x89PNG..."]
    inputs, _ = decode_predict(orjson.dumps({"inputs": [{"b64": "aGk="}, "aGk="]}), signature)
    assert inputs["image"].tolist() == ["aGk=", "aGk="]


def test_multipart_files_in_order_and_bad_bodies() -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="a"; filename="1.png"\r\n\r\nONE\r\n'
        b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\ntext\r\n'
        b'--B\r\nContent-Disposition: form-data; name="b"; filename="2.png"\r\n\r\nTWO\r\n--B--\r\n'
    )
    assert file_parts(body, "multipart/form-data; boundary=B") == [b"ONE", b"TWO"]
    with pytest.raises(InvalidInput, match="without a boundary"):
        file_parts(body, "multipart/form-data")
    with pytest.raises(InvalidInput, match="holds no file"):
        file_parts(
            b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--B--\r\n',
            "multipart/form-data; boundary=B",
        )


def test_json_comes_with_any_content_type_curl_sends() -> None:
    body = orjson.dumps({"input": list(range(64))})
    for content_type in ("", "application/json", "application/x-www-form-urlencoded", "text/plain"):
        inputs, _ = decode_predict(body, DIGITS_SIGNATURE, content_type)
        assert inputs["input"].shape == (1, 64)


def test_text_samples_must_be_strings_and_b64_is_decoded_for_text_models() -> None:
    text = Signature((TensorSpec("input", "BYTES", (-1, 1)),), DIGITS_SIGNATURE.outputs)
    inputs, _ = decode_predict(orjson.dumps({"inputs": ["a sentence", {"b64": "aGVsbG8="}]}), text)
    assert inputs["input"].tolist() == [["a sentence"], [b"hello"]]
    for bad in ({"input": 5}, {"input": None}, {"inputs": ["a", 3]}, {"input": {"b64": "not base64!"}}):
        with pytest.raises(InvalidInput, match=r"strings|not base64"):
            decode_predict(orjson.dumps(bad), text)


def test_a_resize_that_keeps_the_aspect_ratio_needs_a_crop_for_a_fixed_size_model() -> None:
    with pytest.raises(InvalidInput, match=r"resize=224 keeps each picture's aspect ratio.*center_crop=224"):
        build("image: resize=224", (-1, 3, 224, 224))
