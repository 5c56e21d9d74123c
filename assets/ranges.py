"""Serve a stored file with HTTP Range support, so browsers can seek in videos."""

import re

from django.http import FileResponse, HttpResponse, StreamingHttpResponse

# 18 digits cover any file size and keep int() far from its 4300-digit limit.
RANGE_PATTERN = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
CHUNK_BYTES = 64 * 1024


def file_response(request, field_file, mime_type: str, filename: str, download: bool):
    size = field_file.size
    header = request.headers.get("Range", "").strip()
    byte_range = _parse_range(header, size) if header else None
    if byte_range == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response

    if byte_range is None:
        response = FileResponse(
            field_file.open("rb"),
            content_type=mime_type,
            as_attachment=download,
            filename=filename,
        )
    else:
        response = _partial(field_file, mime_type, size, *byte_range)
        disposition = "attachment" if download else "inline"
        response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _parse_range(header: str, size: int):
    """Return (start, end) inclusive, None to serve it all, or "unsatisfiable"."""
    match = RANGE_PATTERN.match(header)
    if not match or match.groups() == ("", ""):
        return None  # Multiple or malformed ranges: send the whole file.

    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


def _partial(field_file, mime_type: str, size: int, start: int, end: int):
    handle = field_file.open("rb")
    handle.seek(start)

    def chunks():
        remaining = end - start + 1
        try:
            while remaining > 0:
                data = handle.read(min(CHUNK_BYTES, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            handle.close()

    response = StreamingHttpResponse(chunks(), status=206, content_type=mime_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    return response
