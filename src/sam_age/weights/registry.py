"""The official pretrained files and where each can be fetched, as plain data.

Only facts published by the authors, or seen in a named public source, go here: where a
size or a checksum was never published the field is ``None`` (``weights import`` and a
verified download record the real values in the cache's manifest instead). Every mirror
below was seen with its repository id *and* file name (and the commit it was seen at) on
the Hugging Face Hub; the note beside it says what was seen. Nothing in this module
touches the network; the disk only in :func:`package_file` (finding a file that an
installed pip package ships, without importing that package). Floor 2: the face code
(floor 2) finds its landmark model here.

Sources are tried in their order (see ``store.fetch``): the Hub mirrors first (resumable,
the Hub sends each file's size and sha256), then the authors' Google Drive link (a quota
page in place of the file is common there).
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ..errors import UsageError

GB, MB = 1000**3, 1000**2
HUB_ENDPOINT = "https://huggingface.co"
TRANSPORTS = ("hub", "drive", "url")  # how a Source is fetched (WeightsFile.kind is the model type)


@dataclass(frozen=True)
class Source:
    """One place a registry file can be fetched from.

    ``hub``: ``location`` is the repo id, ``filename`` the file's path in the repo,
    ``revision`` the commit it was seen at (pinned: a later push cannot change what is
    fetched), ``repo_type`` model/space/dataset. ``drive``: ``location`` is the Google
    Drive file id (or a full link to a Drive-like host). ``url``: ``location`` is the URL.
    ``sha256``/``size`` are what that source's LFS pointer said, where it was seen (the Hub
    sends them again with the file). ``transport`` is one of :data:`TRANSPORTS`."""

    transport: str
    location: str
    filename: Optional[str] = None
    revision: Optional[str] = None
    repo_type: str = "model"
    sha256: Optional[str] = None
    size: Optional[int] = None
    note: str = ""
    user: bool = False  # given by the user (--source URL, $SAM_AGE_URL_<NAME>): may be plain http

    @property
    def label(self) -> str:
        """Short name for messages and ``weights list``: ``hub:owner/repo/file``, ``drive:ID``, or the URL."""
        if self.transport == "hub":
            prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
            return f"hub:{prefix}{self.location}/{self.filename}"
        if self.transport == "drive":
            return f"drive:{self.location}"
        return self.location

    def url(self, endpoint: Optional[str] = None) -> str:
        """A URL a browser can download the file from (the Hub's ``resolve`` link)."""
        if self.transport == "hub":
            base = (endpoint or hub_endpoint()).rstrip("/")
            prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
            path = urllib.parse.quote(self.filename or "", safe="/")
            return f"{base}/{prefix}{self.location}/resolve/{self.revision or 'main'}/{path}"
        if self.transport == "drive" and not self.location.startswith(("http://", "https://")):
            return f"https://drive.google.com/uc?export=download&id={self.location}"
        return self.location


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` (a Hub mirror) read now, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT).rstrip("/")


def hub(
    repo_id: str,
    filename: str,
    revision: Optional[str] = None,
    *,
    repo_type: str = "model",
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    note: str = "",
) -> Source:
    return Source("hub", repo_id, filename, revision, repo_type, sha256, size, note)


def drive(file_id: str, note: str = "the authors' link") -> Source:
    return Source("drive", file_id, note=note)


def url(address: str, note: str = "", user: bool = False) -> Source:
    return Source("url", address, note=note, user=user)


def parse_source(text: str, entry: "WeightsFile") -> Source:
    """A ``--source`` value that names one place: ``hub:OWNER/REPO[/PATH]`` (PATH defaults
    to the entry's file name) or an ``http(s)://`` URL."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        return url(text, note="given on the command line", user=True)
    if text.startswith("hub:"):
        parts = text[4:].strip("/").split("/")
        repo_type = "model"
        if parts and parts[0] in ("spaces", "datasets"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) < 2:
            raise UsageError(f"--source {text}: expected hub:OWNER/REPO or hub:OWNER/REPO/PATH")
        filename = "/".join(parts[2:]) or entry.filename
        return hub("/".join(parts[:2]), filename, repo_type=repo_type, note="given on the command line")
    raise UsageError(f"--source must be hub, drive, hub:OWNER/REPO[/PATH] or an http(s) URL, not {text!r}")


@dataclass(frozen=True)
class WeightsFile:
    """One official weights file."""

    name: str  # registry name, what ``--checkpoint`` and friends accept
    filename: str  # file name in the cache (and as published)
    kind: str  # sam / psp / stylegan2 / ir_se50 / dex / alexnet / lpips_lin / dlib / curricular_face
    used_for: str
    licence: str
    loader: str  # function of sam_age.checkpoints that checks the file
    flag: str  # the CLI flag that takes it
    sources: Tuple[Source, ...] = ()
    size: Optional[int] = None  # bytes, where published or reported
    size_exact: bool = False  # False: ``size`` is a hint (a mismatch warns); True: a fact (it rejects)
    # for display only (``weights list``), where no size is published or reported: the
    # tensors' bytes from the reference manifest (/work/shared/reference/*.manifest.json);
    # on the three files whose size is published the real file is 0.02-0.05 % larger
    # (pickle overhead). Never checked against a download.
    estimated_size: Optional[int] = None
    sha256: Optional[str] = None  # full hex digest, where published
    sha256_prefix: Optional[str] = None  # e.g. torchvision's 8-hex prefix in the file name
    # (package, path inside it) of pip packages that ship the file, first found wins;
    # such files are never downloaded
    packaged_in: Tuple[Tuple[str, str], ...] = ()
    # A few (path in the loaded tree, shape) pairs every real file has (from the manifests of
    # the official files, /work/shared/reference/*.manifest.json): a download must hold each,
    # stored whole, before it takes its cache name (``store.layout_problem``).
    layout: Tuple[Tuple[Tuple[str, ...], Tuple[int, ...]], ...] = ()

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
    def urls(self) -> Tuple[str, ...]:
        """A browser link for every source, in order."""
        return tuple(s.url() for s in self.sources)

    @property
    def source(self) -> str:
        if self.packaged:
            return ", ".join(f"{pkg}/{path}" for pkg, path in self.packaged_in)
        return ", ".join(s.label for s in self.sources) or "unknown"

    def sources_of(self, transport: str) -> Tuple[Source, ...]:
        return tuple(s for s in self.sources if s.transport == transport)

    def matches_checksum(self, digest: str) -> Optional[bool]:
        """True/False when the registry knows the checksum (or a prefix of it), else None."""
        if self.sha256:
            return digest.lower() == self.sha256.lower()
        if self.sha256_prefix:
            return digest.lower().startswith(self.sha256_prefix.lower())
        return None


REGISTRY: Tuple[WeightsFile, ...] = (
    WeightsFile(
        name="sam_ffhq_aging",
        filename="sam_ffhq_aging.pt",
        kind="sam",
        used_for="SAM age transformation model trained on FFHQ (inference, the main job)",
        licence="MIT (SAM)",
        loader="load_sam",
        flag="--checkpoint",
        sources=(
            hub(
                "aimi-models/sam-aging",
                "sam_ffhq_aging.pt",
                "f05249c0faa14a1d0c0347fdc2cb8131503db74a",
                note="MIT mirror; its README: ~2.27 GB, byte-identical to the Drive file",
            ),
            hub(
                "deneesk/sam-model",
                "pretrained_models/sam_ffhq_aging.pt",
                "2302223da4cbb1f0db53e1519c8ea679acec3d6a",
                note="copy of the SAM repository, 2.27 GB",
            ),
            drive("1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"),
        ),
        # reported for the Drive file and its Hub mirror, never published by the authors:
        # a hint until a verified download confirms it (a mismatch warns, it does not reject)
        size=2_270_547_237,
        layout=(
            (("state_dict", "encoder.input_layer.0.weight"), (64, 4, 3, 3)),
            (("state_dict", "pretrained_encoder.input_layer.0.weight"), (64, 3, 3, 3)),
            (("state_dict", "encoder.styles.17.linear.weight"), (512, 512)),
            (("state_dict", "decoder.conv1.conv.weight"), (1, 512, 512, 3, 3)),
            (("state_dict", "decoder.to_rgbs.7.conv.weight"), (1, 3, 32, 1, 1)),
            (("latent_avg",), (18, 512)),
        ),
    ),
    WeightsFile(
        name="psp_ffhq_encode",
        filename="psp_ffhq_encode.pt",
        kind="psp",
        used_for="pSp FFHQ inversion encoder (training: SAM's frozen pretrained encoder)",
        licence="MIT (pixel2style2pixel)",
        loader="load_psp_encoder",
        flag="--pretrained_psp_path",
        sources=(
            hub(
                "trysem/pixel2style2pixel",
                "psp_ffhq_encode.pt",
                "1ed74b0e83cd17e3ce3b0070a56f581f54b9b0e3",
                note="beside psp_ffhq_frontalization.pt, 1.2 GB",
            ),
            drive("1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"),
        ),
        estimated_size=1_201_347_344,
        layout=(
            (("state_dict", "encoder.input_layer.0.weight"), (64, 3, 3, 3)),
            (("state_dict", "encoder.styles.17.linear.weight"), (512, 512)),
            (("state_dict", "decoder.conv1.conv.weight"), (1, 512, 512, 3, 3)),
            (("state_dict", "decoder.to_rgbs.7.conv.weight"), (1, 3, 32, 1, 1)),
            (("latent_avg",), (18, 512)),
        ),
    ),
    WeightsFile(
        name="stylegan2_ffhq",
        filename="stylegan2-ffhq-config-f.pt",
        kind="stylegan2",
        used_for="StyleGAN2 FFHQ 1024 generator, rosinality layout (training: SAM's decoder)",
        licence="NVIDIA Source Code License (weights), MIT (port)",
        loader="load_stylegan2",
        flag="--stylegan_weights",
        sources=(
            hub(
                "wmpscc/StyleGene",
                "stylegan2-ffhq-config-f.pt",
                "e301280ac9a63ba7ebb4be3311128bb6c9cb9ae2",
                sha256="d0d7c5e71531c816b8cf01037393ee4fb65ed09dcb6434cc0197771e3051199b",
                size=132_729_083,
                note="g_ema + latent_avg size, as pSp's file; LFS pointer seen in commit e301280",
            ),
            drive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),
        ),
        layout=(
            (("g_ema", "style.1.weight"), (512, 512)),
            (("g_ema", "conv1.conv.weight"), (1, 512, 512, 3, 3)),
            (("g_ema", "to_rgbs.7.conv.weight"), (1, 3, 32, 1, 1)),
        ),
    ),
    WeightsFile(
        name="ir_se50",
        filename="model_ir_se50.pth",
        kind="ir_se50",
        used_for="IR-SE-50 ArcFace (training: ID loss and encoder initialisation; evaluation)",
        licence="MIT (TreB1eN)",
        loader="load_ir_se50",
        flag="--ir_se50_weights",
        sources=(
            hub(
                "lithiumice/ArcFace_PyTorch",
                "InsightFace_Pytorch+model_ir_se50.pth",
                "086811ee76897fdfd94335ea4ff40ae074136022",
                sha256="a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
                size=175_367_323,
                note="same sha256 in three independent Hub repos",
            ),
            hub(
                "adirik/stylemc-demo",
                "pretrained/model_ir_se50.pth",
                "74880fc98f769a37b6227fb75bd0362b0ddff595",
                repo_type="space",
                sha256="a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
                size=175_367_323,
                note="a Space's copy",
            ),
            drive("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),
        ),
        layout=(
            (("input_layer.0.weight",), (64, 3, 3, 3)),
            (("output_layer.3.weight",), (512, 25088)),
            (("body.23.res_layer.5.fc2.weight",), (512, 32, 1, 1)),
        ),
    ),
    WeightsFile(
        name="dex_age",
        filename="dex_age_classifier.pth",
        kind="dex",
        used_for="DEX VGG age classifier fine-tuned on FFHQ-Aging (training: age loss; evaluation)",
        licence="see HRFAE (InterDigital)",
        loader="load_dex",
        flag="--age_predictor_weights",
        sources=(drive("1atzjZm_dJrCmFWCqWlyspSpr3nI6Evsh"),),
        estimated_size=538_697_364,
        layout=(
            (("state_dict", "conv1_1.weight"), (64, 3, 3, 3)),
            (("state_dict", "fc6.weight"), (4096, 25088)),
            (("state_dict", "fc8-101.bias"), (101,)),
        ),
    ),
    WeightsFile(
        name="curricular_face",
        filename="CurricularFace_Backbone.pth",
        kind="curricular_face",
        used_for="CurricularFace IR-101 (evaluation and --report: identity similarity, as the paper)",
        licence="MIT (HuangYG123/CurricularFace)",
        loader="load_curricular_face",
        flag="--curricular_face_weights",
        sources=(
            drive(
                "1f4IwVa2-Bn9vWLwB-bUwm53U_MlvinAj",
                note="pSp's README (eladrich/pixel2style2pixel), 'CurricularFace Backbone', the file "
                "its calc_id_loss_parallel.py reads as CurricularFace_Backbone.pth",
            ),
            drive("1upOyrPzZ5OI3p6WkA5D5JFYCeiZuaPcp"),  # HuangYG123/CurricularFace README: "IR101 pretrained model"
        ),
    ),
    WeightsFile(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        kind="alexnet",
        used_for="torchvision AlexNet (training: LPIPS backbone)",
        licence="BSD-3 (torchvision)",
        loader="load_alexnet",
        flag="--alexnet_weights",
        sources=(url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "torchvision's model zoo"),),
        size=int(233.1 * MB),
        sha256_prefix="7be5be79",
        layout=((("features.0.weight",), (64, 3, 11, 11)), (("features.10.weight",), (256, 256, 3, 3))),
    ),
    WeightsFile(  # sam-age ships a copy (sam_age/data/lpips, sha256 of lpips 0.1.4's file)
        name="lpips_alex_lin",
        filename="alex.pth",
        kind="lpips_lin",
        used_for="LPIPS v0.1 alex linear layers (training: LPIPS loss)",
        licence="BSD-2 (lpips)",
        loader="lpips_lin_state",
        flag="--lpips_lin_weights",
        size=6009,
        size_exact=True,
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        packaged_in=(("sam_age", "data/lpips/alex_v0.1.pth"), ("lpips", "weights/v0.1/alex.pth")),
    ),
    WeightsFile(
        name="dlib_68",
        filename="shape_predictor_68_face_landmarks.dat",
        kind="dlib",
        used_for="dlib 68-landmark model (face alignment)",
        licence="see dlib (trained on iBUG 300-W: ask before commercial use)",
        loader="dlib.shape_predictor",
        flag="(face alignment)",
        packaged_in=(("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat"),),
    ),
)

_BY_NAME = {w.name: w for w in REGISTRY}
# the published file names (without suffix) are accepted too: users know them from the
# original README (``--stylegan_weights stylegan2-ffhq-config-f``)
_ALIASES = {w.filename.rsplit(".", 1)[0]: w for w in REGISTRY if not w.packaged}

KIND_NAMES = {
    "sam": "a SAM checkpoint",
    "psp": "a pSp encoder",
    "stylegan2": "a StyleGAN2 generator",
    "ir_se50": "an IR-SE-50 face-recognition network",
    "dex": "a DEX age classifier",
    "alexnet": "AlexNet weights",
    "lpips_lin": "LPIPS linear layers",
    "dlib": "a dlib landmark model",
    "curricular_face": "a CurricularFace IR-101 network",
}


def names() -> Tuple[str, ...]:
    return tuple(_BY_NAME)


def names_of_kind(kind: str) -> Tuple[str, ...]:
    return tuple(w.name for w in REGISTRY if w.kind == kind)


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
