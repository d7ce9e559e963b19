"""What every output says about itself: the AI-edit mark (XMP) and Content Credentials (C2PA).

Floor 1 (beside :mod:`render` and :mod:`fileio`): no torch, no model. Since August 2026 the
EU AI Act (Article 50) asks that AI-generated or AI-manipulated images and video be marked
in a machine-readable way; an aged photo of a real person is exactly that.

Invariants:

* Every image sam-age writes is encoded by :func:`encode_image` (``render.save_image`` /
  ``save_gif`` call it; the HTTP API and the web demo call it for the bytes they return), and
  every video it writes passes through :func:`ffmpeg_metadata` and :func:`mark_video_file`.
  With a :class:`Mark` the bytes carry one XMP packet with the IPTC digital source type
  (:data:`GENERATED` for a generated face, :data:`COMPOSITE` for a face pasted into the
  photo), the tool and its version (IPTC ``AISystemUsed`` / ``AISystemVersionUsed`` and
  ``xmp:CreatorTool``) and the age asked (``AIPromptInformation`` and ``samage:AgeRequested``).
  ``mark=None`` (``--no-mark``) writes the plain encoder's bytes, exactly as before.
* The pixels never change: marking adds metadata next to the encoded image data (PNG iTXt
  ``XML:com.adobe.xmp``, JPEG APP1, WebP ``XMP `` chunk, GIF ``XMP DataXMP`` application
  extension, MP4 top-level ``uuid`` box with Adobe's XMP UUID plus ffmpeg's ``comment``).
* C2PA is added last, over the bytes that already carry the XMP (the manifest's hash covers
  them): :class:`SigningKey` holds the user's chain and key (checked once, at start-up, by
  signing a tiny image: a certificate c2pa refuses stops the run before any model work);
  the manifest's actions are ``c2pa.opened`` (the input photo, its ingredient) then
  ``c2pa.edited`` with the digital source type. No thumbnails: the output never carries a
  copy of the input photo (the ingredient is its name, format and hash).
* :func:`read_marks` is the reader of ``sam-age inspect``: XMP through Pillow (images) or
  the MP4 box tree, C2PA through c2pa-python's ``Reader`` (its validation state as is).
  File contents are hostile: the XMP packet is capped (:data:`MAX_XMP`) before parsing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from .errors import InputError

GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
TOOL = "sam-age"
SYSTEM = "sam-age (SAM: Only a Matter of Style, age transformation)"

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "samage": "urn:sam-age:xmp:1.0/",
}
XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")  # Adobe's XMP box in ISO BMFF (MP4)
MAX_XMP = 1 << 20  # an XMP packet larger than this is not parsed (hostile files)
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "MP4": "video/mp4"}
SUFFIX_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".bmp": "image/bmp",
}


def tool_version() -> str:
    from . import __version__

    return __version__


@dataclass(frozen=True)
class Mark:
    """What one output says about itself. ``age``: the age asked, as the user wrote it
    (``"70"``, ``"+20"``, ``"0,30,60"`` for a strip, ``"20->80"`` for a ramp);
    ``signer``: C2PA Content Credentials too; ``ingredient``: the input photo or clip
    (the C2PA manifest's parent)."""

    source: str = GENERATED
    age: Optional[str] = None
    signer: Optional["SigningKey"] = None
    ingredient: Optional[str] = None

    def but(self, **changes) -> "Mark":
        return dataclasses.replace(self, **changes)

    @property
    def kind(self) -> str:
        """``c2pa`` or ``xmp`` (the manifest's record of how outputs were marked)."""
        return "c2pa" if self.signer is not None else "xmp"


DEFAULT = Mark()  # a generated face, no age: what a writer that is told nothing marks with


def kind_of(mark: Optional[Mark]) -> str:
    return "none" if mark is None else mark.kind


def description(mark: Mark, media: str = "image") -> str:
    """One sentence for people: ``AI-edited image: face generated at age 70 by sam-age 0.1.0 ...``."""
    where = "photo" if media == "image" else "video"
    what = f"face pasted into the {where}" if mark.source == COMPOSITE else "face generated"
    age = f" at age {mark.age}" if mark.age else ""
    return f"AI-edited {media}: {what}{age} by {TOOL} {tool_version()} (trained algorithmic media)"


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def xmp_packet(mark: Mark, media: str = "image") -> bytes:
    """The XMP packet (UTF-8, with the ``xpacket`` wrapper) for ``mark`` (``media``:
    ``image`` or ``video``, for the description)."""
    version = tool_version()
    attrs = {
        "Iptc4xmpExt:DigitalSourceType": mark.source,
        "Iptc4xmpExt:AISystemUsed": SYSTEM,
        "Iptc4xmpExt:AISystemVersionUsed": version,
        "xmp:CreatorTool": f"{TOOL} {version}",
        "samage:Tool": TOOL,
        "samage:Version": version,
    }
    if mark.age:
        attrs["Iptc4xmpExt:AIPromptInformation"] = f"age {mark.age}"
        attrs["samage:AgeRequested"] = str(mark.age)
    ns = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items() if p not in ("x", "rdf"))
    body = "\n    ".join(f'{k}="{_esc(v)}"' for k, v in attrs.items())
    text = (
        f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{NS["x"]}">\n <rdf:RDF xmlns:rdf="{NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about="" {ns}\n    {body}>\n'
        f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{_esc(description(mark, media))}'
        f"</rdf:li></rdf:Alt></dc:description>\n"
        f'  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


# -- images ----------------------------------------------------------------------------------


def encode_image(img, format: str, mark: Optional[Mark] = None, **options) -> bytes:
    """``img`` (PIL) encoded as ``format`` (``PNG``, ``JPEG``, ``WEBP``, ``GIF``; Pillow's
    save ``options``, e.g. ``quality=95`` or ``save_all=True, append_images=[...]`` for an
    animated GIF), with ``mark``'s XMP (and its C2PA manifest when it has a signer).
    ``mark=None``: the plain encoder's bytes."""
    fmt = format.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    buf = io.BytesIO()
    if mark is None:
        img.save(buf, format=fmt, **options)
        return buf.getvalue()
    xmp = xmp_packet(mark)
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)  # XMP's own rule: uncompressed
        img.save(buf, format=fmt, pnginfo=info, **options)
    elif fmt in ("JPEG", "WEBP"):
        img.save(buf, format=fmt, xmp=xmp, **options)
    elif fmt == "GIF":
        img.save(buf, format=fmt, **options)
        buf = io.BytesIO(gif_with_xmp(buf.getvalue(), xmp))
    else:
        raise ValueError(f"cannot mark {format} images (PNG, JPEG, WEBP, GIF)")
    data = buf.getvalue()
    if mark.signer is not None:
        data = mark.signer.sign(data, MIME[fmt], mark)
    return data


def gif_with_xmp(gif: bytes, xmp: bytes) -> bytes:
    """``gif`` with an ``XMP DataXMP`` application extension after its header (Adobe's XMP
    spec, part 3: the packet as raw bytes, then the 258-byte "magic trailer" that lets a
    GIF reader skip it as sub-blocks)."""
    if gif[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not a GIF")
    flags = gif[10]
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)  # header, screen, global colours
    trailer = b"\x01" + bytes(range(0xFF, -1, -1)) + b"\x00"
    block = b"\x21\xff\x0bXMP DataXMP" + xmp + trailer
    return b"GIF89a" + gif[6:pos] + block + gif[pos:]


# -- video -----------------------------------------------------------------------------------


def ffmpeg_metadata(mark: Optional[Mark]) -> List[str]:
    """ffmpeg output options that put the mark in an MP4's container metadata
    (``comment`` and ``description``: what players and exiftool show)."""
    if mark is None:
        return []
    text = f"{description(mark, 'video')}; DigitalSourceType={mark.source}"
    return ["-metadata", f"comment={text}", "-metadata", f"description={text}"]


def mark_video_file(path, mark: Optional[Mark]) -> Path:
    """Append the XMP ``uuid`` box to the MP4 at ``path`` (a top-level box after the others:
    no offset moves) and, with a signer, add the C2PA manifest; in place, through a
    temporary file renamed over ``path``. ``mark=None``: nothing."""
    path = Path(path)
    if mark is None:
        return path
    xmp = xmp_packet(mark, "video")
    with open(path, "ab") as f:
        f.write(struct.pack(">I", 8 + 16 + len(xmp)) + b"uuid" + XMP_UUID + xmp)
    if mark.signer is not None:
        tmp = path.with_name(f".{path.name}.c2pa.tmp")
        try:
            with open(path, "rb") as src, open(tmp, "w+b") as dst:
                mark.signer.sign_stream(src, dst, "video/mp4", mark)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


# -- C2PA ------------------------------------------------------------------------------------


class SigningError(InputError):
    """c2pa refused to sign one output (that input fails; a bad certificate is caught at
    start-up by :meth:`SigningKey.check`). ``detail``: c2pa's own words."""

    detail = ""


def c2pa_available() -> bool:
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    """A certificate chain and its private key, as c2pa-python's ``Signer`` takes them.
    ``load`` converts SEC1 EC and PKCS#1 RSA keys to PKCS#8 (c2pa reads only PKCS#8) and
    picks the algorithm from the key: ES256/384/512 by curve, PS256 for RSA (RSA-PSS),
    Ed25519."""

    chain: bytes
    key: bytes  # PKCS#8 PEM
    alg: str  # es256 | es384 | es512 | ps256 | ed25519
    subject: str = ""
    ta_url: Optional[str] = None

    @classmethod
    def load(cls, cert_path, key_path, ta_url: Optional[str] = None) -> "SigningKey":
        """Read and check; a ``ValueError`` says what is wrong in one line."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        try:
            chain = Path(cert_path).read_bytes()
        except OSError as e:
            raise ValueError(f"--sign-cert {cert_path}: {e.strerror or e}") from None
        try:
            raw = Path(key_path).read_bytes()
        except OSError as e:
            raise ValueError(f"--sign-key {key_path}: {e.strerror or e}") from None
        try:
            certs = x509.load_pem_x509_certificates(chain)
        except ValueError:
            raise ValueError(f"--sign-cert {cert_path}: not a PEM certificate chain") from None
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except TypeError:
            raise ValueError(f"--sign-key {key_path}: the key is encrypted; give an unencrypted PEM key") from None
        except (ValueError, Exception) as e:  # cryptography's unsupported-algorithm errors too
            raise ValueError(f"--sign-key {key_path}: not a PEM private key ({type(e).__name__})") from None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
            if alg is None:
                raise ValueError(
                    f"--sign-key {key_path}: EC curve {key.curve.name} is not one C2PA signs with (P-256, P-384, P-521)"
                )
        elif isinstance(key, rsa.RSAPrivateKey):
            alg = "ps256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            alg = "ed25519"
        else:
            raise ValueError(
                f"--sign-key {key_path}: {type(key).__name__} keys cannot sign C2PA manifests "
                "(EC P-256/384/521, RSA (PSS) or Ed25519)"
            )
        if certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError(f"--sign-key {key_path}: does not match the first certificate of --sign-cert {cert_path}")
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(chain, pkcs8, alg, certs[0].subject.rfc4514_string(), ta_url)

    def _signer(self):
        import c2pa

        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(self.alg, self.chain, self.key, self.ta_url))

    def _builder(self, mark: Mark, title: str):
        import c2pa

        version = tool_version()
        actions = []
        has_parent = bool(mark.ingredient) and _mime_of(mark.ingredient) is not None
        if has_parent:
            actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": ["input"]}})
        actions.append(
            {
                "action": "c2pa.edited" if has_parent else "c2pa.created",
                "digitalSourceType": mark.source,
                "softwareAgent": {"name": TOOL, "version": version},
                **({"description": f"face aged to {mark.age}"} if mark.age else {}),
            }
        )
        manifest = {
            "claim_generator_info": [{"name": TOOL, "version": version}],
            "title": title,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}],
        }
        context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
        builder = c2pa.Builder(json.dumps(manifest), context)
        if has_parent:
            with open(mark.ingredient, "rb") as f:
                builder.add_ingredient(
                    json.dumps({"title": Path(mark.ingredient).name, "relationship": "parentOf", "label": "input"}),
                    _mime_of(mark.ingredient),
                    f,
                )
        return builder

    def sign_stream(self, src, dst, mime: str, mark: Mark, title: str = "sam-age output") -> None:
        """Sign ``src`` into ``dst`` (streams); c2pa's refusal is a :class:`SigningError`."""
        try:
            with self._signer() as signer, self._builder(mark, title) as builder:
                builder.sign(signer, mime, src, dst)
        except OSError:
            raise
        except Exception as e:
            error = SigningError(f"C2PA signing failed: {' '.join(str(e).split())[:300]}")
            error.detail = " ".join(str(e).split())[:300]
            raise error from None

    def sign(self, data: bytes, mime: str, mark: Mark, title: str = "sam-age output") -> bytes:
        """``data`` (an encoded image) with a C2PA manifest for ``mark``."""
        out = io.BytesIO()
        self.sign_stream(io.BytesIO(data), out, mime, mark, title)
        return out.getvalue()

    def check(self) -> None:
        """Sign a tiny image now: raises ``ValueError`` (one line) with c2pa's reason when
        it refuses this certificate or key."""
        if not c2pa_available():
            raise ValueError("signing needs c2pa-python: pip install 'sam-age[c2pa]'")
        from PIL import Image

        try:
            encode_image(Image.new("RGB", (8, 8)), "PNG", Mark(signer=self))
        except SigningError as e:
            raise ValueError(f"c2pa refuses this certificate or key: {e.detail}") from None


def _mime_of(path) -> Optional[str]:
    """The MIME type c2pa takes for an ingredient file, or None (then it is not recorded)."""
    mime = SUFFIX_MIME.get(Path(str(path)).suffix.lower())
    if mime is None or not Path(str(path)).is_file():
        return None
    try:
        import c2pa

        supported = c2pa.Builder.get_supported_mime_types()
    except Exception:
        return mime
    return mime if mime in supported else None


# -- reading (sam-age inspect) ---------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xmp(xmp: Union[bytes, str]) -> Dict[str, str]:
    """The simple properties of an XMP packet's ``rdf:Description`` elements
    (attributes and text elements; ``rdf:Alt`` lists give their first item), keyed
    ``prefix:Name`` with the usual prefixes (unknown namespaces keep their URI)."""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if len(xmp) > MAX_XMP:
        raise ValueError(f"XMP packet too large ({len(xmp)} bytes)")
    start = xmp.find(b"<x:xmpmeta")
    if start < 0:
        start = xmp.find(b"<rdf:RDF")
    if start < 0:
        raise ValueError("no XMP packet")
    end_tag = b"</x:xmpmeta>" if xmp[start : start + 10] == b"<x:xmpmeta" else b"</rdf:RDF>"
    end = xmp.find(end_tag, start)
    if end < 0:
        raise ValueError("XMP packet cut short")
    if b"<!DOCTYPE" in xmp[start:end] or b"<!ENTITY" in xmp[start:end]:
        raise ValueError("XMP packet with a DOCTYPE (refused)")
    root = ET.fromstring(xmp[start : end + len(end_tag)])
    prefix = {u: p for p, u in NS.items()}

    def name(tag: str) -> str:
        if tag.startswith("{"):
            uri, local = tag[1:].split("}", 1)
            return f"{prefix.get(uri, uri)}:{local}"
        return tag

    out: Dict[str, str] = {}
    for desc in root.iter(f"{{{NS['rdf']}}}Description"):
        for k, v in desc.attrib.items():
            if not k.startswith(f"{{{NS['rdf']}}}"):
                out[name(k)] = v
        for child in desc:
            items = [li.text or "" for li in child.iter(f"{{{NS['rdf']}}}li")]
            value = items[0] if items else (child.text or "").strip()
            res = child.attrib.get(f"{{{NS['rdf']}}}resource")
            out[name(child.tag)] = res if res is not None and not value else value
    return out


def _mp4_xmp(path: Path) -> Optional[bytes]:
    """The XMP of an ISO BMFF file (MP4/MOV): a top-level ``uuid`` box with Adobe's XMP
    UUID, or ``moov/udta/XMP_``."""
    size = path.stat().st_size

    def boxes(f, start: int, end: int):
        pos = start
        while pos + 8 <= end:
            f.seek(pos)
            head = f.read(8)
            n, kind = struct.unpack(">I4s", head)
            hdr = 8
            if n == 1:
                n = struct.unpack(">Q", f.read(8))[0]
                hdr = 16
            elif n == 0:
                n = end - pos
            if n < hdr or pos + n > end:
                return
            yield kind, pos + hdr, pos + n
            pos += n

    with open(path, "rb") as f:
        for kind, body, end in boxes(f, 0, size):
            if kind == b"uuid" and end - body >= 16:
                f.seek(body)
                if f.read(16) == XMP_UUID and end - body - 16 <= MAX_XMP:
                    return f.read(end - body - 16)
            if kind == b"moov":
                for k2, b2, e2 in boxes(f, body, end):
                    if k2 == b"udta":
                        for k3, b3, e3 in boxes(f, b2, e2):
                            if k3 == b"XMP_" and e3 - b3 <= MAX_XMP:
                                f.seek(b3)
                                return f.read(e3 - b3)
    return None


def _mp4_comment(path: Path) -> Optional[str]:
    """ffmpeg's ``comment`` tag (``moov/udta/meta/ilst/©cmt/data``), when short enough to find."""
    data = path.read_bytes() if path.stat().st_size <= 64 << 20 else b""
    i = data.find(b"\xa9cmt")
    if i < 0 or data[i + 8 : i + 12] != b"data":
        return None
    n = struct.unpack(">I", data[i + 4 : i + 8])[0]
    return data[i + 20 : i + 4 + n].decode("utf-8", "replace")  # data box: size, type, kind, locale


def _gif_xmp(data: bytes) -> Optional[bytes]:
    """The packet of a GIF's ``XMP DataXMP`` application extension (the blocks walked, not
    searched: image data never passes for it)."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    pos = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)

    def skip_sub_blocks(p: int) -> int:
        while p < len(data) and data[p]:
            p += 1 + data[p]
        return p + 1

    while pos < len(data):
        kind = data[pos]
        if kind == 0x3B:  # trailer
            return None
        if kind == 0x2C:  # an image: descriptor, local colours, LZW size, data
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
            pos = skip_sub_blocks(pos)
        elif kind == 0x21 and pos + 1 < len(data):
            if data[pos + 1] == 0xFF and data[pos + 2 : pos + 14] == b"\x0bXMP DataXMP":
                body = data[pos + 14 : pos + 14 + MAX_XMP + 258]
                end = body.find(b"\x01\xff\xfe")  # the magic trailer's first bytes
                return body[:end] if end >= 0 else body
            pos = skip_sub_blocks(pos + 2)
        else:
            return None
    return None


def read_xmp(path) -> Optional[bytes]:
    """The file's XMP packet (images through Pillow, MP4/MOV through its boxes), or None."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        return _mp4_xmp(path)
    if head[:4] == b"GIF8":
        return _gif_xmp(path.read_bytes())
    from PIL import Image

    with Image.open(path) as im:
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return xmp or None


def read_c2pa(path, trust_anchors: Optional[str] = None) -> Optional[dict]:
    """The C2PA manifest store as c2pa-python's ``Reader`` validates it:
    ``{"state": "Valid"|"Trusted"|"Invalid", "active": {...}, "failures": [...]}``;
    None when the file has none; ``{"error": ...}`` when c2pa-python is missing or fails."""
    if not c2pa_available():
        return {"error": "not checked: pip install c2pa-python"}
    import c2pa

    path = Path(path)
    mime = SUFFIX_MIME.get(path.suffix.lower())
    settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": Path(trust_anchors).read_text()}
        settings["verify"]["verify_trust"] = True
    try:
        with c2pa.Context(c2pa.Settings.from_dict(settings)) as ctx, open(path, "rb") as f:
            with c2pa.Reader(mime or path.suffix.lstrip(".") or "application/octet-stream", f, context=ctx) as r:
                store = json.loads(r.json())
                state = r.get_validation_state()
    except Exception as e:
        text = " ".join(str(e).split())
        if "ManifestNotFound" in type(e).__name__ or "no JUMBF" in text or "ManifestNotFound" in text:
            return None
        return {"error": text[:300]}
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    actions = []
    for a in active.get("assertions", []):
        if str(a.get("label", "")).startswith("c2pa.actions"):
            actions += [
                {k: v for k, v in x.items() if k in ("action", "digitalSourceType", "softwareAgent", "description")}
                for x in a.get("data", {}).get("actions", [])
            ]
    failures = [s.get("code") for s in store.get("validation_status", []) or []]
    return {
        "state": state,
        "failures": failures,
        "claim_generator": active.get("claim_generator_info"),
        "signer": active.get("signature_info", {}),
        "actions": actions,
        "ingredients": [
            {"title": i.get("title"), "format": i.get("format"), "relationship": i.get("relationship")}
            for i in active.get("ingredients", [])
        ],
    }


def read_marks(path, trust_anchors: Optional[str] = None) -> dict:
    """What ``path`` says about itself: ``{"file", "marked", "xmp": {...}|None,
    "digital_source_type", "c2pa": {...}|None}``. ``marked``: an IPTC digital source type
    is present (XMP) or a C2PA manifest is. Raises ``OSError`` / ``ValueError`` for a file
    that cannot be read at all."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    fields = None
    xmp_error = None
    try:
        raw = read_xmp(path)
        if raw:
            fields = parse_xmp(raw)
    except (ValueError, ET.ParseError) as e:
        xmp_error = f"unreadable XMP: {e}"
    except UnidentifiedImageError:
        raise ValueError("not an image (PNG, JPEG, WebP, GIF, ...) or an MP4") from None
    except OSError:
        raise
    except Exception as e:  # Pillow fails on it otherwise: a broken image
        raise ValueError(f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
    out: Dict[str, object] = {"file": str(path)}
    dst = (fields or {}).get("Iptc4xmpExt:DigitalSourceType")
    out["digital_source_type"] = dst
    out["xmp"] = fields
    if xmp_error:
        out["xmp_error"] = xmp_error
    if path.suffix.lower() in (".mp4", ".m4v", ".mov"):
        out["comment"] = _mp4_comment(path)
    out["c2pa"] = read_c2pa(path, trust_anchors)
    out["marked"] = bool(dst) or bool(out["c2pa"] and "state" in out["c2pa"])
    return out


__all__ = [
    "GENERATED",
    "COMPOSITE",
    "Mark",
    "SigningKey",
    "encode_image",
    "xmp_packet",
    "gif_with_xmp",
    "ffmpeg_metadata",
    "mark_video_file",
    "read_marks",
    "read_xmp",
    "read_c2pa",
    "parse_xmp",
    "kind_of",
    "c2pa_available",
]
