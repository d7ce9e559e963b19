"""Video: age the people in a clip, steadily, with the sound kept (``sam-age video``).

- :mod:`.io`: probing, streaming decode and H.264 encode through imageio-ffmpeg's ffmpeg;
- :mod:`.track`: faces followed across frames (one track per person, gaps bridged);
- :mod:`.smooth`: temporal smoothing of landmarks and codes, and the steadiness measure;
- :mod:`.ager`: :class:`VideoAger`, the three streaming passes with a resumable cache.
"""

from .ager import VideoAger, VideoJob, VideoResult, output_names, track_clip
from .io import VideoInfo, probe_video

__all__ = ["VideoAger", "VideoInfo", "VideoJob", "VideoResult", "output_names", "probe_video", "track_clip"]
