"""Request bodies sent with a `Content-Encoding` (gzip, deflate, br, or a comma-separated list of them, applied in
order): decompressed in a worker thread, never on the event loop, and at most up to the server's body limit, so a
compressed bomb costs the limit and no more. A body that does not decompress is the client's error (400, the
connection kept), an encoding the server does not know is 415, and more than the limit decompressed is 413.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from onebyone.runtime.serve.protocol import ProtocolError

CHUNK = 1 << 16  # compressed bytes fed per step


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1,
                                         text=f"the body decompresses to more than {limit} bytes, the server's limit")


def _zlib(body: bytes, limit: int, wbits: int) -> bytes:
    """zlib-family streams (gzip: wbits 16 + 15, zlib: 15, raw deflate: -15), inflated at most `limit` + 1 bytes at
    a time (zlib releases the GIL while it works)."""
    inflate = zlib.decompressobj(wbits)
    parts, total, pending = [], 0, body
    while True:
        step = inflate.decompress(pending, limit + 1 - total)
        parts.append(step)
        total += len(step)
        if total > limit:
            raise _too_large(limit)
        pending = inflate.unconsumed_tail
        if inflate.eof or not pending:
            break
    if not inflate.eof:
        raise ProtocolError("the body ends before its compressed stream does (truncated?)")
    if inflate.unused_data:
        raise ProtocolError("the body has bytes after its compressed stream")
    return b"".join(parts)


def _deflate(body: bytes, limit: int) -> bytes:
    """HTTP's `deflate` is the zlib format (RFC 9110); some clients send raw deflate, which is accepted too."""
    try:
        return _zlib(body, limit, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(body, limit, -zlib.MAX_WBITS)


def _brotli(body: bytes, limit: int) -> bytes:
    brotli = _brotli_module()
    decompressor = brotli.Decompressor()
    parts, total = [], 0
    try:
        for start in range(0, len(body), CHUNK):
            step = decompressor.process(body[start:start + CHUNK], output_buffer_limit=limit + 1 - total)
            parts.append(step)
            total += len(step)
            if total > limit:
                raise _too_large(limit)
    except brotli.error as err:
        raise ProtocolError(f"the body does not decompress as Content-Encoding br: {err}") from None
    if not decompressor.is_finished():
        raise ProtocolError("the body ends before its compressed stream does (truncated?)")
    return b"".join(parts)


def _brotli_module() -> Any:
    try:
        import brotli
    except ImportError:
        raise web.HTTPUnsupportedMediaType(text="Content-Encoding br needs the brotli package on the server; send "
                                                "gzip or deflate") from None
    return brotli


def _gzip(body: bytes, limit: int) -> bytes:
    return _zlib(body, limit, 16 + zlib.MAX_WBITS)


DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,  # the older name (RFC 9110 §8.4.1.3)
    "deflate": _deflate,
    "br": _brotli,
}


def _decode(body: bytes, encodings: list[str], limit: int) -> bytes:
    for encoding in reversed(encodings):  # the last one applied comes off first
        try:
            body = DECODERS[encoding](body, limit)
        except zlib.error as err:
            raise ProtocolError(f"the body does not decompress as Content-Encoding {encoding}: {err}") from None
    return body


async def decoded(body: bytes, content_encoding: str, limit: int) -> bytes:
    """`body` as sent before its `Content-Encoding` (empty or identity: as is)."""
    encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    encodings = [e for e in encodings if e != "identity"]
    if not encodings:
        return body
    if unknown := [e for e in encodings if e not in DECODERS]:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Encoding {unknown[0]!r} is not supported; send "
                                                f"{', '.join(DECODERS)} or identity")
    return await asyncio.to_thread(_decode, body, encodings, limit)
