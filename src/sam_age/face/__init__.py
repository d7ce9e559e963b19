"""Faces in photos: dlib detection + 68 landmarks, FFHQ alignment, paste-back."""
from .align import AlignedFace, align_face, align_faces, face_quad
from .landmarks import Detection, detect_faces, landmarks_model_path, rank_detections
from .paste import face_mask, paste_face

__all__ = ["AlignedFace", "Detection", "align_face", "align_faces", "detect_faces", "face_mask",
           "face_quad", "landmarks_model_path", "paste_face", "rank_detections"]
