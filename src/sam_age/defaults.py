"""Defaults that several floors share, written once (floor 1: no imports).

Commands, the Python API, the web demo and evaluation read these names rather than
repeating the numbers, so a default changes in one place.
"""

DEFAULT_CHECKPOINT = "sam_ffhq_aging"  # the registry name every ``--checkpoint`` defaults to
DEFAULT_AGES = "0:100:10"  # 0, 10, ..., 100: the original inference script's ages
DEFAULT_VIDEO_CRF = 8  # H.264 quality of `sam-age video`: near-lossless, the untouched background >= 40 dB
DEFAULT_VIDEO_AGE = 70.0  # `sam-age video` without --age/--ages/--age-ramp

# `sam-age serve` (the web demo and the HTTP API): the bounds on what one request may ask
DEFAULT_MAX_UPLOAD_MB = 20.0  # bytes per upload
DEFAULT_MAX_PIXELS = 40_000_000  # pixels per upload (40 MP: any phone photo; 120 MB decoded)
DEFAULT_MAX_FACES = 8  # faces aged per photo with all faces (best first)
DEFAULT_MAX_QUEUE = 16  # requests waiting for or in the model; one more is told to retry
DEFAULT_WAIT_MS = 5.0  # how long the model waits to batch other requests' faces
