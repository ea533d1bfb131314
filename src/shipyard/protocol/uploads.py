"""Pictures sent the way browsers and curl send files: the parts of a multipart/form-data body."""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from shipyard.errors import InvalidInput

MAX_PARTS = 256
"""The most files one request may hold: each becomes a prediction, so a bound on one request's work."""


def file_parts(body: bytes, content_type: str) -> list[bytes]:
    """The files of a multipart/form-data body (parts that carry a filename), in order; the other
    fields are ignored."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data without a boundary in its content-type")
    files: list[bytes] = []
    chunks: list[bytes] = []
    header: list[bytes] = [b"", b""]  # field, value
    is_file = [False]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        if header[0].lower() == b"content-disposition" and b"filename" in header[1]:
            is_file[0] = True
        header[0], header[1] = b"", b""

    def on_part_begin() -> None:
        chunks.clear()
        is_file[0] = False

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if is_file[0]:
            chunks.append(data[start:end])

    def on_part_end() -> None:
        if is_file[0]:
            if len(files) >= MAX_PARTS:
                raise InvalidInput(f"a request may hold at most {MAX_PARTS} files")
            files.append(b"".join(chunks))

    callbacks = {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_begin": on_part_begin,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    }  # fmt: skip
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except InvalidInput:
        raise
    except Exception as exc:  # python-multipart raises its own errors for a malformed body
        raise InvalidInput(f"malformed multipart/form-data body: {str(exc).splitlines()[0]}") from None
    if not files:
        raise InvalidInput(
            "the multipart body holds no file: send the picture as one (curl -F file=@cat.jpg)"
        )
    return files
