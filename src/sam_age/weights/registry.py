"""The official pretrained files, as data.

Only facts published by the authors go here: where a size or a checksum was never
published, the field is ``None`` (``weights import`` records the real values in the
cache's manifest instead). Nothing in this module touches the network; the disk only in
:func:`package_file` (finding a file that an installed pip package ships, without
importing that package). Floor 2: the face code (floor 2) finds its landmark model here.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ..errors import UsageError

GB, MB = 1000 ** 3, 1000 ** 2


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?export=download&id={file_id}"


@dataclass(frozen=True)
class WeightsFile:
    """One official weights file."""

    name: str                     # registry name, what ``--checkpoint`` and friends accept
    filename: str                 # file name in the cache (and as published)
    kind: str                     # sam / psp / stylegan2 / ir_se50 / dex / alexnet / lpips_lin / dlib
    used_for: str
    licence: str
    loader: str                   # function of sam_age.checkpoints that checks the file
    flag: str                     # the CLI flag that takes it
    urls: Tuple[str, ...] = ()
    size: Optional[int] = None    # approximate bytes, where published
    sha256: Optional[str] = None  # full hex digest, where published
    sha256_prefix: Optional[str] = None  # e.g. torchvision's 8-hex prefix in the file name
    # (package, path inside it) of pip packages that ship the file, first found wins;
    # such files are never downloaded
    packaged_in: Tuple[Tuple[str, str], ...] = ()

    @property
    def packaged(self) -> bool:
        return bool(self.packaged_in)

    @property
    def package(self) -> Optional[str]:
        """The pip package to install when the file is missing (the last one listed:
        earlier ones are this package itself)."""
        return self.packaged_in[-1][0] if self.packaged_in else None

    @property
    def env_url(self) -> str:
        """Environment variable that overrides the download URL."""
        return f"SAM_AGE_URL_{self.name.upper()}"

    @property
    def source(self) -> str:
        if self.packaged:
            return ", ".join(f"{pkg}/{path}" for pkg, path in self.packaged_in)
        return self.urls[0] if self.urls else "unknown"

    def matches_checksum(self, digest: str) -> Optional[bool]:
        """True/False when the registry knows the checksum (or a prefix of it), else None."""
        if self.sha256:
            return digest.lower() == self.sha256.lower()
        if self.sha256_prefix:
            return digest.lower().startswith(self.sha256_prefix.lower())
        return None


REGISTRY: Tuple[WeightsFile, ...] = (
    WeightsFile(
        name="sam_ffhq_aging", filename="sam_ffhq_aging.pt", kind="sam",
        used_for="SAM age transformation model trained on FFHQ (inference, the main job)",
        licence="MIT (SAM)", loader="load_sam", flag="--checkpoint",
        urls=(_drive("1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"),), size=int(2.2 * GB)),
    WeightsFile(
        name="psp_ffhq_encode", filename="psp_ffhq_encode.pt", kind="psp",
        used_for="pSp FFHQ inversion encoder (training: SAM's frozen pretrained encoder)",
        licence="MIT (pixel2style2pixel)", loader="load_psp_encoder", flag="--pretrained_psp_path",
        urls=(_drive("1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"),)),
    WeightsFile(
        name="stylegan2_ffhq", filename="stylegan2-ffhq-config-f.pt", kind="stylegan2",
        used_for="StyleGAN2 FFHQ 1024 generator, rosinality layout (training: SAM's decoder)",
        licence="NVIDIA Source Code License (weights), MIT (port)", loader="load_stylegan2",
        flag="--stylegan_weights", urls=(_drive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),)),
    WeightsFile(
        name="ir_se50", filename="model_ir_se50.pth", kind="ir_se50",
        used_for="IR-SE-50 ArcFace (training: ID loss and encoder initialisation; evaluation)",
        licence="MIT (TreB1eN)", loader="load_ir_se50", flag="--ir_se50_weights",
        urls=(_drive("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),)),
    WeightsFile(
        name="dex_age", filename="dex_age_classifier.pth", kind="dex",
        used_for="DEX VGG age classifier fine-tuned on FFHQ-Aging (training: age loss; evaluation)",
        licence="see HRFAE (InterDigital)", loader="load_dex", flag="--age_predictor_weights",
        urls=(_drive("1atzjZm_dJrCmFWCqWlyspSpr3nI6Evsh"),)),
    WeightsFile(
        name="alexnet", filename="alexnet-owt-7be5be79.pth", kind="alexnet",
        used_for="torchvision AlexNet (training: LPIPS backbone)",
        licence="BSD-3 (torchvision)", loader="load_alexnet", flag="--alexnet_weights",
        urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
        size=int(233.1 * MB), sha256_prefix="7be5be79"),
    WeightsFile(  # sam-age ships a copy (sam_age/data/lpips, sha256 of lpips 0.1.4's file)
        name="lpips_alex_lin", filename="alex.pth", kind="lpips_lin",
        used_for="LPIPS v0.1 alex linear layers (training: LPIPS loss)",
        licence="BSD-2 (lpips)", loader="lpips_lin_state", flag="--lpips_lin_weights",
        size=6009, sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        packaged_in=(("sam_age", "data/lpips/alex_v0.1.pth"), ("lpips", "weights/v0.1/alex.pth"))),
    WeightsFile(
        name="dlib_68", filename="shape_predictor_68_face_landmarks.dat", kind="dlib",
        used_for="dlib 68-landmark model (face alignment)",
        licence="see dlib (trained on iBUG 300-W: ask before commercial use)", loader="dlib.shape_predictor",
        flag="(face alignment)",
        packaged_in=(("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat"),)),
)

_BY_NAME = {w.name: w for w in REGISTRY}
# the published file names (without suffix) are accepted too: users know them from the
# original README (``--stylegan_weights stylegan2-ffhq-config-f``)
_ALIASES = {w.filename.rsplit(".", 1)[0]: w for w in REGISTRY if not w.packaged}


def names() -> Tuple[str, ...]:
    return tuple(_BY_NAME)


def lookup(name: str) -> Optional[WeightsFile]:
    """The entry for a registry name (or a published file stem), else None."""
    key = str(name).strip()
    return _BY_NAME.get(key) or _ALIASES.get(key)


def get(name: str) -> WeightsFile:
    """Like :func:`lookup` but an unknown name is a :class:`UsageError`."""
    entry = lookup(name)
    if entry is None:
        raise UsageError(f"unknown weights name {name!r} (known: {', '.join(names())})")
    return entry


def package_file(entry: WeightsFile) -> Optional[Path]:
    """The file inside a pip package that ships it, found without importing the package
    (``face_recognition_models`` needs ``pkg_resources`` to import), or None."""
    for package, inner in entry.packaged_in:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / inner
            if candidate.is_file():
                return candidate
    return None
