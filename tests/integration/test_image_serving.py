"""Pictures in, label out: a model imported with an image recipe, served by a real server, answers
pictures sent every way users send them, with what Pillow + numpy + ONNX Runtime give on the model
without the recipe."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest
from PIL import Image, ImageOps

from shipyard.config import Settings
from shipyard.importing import import_onnx
from shipyard.processing import samples
from shipyard.registry import Registry
from tests.integration.conftest import Server, start_server, stop_server
from tests.models import picture_cnn

pytestmark = pytest.mark.usefixtures("collected")  # tritonclient's HTTP clients: see the fixture

RECIPE = "image: resize=40, center_crop=32, normalize=imagenet"
LABELS = ["cat", "dog", "bird", "fish"]
MEAN, STD = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])


def expected_logits(data: bytes) -> np.ndarray:
    """The recipe's steps written out with Pillow and numpy, then the model without the recipe."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        w, h = image.size
        size = (40, int(40 * h / w)) if w <= h else (int(40 * w / h), 40)
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = round((size[0] - 32) / 2), round((size[1] - 32) / 2)
        image = image.crop((left, top, left + 32, top + 32))
        x = (np.asarray(image, dtype=np.float32) / 255 - MEAN) / STD
    session = ort.InferenceSession(picture_cnn(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"pixels": x.transpose(2, 0, 1)[None]})[0][0])


def expected_class(data: bytes) -> str:
    return LABELS[int(expected_logits(data).argmax())]


@pytest.fixture(scope="module")
def pictures() -> list[bytes]:
    return samples.pictures()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    model = home / "cnn.onnx"
    model.write_bytes(picture_cnn())
    registry = Registry.open(Settings(home=home))
    import_onnx(model, name="pets", labels=LABELS, preprocess=RECIPE, registry=registry)
    registry.close()
    srv = start_server(home, "--max-body-mb", "4")
    yield srv
    stop_server(srv)


def test_a_picture_as_the_body_gets_the_class_the_recipe_steps_give(
    server: Server, pictures: list[bytes]
) -> None:
    kinds = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
    with httpx.Client(base_url=server.url) as client:
        for (fmt, _, _), data in zip(samples.KINDS, pictures, strict=True):
            answer = client.post(
                "/v1/models/pets/predict", content=data, headers={"content-type": kinds[fmt]}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            logits = expected_logits(data)
            assert body["class"] == LABELS[int(logits.argmax())]
            probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert body["confidence"] == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_multipart_uploads_answer_each_file_in_order(server: Server, pictures: list[bytes]) -> None:
    files = [("file", (f"p{i}.bin", data, "application/octet-stream")) for i, data in enumerate(pictures[:3])]
    form = [*files, ("note", (None, b"not a file"))]
    answer = httpx.post(f"{server.url}/v1/models/pets/predict", files=form)
    assert answer.status_code == 200, answer.text
    assert [item["class"] for item in answer.json()] == [expected_class(p) for p in pictures[:3]]
    one = httpx.post(f"{server.url}/v1/models/pets/predict", files=[files[0]])
    assert one.json()["class"] == expected_class(pictures[0])


def test_base64_in_json_every_form(server: Server, pictures: list[bytes]) -> None:
    text = base64.b64encode(pictures[1]).decode()
    url = f"{server.url}/v1/models/pets/predict"
    assert httpx.post(url, json={"input": text}).json()["class"] == expected_class(pictures[1])
    forms = [{"b64": text}, "data:image/png;base64," + text, base64.encodebytes(pictures[1]).decode()]
    answer = httpx.post(url, json={"inputs": forms})
    assert [item["class"] for item in answer.json()] == [expected_class(pictures[1])] * 3


def test_v2_bytes_over_rest_and_grpc_with_tritonclient(server: Server, pictures: list[bytes]) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    batch = np.array(pictures[:2], dtype=np.object_)
    want = np.stack([expected_logits(p) for p in pictures[:2]])
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:  # closed here, not by the garbage collector in whichever test runs next
        item = httpclient.InferInput("image", [2], "BYTES")
        item.set_data_from_numpy(batch, binary_data=True)
        got = http.infer("pets", [item]).as_numpy("logits")
        np.testing.assert_allclose(got, want, atol=1e-4)
        metadata = http.get_model_metadata("pets")
        assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    finally:
        http.close()
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        item = grpcclient.InferInput("image", [2], "BYTES")
        item.set_data_from_numpy(batch)
        np.testing.assert_allclose(grpc.infer("pets", [item]).as_numpy("logits"), want, atol=1e-4)
    finally:
        grpc.close()
    # JSON v2 carries text: pictures as base64 strings
    doc = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(pictures[0]).decode()],
            }
        ]
    }
    answer = httpx.post(f"{server.url}/v2/models/pets/infer", json=doc)
    np.testing.assert_allclose(answer.json()["outputs"][0]["data"], want[0], atol=1e-4)


def test_exif_orientation_is_honoured(server: Server) -> None:
    with Image.open(io.BytesIO(samples.picture("JPEG", "RGB", (90, 50), seed=3))) as image:
        exif = image.getexif()
        exif[0x0112] = 6  # stored turned: shown rotated by 90 degrees
        out = io.BytesIO()
        image.save(out, format="JPEG", exif=exif, quality=95)
    turned = out.getvalue()
    answer = httpx.post(
        f"{server.url}/v1/models/pets/predict", content=turned, headers={"content-type": "image/jpeg"}
    )
    logits = expected_logits(turned)
    got = httpx.post(
        f"{server.url}/v2/models/pets/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(turned).decode()],
                }
            ]
        },
    )
    np.testing.assert_allclose(got.json()["outputs"][0]["data"], logits, atol=1e-4)
    assert answer.json()["class"] == LABELS[int(logits.argmax())]


def bomb() -> bytes:
    """A valid PNG header that claims 30000x30000 pixels, with almost no data behind it."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    data[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR width and height
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("content", "content_type", "says"),
    [
        (b"GIF89a not really", "image/gif", "picture"),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "image/jpeg", "not a picture"),
        (b"", "image/png", "empty"),
        (bomb(), "image/png", "image"),
        (b"hello", "text/plain", "neither a picture nor base64"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", "multipart"),
        (b'{"input": "not base64 !"}', "application/json", "base64"),
        (b'{"input": 3}', "application/json", "picture"),
    ],
)
def test_bad_pictures_get_a_400_naming_the_problem(
    server: Server, content: bytes, content_type: str, says: str
) -> None:
    answer = httpx.post(
        f"{server.url}/v1/models/pets/predict", content=content, headers={"content-type": content_type}
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert server.alive()
    good = samples.picture("PNG", "RGB", (33, 33))
    assert (
        httpx.post(
            f"{server.url}/v1/models/pets/predict", content=good, headers={"content-type": "image/png"}
        ).status_code
        == 200
    )


def test_a_bad_picture_in_a_batch_fails_its_own_request_only(server: Server, pictures: list[bytes]) -> None:
    good = {"content": pictures[0], "headers": {"content-type": "image/jpeg"}}
    bad = {"content": b"\x89PNG\r\n\x1a\n broken", "headers": {"content-type": "image/png"}}
    import concurrent.futures

    url = f"{server.url}/v1/models/pets/predict"
    with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda kw: client.post(url, **kw).status_code, [good, bad] * 16))
    assert answers == [200, 400] * 16


def test_model_show_prints_the_recipe(server: Server, tmp_path: Path) -> None:
    import subprocess

    from tests.integration.conftest import shipyard_command

    home = Path(str(server.log)).parent
    shown = subprocess.run(
        shipyard_command(home, "model", "show", "pets"),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert (
        "image: resize=40, center_crop=32, scale=1/255, normalize=imagenet, layout=NCHW, channels=RGB"
        in shown.stdout
    )
    assert "pixels uint8 [-1, 32, 32, 3]" in shown.stdout
    assert "its graph checked on 6 pictures against numpy: max |diff|" in shown.stdout


def test_curls_default_content_type_carries_pictures_and_json(server: Server, pictures: list[bytes]) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}  # what curl -d and --data-binary say
    url = f"{server.url}/v1/models/pets/predict"
    assert httpx.post(url, content=pictures[0], headers=form).json()["class"] == expected_class(pictures[0])
    body = orjson.dumps({"input": base64.b64encode(pictures[0]).decode()})
    assert httpx.post(url, content=body, headers=form).json()["class"] == expected_class(pictures[0])
