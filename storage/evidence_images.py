"""Evidence images as they are kept: decoded and re-encoded without what a camera or an editor hid in them.

A photo's EXIF says where it was taken (GPS), with which camera (serial numbers, the owner's name), by whom
(Artist, Copyright) and may hold a description; PNG text chunks, XMP, IPTC and JPEG or GIF comments carry any
words at all. Any of them can name the resident. `clean_image` keeps the pixels only: the EXIF orientation is
applied first (the photo still shows the right way up), then a new file is written from the pixels with nothing
of the original's metadata but the ICC colour profile (JPEG, PNG, WebP) and transparency. Animated GIF, PNG and
WebP files keep their frames, frame durations and loop count.

`make_thumbnail` makes the small JPEG the console's ticket page shows; `thumbnail_name` is where it is cached
beside the evidence file, encrypted the same way (`storage.evidence_files`).

Only the format the bytes were sniffed as is decoded (no other Pillow plugin sees a resident's file), and an
image of more than `MAX_PIXELS` pixels (over all its frames) or `MAX_FRAMES` frames is refused before its pixels
are decoded.
Blocking (CPU): run these in a thread.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageFile, ImageOps

MAX_PIXELS = 64_000_000
"""The most pixels an evidence image may have, over all its frames: 64 MP is a large phone photo (8000 × 8000),
about 256 MB decoded as RGBA."""
MAX_SCANS = 100
"""The most scans a JPEG may have. A progressive JPEG's picture comes in scans, each a pass over every pixel: a
94 KB JPEG with one scan repeated 1,000 times took 15 s to decode. An encoder writes about 10 (mozjpeg a few more)."""
MAX_SCAN_PIXELS = 16 * MAX_PIXELS
"""The most pixels decoded over all of a JPEG's scans: a 64 MP photo may have 16 scans, a 12 MP one the 100."""
MAX_FRAMES = 2000
"""The most frames an animation may have: re-encoding costs per frame whatever its size, and a 5 MB GIF of 200,000
one-pixel frames (far under `MAX_PIXELS`) held a CPU for two minutes. 2000 frames is over a minute at 30 per second."""

THUMBNAIL_SIDE = 320
JPEG_QUALITY = 95
WEBP_QUALITY = 90
THUMBNAIL_QUALITY = 80

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
"""The image types evidence may be, by media type: what Pillow decodes them as (nothing else is tried)."""

_ORIENTATION = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class ImageRefused(ValueError):
    """Bytes that sniffed as an image but are not one Pillow can decode (`reason` "undecodable"), one too
    large to decode safely ("too_large"), an animation of more than `MAX_FRAMES` frames ("too_many_frames"), or a
    JPEG of too many scans ("too_many_scans")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_image(media_type: str) -> bool:
    return media_type in FORMATS


def thumbnail_name(stored_name: str) -> str:
    """Where the thumbnail of the evidence file `stored_name` is kept (beside it, in the same directory)."""
    return f"{stored_name}.thumb.jpg"


def _open(content: bytes, media_type: str) -> Image.Image:
    """The image, its header read (pixels not yet decoded), checked against `MAX_PIXELS` over all its frames."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content), formats=[FORMATS[media_type]])
            frames = 1 if media_type == "image/jpeg" else getattr(image, "n_frames", 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("too_large") from None
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for a hostile or broken file: all are refusals
        raise ImageRefused("undecodable") from None
    if image.width * image.height * max(1, frames) > MAX_PIXELS:
        raise ImageRefused("too_large")
    if frames > MAX_FRAMES:
        raise ImageRefused("too_many_frames")
    if media_type == "image/jpeg":
        # every start-of-scan marker in the file (coded data cannot hold one: a 0xFF there is followed by 0x00);
        # an EXIF thumbnail's few are counted too
        scans = content.count(b"\xff\xda")
        if scans > MAX_SCANS or scans * image.width * image.height > MAX_SCAN_PIXELS:
            raise ImageRefused("too_many_scans")
    return image


def _pixels_only(image: Image.Image, keep_transparency: bool) -> Image.Image:
    """A copy of the frame's pixels (and palette) with none of the original's metadata."""
    clean = image.copy()
    transparency = image.info.get("transparency") if keep_transparency else None
    clean.info = {} if transparency is None else {"transparency": transparency}
    return clean


def _still(image: Image.Image, media_type: str) -> tuple[Image.Image, dict[str, Any]]:
    """The upright picture and how to save it."""
    upright = ImageOps.exif_transpose(image)
    if media_type == "image/jpeg":
        if upright.mode not in ("L", "RGB", "CMYK"):
            upright = upright.convert("RGB")
        return _pixels_only(upright, False), {"quality": JPEG_QUALITY}
    if media_type == "image/webp":
        if upright.mode not in ("RGB", "RGBA"):
            upright = upright.convert("RGBA" if "A" in upright.mode or "transparency" in upright.info else "RGB")
        return _pixels_only(upright, False), {"quality": WEBP_QUALITY}
    return _pixels_only(upright, True), {}


def _animation(image: Image.Image, media_type: str) -> tuple[list[Image.Image], dict[str, Any]]:
    """Every frame, upright, as RGBA without metadata, and the frames' durations and loop count."""
    orientation = image.getexif().get(_ORIENTATION)
    transpose = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    frames: list[Image.Image] = []
    durations: list[int] = []
    loop = image.info.get("loop", 0)
    for number in range(getattr(image, "n_frames", 1)):
        image.seek(number)
        frame = image.convert("RGBA")
        if transpose is not None:
            frame = frame.transpose(transpose)
        frames.append(_pixels_only(frame, False))
        durations.append(int(image.info.get("duration", 100) or 100))
    options: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "duration": durations,
                               "loop": int(loop) if isinstance(loop, int) else 0}
    if media_type == "image/webp":
        options["quality"] = WEBP_QUALITY
    if media_type == "image/gif":
        options["disposal"] = 2
    return frames, options


def clean_image(content: bytes, media_type: str) -> bytes:
    """The image re-encoded in its own format from its pixels: upright, without EXIF (GPS, camera serials,
    owner, artist, description), XMP, IPTC, comments or text chunks. `ImageRefused` when it does not decode or
    is too large."""
    image = _open(content, media_type)
    icc_profile = image.info.get("icc_profile")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            if media_type != "image/jpeg" and getattr(image, "is_animated", False):  # a JPEG's further
                # pictures (MPO: a camera's preview or depth map) are dropped with the rest of its metadata
                frames, options = _animation(image, media_type)
                first = frames[0]
            else:
                first, options = _still(image, media_type)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("too_large") from None
    except Exception:  # noqa: BLE001 - a truncated or corrupt file shows only when its pixels are decoded
        raise ImageRefused("undecodable") from None
    if icc_profile and media_type != "image/gif" and first.mode != "P":
        options["icc_profile"] = icc_profile
    out = io.BytesIO()
    first.save(out, format=FORMATS[media_type], **options)
    return out.getvalue()


def make_thumbnail(content: bytes, media_type: str) -> bytes:
    """A JPEG of at most `THUMBNAIL_SIDE` pixels a side of the image's first frame, upright, without metadata
    (made from a stored file of before cleaning too). `ImageRefused` when the file does not decode."""
    image = _open(content, media_type)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(image, ImageFile.ImageFile) and image.format == "JPEG":
                image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))  # decode a reduced JPEG: faster
            upright = ImageOps.exif_transpose(image)
            if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
                rgba = upright.convert("RGBA")
                flat = Image.new("RGB", rgba.size, "white")
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = upright.convert("RGB")
            flat.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("too_large") from None
    except Exception:  # noqa: BLE001 - as in clean_image
        raise ImageRefused("undecodable") from None
    out = io.BytesIO()
    _pixels_only(flat, False).save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()
