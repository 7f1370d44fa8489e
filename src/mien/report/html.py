"""`mien report`: one self-contained HTML file (images embedded, no external requests).

For images: each photo annotated, and per face its expression, outcome (known / uncertain /
unknown, blend), a heatmap of what the model relied on, the share of that heatmap per facial
region, a rationale from the AU evidence, and AU intensities drawn on the mesh; a summary per
image. For a video: per person (track) a summary, an expression and valence/arousal timeline,
expression segments with a rationale each, AU events and micro-expression candidates, and a
key frame with its heatmap. Every report ends with "how to read this" and the limits.
"""

from __future__ import annotations

import html
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mien import __version__
from mien.analysis import summarize
from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.expression.compound import named as named_compounds
from mien.explain.face import explain_face
from mien.explain.rationale import rationale
from mien.explain.saliency import overlay
from mien.faces import QUALITY_FLAGS, Faces
from mien.provenance import analysis_provenance, file_sha256, html_block
from mien.report import plots
from mien.report.annotate import annotate, data_uri, encode_image
from mien.wording import counted

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}h3{margin-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.face{display:flex;gap:1rem;align-items:flex-start;border:1px solid #e5e5e5;border-radius:6px;padding:.8rem;margin:.8rem 0}
.face img{border-radius:4px}.why{font-size:.95rem;margin:.3rem 0}.muted{color:#666;font-size:.85rem}
.tag{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;background:#eee;margin-right:.3rem}
.known{background:#d8f0d8}.uncertain{background:#fff0c2}.unknown{background:#f7d4d4}
img.wide{max-width:100%}
"""

HOW_TO_READ = """
<h2>How to read this</h2>
<ul>
<li><b>Expressions are displays, not feelings.</b> A smile is not happiness; context, culture and intent shape faces.
Do not use these numbers to judge individuals (hiring, diagnosis, policing, lie detection).</li>
<li><b>Probabilities</b> are calibrated on held-out data: of faces called happy at 0.8, about 80% are. The
<b>outcome</b> says when not to trust the top class: <span class="tag uncertain">uncertain</span> means a low top
probability or a face that is small, turned away, blurry, covered or without a mesh;
<span class="tag unknown">unknown</span> means the face looks unlike any of the eight classes the model knows.
A <b>blend</b> (e.g. "happily surprised") is named when two expressions are both strong.</li>
<li><b>Heatmaps</b> show where covering the face lowers the model's probability for its answer (occlusion
sensitivity). The region shares compare that with the facial regions where the expression's action units act.
They show what the model used, not what a person would look at.</li>
<li><b>Rationales</b> list measured action-unit estimates (from MediaPipe blendshapes and mesh geometry, not FACS
coding by a person) that support or contradict the call, with the prototypes of Ekman and Friesen as the reference.</li>
<li><b>Valence and arousal</b> are derived from the probabilities and AUs (a circumplex mapping), not measured.
Micro-expression <i>candidates</i> are brief spikes worth a human look, not verified micro-expressions.</li>
</ul>
<h3>Limits</h3>
<ul>
<li>Expression model: 87.3% on FER+ test (majority protocol), about 60% on in-the-wild AffectNet faces with the
balanced prior; contempt and disgust are the weakest classes. Trained on web images of mostly frontal adults.</li>
<li>Faces smaller than about 40 px, strongly turned, blurred or covered give unreliable numbers (see the flags).</li>
<li>How well each model works per age band, gender and race label (UTKFace) is in its model card
(<code>mien card expression</code>); for example, the model predicts "happy" far less often for babies than for adults.</li>
</ul>
"""


def _data_uri(rgb: np.ndarray, max_side: int = 720) -> str:
    return data_uri(encode_image(rgb, max_side))


def _figure_uri(fig) -> str:
    return data_uri(plots.png_bytes(fig), "image/png")


def _img(uri: str, alt: str, width: int | None = None, cls: str = "") -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{size} class="{cls}">'


def _table(frame: pd.DataFrame, digits: int = 2) -> str:
    table = frame.to_html(index=False, float_format=lambda x: f"{x:.{digits}f}", border=0, na_rep="-")
    return f'<div style="overflow-x:auto">{table}</div>'



def _page(title: str, body: list[str], record: dict | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    made = html_block(record) if record is not None else ""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"muted\">mien {__version__}, {stamp}. Everything in this file was "
            "computed offline; it loads nothing from the network.</p>" + made + "\n".join(body) + HOW_TO_READ
            + "</body></html>")


def face_card(analyzer, rgb: np.ndarray, faces: Faces, i: int, label: str,
              custom: dict[str, float] | None = None, calibrated: tuple[str, float] | None = None) -> str:
    """HTML block for one face: heatmap, outcome, probabilities, rationale, AUs on the mesh (and the `custom_<name>`
    readings, and the reading calibrated to the person's rest, when given); `rgb` is the faces' image at any size."""
    if not faces.has_mesh[i] or np.isnan(faces.expression[i]).any():
        return f'<div class="face"><div><h3>{html.escape(label)}</h3><p class="muted">no mesh: no measurements</p></div></div>'
    why = explain_face(analyzer.explainer, rgb, faces, i)
    faces = faces.scaled_to(rgb.shape[:2])
    landmarks = faces.landmarks[i]
    target, probability, full = why.target, why.probability, why.image_heat
    x1, y1, x2, y2 = faces.boxes[i].astype(int)
    pad = int(0.25 * (x2 - x1))
    y0, y3, x0, x3 = max(y1 - pad, 0), min(y2 + pad, rgb.shape[0]), max(x1 - pad, 0), min(x2 + pad, rgb.shape[1])
    face = overlay(rgb[y0:y3, x0:x3], full[y0:y3, x0:x3])
    status = faces.status[i] or "known"
    tags = f'<span class="tag {status}">{status}</span>'
    if faces.blend[i]:
        tags += f'<span class="tag">blend: {html.escape(faces.blend[i])}</span>'
    (compound,), (compound_confidence,) = named_compounds(faces.compound[i:i + 1])
    if compound:
        tags += f'<span class="tag">compound: {html.escape(compound)} {compound_confidence:.2f}</span>'
    if calibrated:
        tags += f'<span class="tag">calibrated to their rest: {html.escape(calibrated[0])} {calibrated[1]:.2f}</span>'
    flags = [name for name, on in zip(QUALITY_FLAGS, faces.flags[i]) if on]
    tags += "".join(f'<span class="tag">{name}</span>' for name in flags)
    probs = " · ".join(f"{c} {faces.expression[i, k]:.2f}" for k, c in sorted(
        enumerate(EXPRESSIONS), key=lambda kc: -faces.expression[i, kc[0]])[:4])
    mesh = _figure_uri(plots.aus_on_mesh(landmarks[:, :2], faces.aus[i]))
    valence, arousal = faces.affect[i]
    if custom:
        strongest = sorted(custom.items(), key=lambda kv: -np.nan_to_num(kv[1]))[:4]
        probs += "; custom: " + html.escape(" · ".join(f"{k.removeprefix('custom_')} {v:.2f}" for k, v in strongest))
    return (f'<div class="face">{_img(_data_uri(face, 240), f"{label} heatmap", 200)}'
            f'<div><h3>{html.escape(label)}: {EXPRESSIONS[target]} ({probability:.2f})</h3><p>{tags}</p>'
            f'<p class="why">{html.escape(why.text)}</p><p class="muted">{probs}; valence {valence:+.2f}, arousal '
            f'{arousal:+.2f} (derived)</p></div>{_img(mesh, f"{label} AUs on the mesh", 190)}</div>')


def image_report(paths: list[Path], out: Path, analyzer, max_faces: int = 60, progress=None, rules=None,
                 reference: pd.DataFrame | None = None) -> list[str]:
    """Write the report for a set of images; returns one line per input that could not be read (and per person of
    `reference` left uncalibrated). `rules` (a `RuleSet`): custom expressions on each face card and their means in
    the summary. `reference` (`mien.expression.neutral.read_references`): each face card also gives the reading
    calibrated to its person's rest."""
    from mien.io.images import ImageError, load_image
    from mien.io.table import faces_to_frame

    body, tables, errors, shown, inputs = [], [], [], 0, []
    owner, rests, neutral_faces, uncalibrated = (_person_rests(reference, analyzer) if reference is not None
                                                 else ({}, {}, {}, []))
    for path in paths:
        try:
            loaded = load_image(path)
        except ImageError as exc:
            errors.append(f"{path}: {exc}")
            continue
        inputs.append({"source": str(path), "sha256": file_sha256(path)})
        resting = neutral_faces.pop(str(Path(path).resolve()), None)  # a neutral photo is analysed once
        faces = analyzer.analyze_loaded(loaded) if resting is None else replace(resting, source=loaded.source)
        rows = faces_to_frame([faces], landmarks="none")
        rows = rules.add_to_frame(rows) if rules is not None else rows
        if rests:
            from mien.expression.neutral import with_rests

            rows["person"] = owner.get(str(Path(path).resolve()))
            rows = with_rests(rows, rests, rules=rules)
        tables.append(rows)
        readings = rows[rows["face_found"]][[c for c in rows.columns if c.startswith("custom_")]]
        section = [f"<h2>{html.escape(Path(path).name)}</h2>",
                   _img(_data_uri(annotate(loaded.rgb, faces)), f"{Path(path).name} annotated",
                        cls="wide")]
        if not len(faces):
            section.append('<p class="muted">no face found</p>')
        for i in range(len(faces)):
            if shown >= max_faces:
                section.append(f'<p class="muted">(face details stop after {max_faces} faces)</p>')
                break
            custom = readings.iloc[i].to_dict() if len(readings.columns) else None
            label = rows["expression_cal"].iloc[i] if "expression_cal" in rows.columns else None
            calibrated = (label, float(rows[f"expr_{label}_cal"].iloc[i])) if isinstance(label, str) else None
            section.append(face_card(analyzer, loaded.rgb, faces, i, f"face #{i}", custom, calibrated))
            shown += 1
        body += section
        if progress is not None:
            progress()
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    head = []
    if len(table) and table["face_found"].any():
        summary = summarize(table, by="source")
        summary["source"] = summary["source"].map(lambda s: Path(s).name)
        keep = ["source", "faces"] + [f"{c}_share" for c in EXPRESSIONS] + ["valence_mean", "arousal_mean"]
        custom = [c for c in table.columns if c.startswith("custom_")]
        if custom:
            means = table[table["face_found"]].groupby("source")[custom].mean()
            means.index = means.index.map(lambda s: Path(s).name)
            summary = summary.join(means.rename(columns=lambda c: c.removeprefix("custom_") + "_mean"), on="source")
            keep += [c.removeprefix("custom_") + "_mean" for c in custom]
        summary = summary.rename(columns=lambda c: c.replace("_share", "").replace("_mean", " (mean)"))
        keep = [k.replace("_share", "").replace("_mean", " (mean)") for k in keep]
        faces_rows = table[table["face_found"]]
        shares = {c: float((faces_rows["expression"] == c).mean()) for c in EXPRESSIONS}
        found = counted(int(table["face_found"].sum()), "face")
        head += ["<h2>Summary</h2>", f"<p>{counted(len(paths), 'image')}, {found}.</p>",
                 _table(summary[keep]), _img(_figure_uri(plots.expression_bars(shares, "top expression of each face")),
                                             "expression shares")]
    if uncalibrated:
        head.append("<h2>People not calibrated</h2><ul>" + "".join(f"<li>{html.escape(e)}</li>" for e in uncalibrated)
                    + "</ul>")
    if errors:
        head.append("<h2>Inputs that could not be read</h2><ul>" + "".join(f"<li>{html.escape(e)}</li>" for e in errors)
                    + "</ul>")
    record = analysis_provenance("report", analyzer.options, inputs,
                                 **({"expressions": rules.provenance()} if rules is not None else {}))
    out.write_text(_page("mien report: images", head + body, record), encoding="utf-8")
    return errors + uncalibrated


def _person_rests(reference: pd.DataFrame, analyzer) -> tuple[dict, dict, dict, list[str]]:
    """For a reference list: each photo's person (by resolved path), each person's rest (`neutral.photo_rests`,
    the rule `mien calibrate` follows), the faces of each neutral photo (by resolved path, for the report to reuse)
    and a line per neutral photo that cannot be read and per person without a rest."""
    from mien.expression.neutral import people_without_rest, photo_rests
    from mien.io.images import ImageError, load_image
    from mien.io.table import faces_to_frame

    analysed, lines = {}, []
    for path in reference.loc[reference["neutral"], "path"].unique():
        try:
            analysed[path] = analyzer.analyze_loaded(load_image(path))
        except ImageError as exc:
            lines.append(f"{path}: {exc}")
    table = faces_to_frame(list(analysed.values()), landmarks="none")
    lines += people_without_rest(table, reference, "reference", hint="")
    return dict(zip(reference["path"], reference["person"])), photo_rests(table, reference), analysed, lines


def video_report(source: str, out: Path, options=None, max_tracks: int = 12, rules=None) -> Path:
    """Analyse a video and write its report; returns `out`. `rules` (a `RuleSet`): custom expressions, a lane of
    their own under each person's timeline and their means in the people table."""
    from mien.analyzer import Analyzer
    from mien.video.reader import open_video
    from mien.options import video_options
    from mien.video.run import analyze_video, video_provenance
    from mien.video.timeline import events, expression_segments, track_summary

    options = options or video_options()
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.parquet"
        with open_video(source) as reader:
            info = reader.info
            run = analyze_video(reader, rows, options, timelines=False, rules=rules)
            record = video_provenance(reader, options, "none", rules)
        table = pd.read_parquet(rows) if run.rows else pd.DataFrame(columns=["track_id", "face_found"])
    faces_rows = table[table["face_found"]]
    body = [f"<h2>Video</h2><p>{html.escape(str(source))}: {info.width}x{info.height}, {info.fps:.2f} fps, "
            f"{counted(run.frames, 'frame')} analysed in {run.seconds:.1f} s; "
            f"{counted(faces_rows['track_id'].nunique(), 'person', 'people')} tracked.</p>"]
    if faces_rows.empty:
        body.append('<p class="muted">no face found</p>')
        out.write_text(_page("mien report: video", body, record), encoding="utf-8")
        return out
    summary = track_summary(faces_rows)
    segments = expression_segments(faces_rows)
    found = events(faces_rows)
    keep = ["track_id", "first_s", "last_s", "frames"] + [f"{c}_share" for c in EXPRESSIONS] + ["valence_mean", "arousal_mean"]
    custom = [c for c in faces_rows.columns if c.startswith("custom_")]
    people = summary[keep].copy()
    if custom:  # mean reading of each custom expression per person
        means = faces_rows.groupby("track_id")[custom].mean()
        people = people.join(means.rename(columns=lambda c: c.removeprefix("custom_") + " (mean)"), on="track_id")
    body += ["<h2>People</h2><p class=\"muted\">share of frames in each expression; derived valence/arousal"
             + ("; mean reading of each custom expression" if custom else "") + "</p>",
             _table(people.rename(columns=lambda c: c.replace("_share", "").replace("_mean", " (mean)")))]
    longest = faces_rows.groupby("track_id").size().sort_values(ascending=False).index[:max_tracks]
    keyframes = {}
    for track_id in longest:
        track = faces_rows[faces_rows["track_id"] == track_id].sort_values("time_s")
        apex = track.loc[track["expression_confidence"].idxmax()]
        keyframes[int(track_id)] = int(apex["frame"])
    frames = _frames(source, set(keyframes.values()))
    with Analyzer(options.analyzer) as analyzer:
        for track_id in longest:
            track = faces_rows[faces_rows["track_id"] == track_id].sort_values("time_s")
            body.append(f"<h2>Person {int(track_id)}</h2>")
            body.append(_img(_figure_uri(plots.timeline(track, list(EXPRESSIONS), f"person {int(track_id)}")),
                             f"timeline of person {track_id}", cls="wide"))
            if custom:
                lane = plots.lines(track, custom, f"person {int(track_id)}: custom expressions", "probability")
                body.append(_img(_figure_uri(lane), f"custom expressions of person {track_id}", cls="wide"))
            body.append(_segments_html(segments[segments["track_id"] == track_id], track))
            micro = found[(found["track_id"] == track_id)]
            if len(micro):
                body.append("<h3>Events (against this person's calmest 2 s)</h3>"
                            + _table(micro.drop(columns=["track_id"]).head(30)))
            frame_index = keyframes[int(track_id)]
            if frame_index in frames:
                rgb = frames[frame_index]
                faces = analyzer.analyze(rgb)
                box = track[track["frame"] == frame_index][["box_x", "box_y", "box_w", "box_h"]].to_numpy()[0]
                i = _nearest_face(faces, box)
                if i is not None:
                    body.append(f"<h3>Key frame {frame_index} (most confident moment)</h3>")
                    body.append(_img(_data_uri(annotate(rgb, faces)), f"key frame {frame_index}", cls="wide"))
                    body.append(face_card(analyzer, rgb, faces, i, f"person {int(track_id)}"))
    out.write_text(_page("mien report: video", body, record), encoding="utf-8")
    return out


def _segments_html(segments: pd.DataFrame, track: pd.DataFrame) -> str:
    if segments.empty:
        return ""
    rows = []
    for _, seg in segments.iterrows():
        inside = track[(track["time_s"] >= seg["start_s"]) & (track["time_s"] < seg["end_s"])]
        aus = inside[list(AU_NAMES)].mean().to_numpy()
        why = rationale(seg["expression"], float(seg["mean_confidence"]), aus)
        rows.append(f"<tr><td>{seg['start_s']:.1f}-{seg['end_s']:.1f} s</td><td>{html.escape(seg['expression'])}</td>"
                    f"<td style=\"text-align:left\">{html.escape(why)}</td></tr>")
    return ("<h3>Expression segments</h3><table><tr><th>time</th><th>expression</th><th>why (mean AUs over the segment)</th></tr>"
            + "".join(rows[:40]) + "</table>")


def _frames(source: str, wanted: set[int]) -> dict[int, np.ndarray]:
    from mien.video.reader import open_video

    found = {}
    with open_video(source) as reader:
        for frame in reader:
            if frame.index in wanted:
                found[frame.index] = frame.rgb
            if len(found) == len(wanted) or frame.index > max(wanted, default=-1):
                break
    return found


def _nearest_face(faces: Faces, box_xywh: np.ndarray) -> int | None:
    if not len(faces):
        return None
    centre = box_xywh[:2] + box_xywh[2:] / 2
    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    return int(np.argmin(((centres - centre) ** 2).sum(1)))
