"""Faces in photos: dlib detection + 68 landmarks, FFHQ alignment, paste-back masks and seams."""

from .align import AlignedFace, align_face, align_faces, face_quad
from .landmarks import Detection, detect_faces, landmarks_model_path, rank_detections
from .mask import box_mask, face_mask, landmark_mask, landmarks_in_face, seam_ratio
from .paste import match_colour, paste_face
from .prepare import INPUT_SIZE, prepare_faces

__all__ = [
    "INPUT_SIZE",
    "AlignedFace",
    "Detection",
    "align_face",
    "align_faces",
    "box_mask",
    "detect_faces",
    "face_mask",
    "face_quad",
    "landmark_mask",
    "landmarks_in_face",
    "landmarks_model_path",
    "match_colour",
    "paste_face",
    "prepare_faces",
    "rank_detections",
    "seam_ratio",
]
