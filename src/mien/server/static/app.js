"use strict";
// mien web page: upload photos/videos, show results, webcam mode. No external requests.

const EXPRESSIONS = ["neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt"];
const COLOURS = {neutral: "#8a8f98", happy: "#e5a50a", surprise: "#ff7800", sad: "#1c71d8",
                 anger: "#c01c28", disgust: "#2ec27e", fear: "#813d9c", contempt: "#865e3c"};
const AUS = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
             "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43", "AU45"];
const $ = (id) => document.getElementById(id);
const state = {auth: false, socket: null, stream: null};

function headers() {
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem("mien-key", key);
  return key ? {"X-API-Key": key} : {};
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {...headers(), ...(options.headers || {})}});
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return response;
}

async function init() {
  const health = await (await fetch("/api/health")).json();
  state.auth = health.auth;
  $("key-row").hidden = !health.auth;
  $("api-key").value = localStorage.getItem("mien-key") || "";
  $("limits").textContent = `images or videos up to ${health.limits.max_upload_mb} MiB, videos up to ${health.limits.max_video_s} s`;
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); handleFiles([...e.dataTransfer.files]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); } });
  $("file-input").addEventListener("change", (e) => { handleFiles([...e.target.files]); e.target.value = ""; });
  $("webcam-button").addEventListener("click", startWebcam);
  $("webcam-stop").addEventListener("click", stopWebcam);
  $("webcam-calibrate").addEventListener("click", () => { state.calibrate = true; });
}

async function handleFiles(files) {
  if (!files.length) return;
  $("results").hidden = true;
  $("result-body").replaceChildren();
  $("downloads").replaceChildren();
  const started = performance.now();
  try {
    const single = files.length === 1 && !files[0].type.startsWith("video/");
    if (single) await analyseImage(files[0], started); else await submitJob(files);
  } catch (error) {
    setStatus(error.message, true);
    $("progress").hidden = true;
  }
}

async function analyseImage(file, started) {
  setStatus(`Analysing ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  const explain = $("explain").checked;
  const result = await (await api(`/api/images?store=true&explain=${explain}`, {method: "POST", body: form})).json();
  showResults();
  $("result-body").append(imageResult(result.source, result.rows, result.annotated, result.heatmap));
  addDownloads(result.job);
  const faces = result.rows.filter((r) => r.face_found).length;
  const ms = Math.round(performance.now() - started);
  document.body.dataset.resultMs = ms;
  setStatus(`${faces} face${faces === 1 ? "" : "s"} in ${file.name} (${ms} ms)`);
}

async function submitJob(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file);
  form.append("explain", $("explain").checked);
  setStatus(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
  let job = await (await api("/api/jobs", {method: "POST", body: form})).json();
  $("progress").hidden = false;
  while (job.status === "queued" || job.status === "running") {
    $("progress").value = job.progress;
    setStatus(`Job ${job.id.slice(0, 8)}: ${job.status} ${job.message || ""} (${Math.round(job.progress * 100)}%)`);
    await new Promise((r) => setTimeout(r, 500));
    job = await (await api(`/api/jobs/${job.id}`)).json();
  }
  $("progress").hidden = true;
  if (job.status !== "done") throw new Error(`job ${job.status}: ${job.error || job.message || ""}`);
  showResults();
  addDownloads(job.id, job.files.filter((f) => f.endsWith(".csv")));
  if (job.kind === "video") await showVideo(job); else await showImages(job);
  const problems = job.errors.length ? `; problems: ${job.errors.join("; ")}` : "";
  setStatus(`Job ${job.id.slice(0, 8)} done: ${job.rows} rows${problems}`, job.errors.length > 0);
}

function showResults() { $("results").hidden = false; }

async function fileUrl(jobId, name) {
  const blob = await (await api(`/api/jobs/${jobId}/files/${encodeURIComponent(name)}`)).blob();
  return URL.createObjectURL(blob);
}

function addDownloads(jobId, extra = []) {
  if (!jobId) return;
  const box = $("downloads");
  const links = [["CSV", `/api/jobs/${jobId}/results?format=csv`, `mien-${jobId}.csv`],
                 ["Parquet", `/api/jobs/${jobId}/results?format=parquet`, `mien-${jobId}.parquet`],
                 ["JSON", `/api/jobs/${jobId}/results?format=json`, `mien-${jobId}.json`]];
  for (const name of extra) links.push([name, `/api/jobs/${jobId}/files/${name}`, name]);
  for (const [label, url, filename] of links) {
    const button = el("button", {type: "button", class: "download", text: `Download ${label}`});
    button.addEventListener("click", async () => {
      const blob = await (await api(url)).blob();
      const link = el("a", {href: URL.createObjectURL(blob), download: filename});
      link.click();
    });
    box.append(button, " ");
  }
}

function imageResult(source, rows, annotated, heatmap) {
  const img = el("img", {src: annotated, alt: `${source} with faces marked`, class: "annotated"});
  const figure = el("figure", {}, img, el("figcaption", {class: "muted", text: source}));
  if (heatmap) {
    const toggle = el("button", {type: "button", "aria-pressed": "false", class: "heatmap-toggle", text: "Show heatmap"});
    toggle.addEventListener("click", () => {
      const on = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(on));
      toggle.textContent = on ? "Show annotations" : "Show heatmap";
      img.src = on ? heatmap : annotated;
      img.alt = on ? `${source} with the model's heatmap` : `${source} with faces marked`;
    });
    figure.append(toggle);
  }
  const cards = el("div", {class: "faces"});
  const found = rows.filter((r) => r.face_found);
  if (!found.length) cards.append(el("p", {text: "No face found."}));
  for (const row of found) cards.append(faceCard(row));
  return el("div", {class: "image-result"}, figure, cards);
}

function bars(entries, colour) {
  const box = el("div", {class: "bars", role: "list"});
  for (const [label, value] of entries) {
    const fill = el("i");
    fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
    fill.style.background = colour(label);
    box.append(el("span", {text: label}), el("span", {class: "bar", role: "listitem", "aria-label": `${label} ${value.toFixed(2)}`}, fill),
               el("span", {text: value.toFixed(2)}));
  }
  return box;
}

function faceCard(row) {
  const card = el("article", {class: "face-card"});
  const title = row.expression ? `Face #${row.face_id}: ${row.expression} ${row.expression_confidence.toFixed(2)}`
                               : `Face #${row.face_id}: no measurement`;
  card.append(el("h3", {text: title}));
  const tags = el("p");
  if (row.expression_status) tags.append(el("span", {class: `tag ${row.expression_status}`, text: row.expression_status}));
  if (row.expression_blend) tags.append(el("span", {class: "tag", text: `blend: ${row.expression_blend}`}));
  if (row.compound) tags.append(el("span", {class: "tag", text: `compound: ${row.compound} ${row.compound_confidence.toFixed(2)}`}));
  for (const [k, v] of Object.entries(row)) if (k.startsWith("flag_") && v) tags.append(el("span", {class: "tag", text: k.slice(5)}));
  card.append(tags);
  if (!row.expression) return card;
  card.append(el("h4", {text: "Expression"}),
              bars(EXPRESSIONS.map((e) => [e, row[`expr_${e}`] ?? 0]), (e) => COLOURS[e]));
  if (row.rationale) card.append(el("p", {class: "rationale", text: row.rationale}));
  const aus = AUS.map((a) => [a, row[a] ?? 0]).sort((a, b) => b[1] - a[1]).slice(0, 8);
  card.append(el("h4", {text: "Strongest action units"}), bars(aus, () => "#1a5fb4"));
  const custom = customReadings(row, false).slice(0, 6);
  if (custom.length) card.append(el("h4", {text: "Custom expressions"}), bars(custom, () => "#613583"));
  card.append(el("p", {class: "muted", text: `valence ${fmt(row.valence)}, arousal ${fmt(row.arousal)}; ` +
    `head yaw ${fmt(row.pose_yaw, 0)}°, pitch ${fmt(row.pose_pitch, 0)}°, roll ${fmt(row.pose_roll, 0)}°`}));
  return card;
}

// The server's custom expressions (mien serve --expressions) of one row, strongest first: [name, value] pairs
// from custom_<name>, or from custom_<name>_cal once the face is calibrated.
function customReadings(row, calibrated) {
  const pattern = calibrated ? /^custom_(.+)_cal$/ : /^custom_(.+)$/;
  return Object.keys(row).filter((k) => pattern.test(k) && (calibrated || !k.endsWith("_cal")) && row[k] != null)
    .map((k) => [k.match(pattern)[1], row[k]]).sort((a, b) => b[1] - a[1]);
}

function fmt(value, digits = 2) { return value == null ? "–" : (value >= 0 ? "+" : "") + value.toFixed(digits); }

async function showImages(job) {
  const rows = await (await api(`/api/jobs/${job.id}/results?format=json`)).json();
  for (const [k, item] of job.inputs.entries()) {
    const name = `annotated_${String(k).padStart(4, "0")}.jpg`;
    if (!job.files.includes(name)) continue;
    const heatName = name.replace("annotated", "heatmap");
    const heat = job.files.includes(heatName) ? await fileUrl(job.id, heatName) : null;
    const own = rows.filter((r) => r.source === item.name);
    $("result-body").append(imageResult(item.name, own, await fileUrl(job.id, name), heat));
  }
}

async function showVideo(job) {
  const data = await (await api(`/api/jobs/${job.id}/timeline`)).json();
  const body = $("result-body");
  body.append(el("h3", {text: "Expressions over time, per person"}), timelineSvg(data));
  const legend = el("p", {class: "legend"});
  for (const e of EXPRESSIONS) {
    const swatch = el("span", {class: "tag", text: e});
    swatch.style.borderLeft = `12px solid ${COLOURS[e]}`;
    legend.append(swatch);
  }
  body.append(legend);
  if (Object.keys(data.curves || {}).length) body.append(el("h3", {text: "Valence over time, per person"}), curvesSvg(data.curves));
  const table = el("table", {class: "tracks"});
  table.append(el("tr", {}, ...["person", "from (s)", "to (s)", "frames", "most shown", "valence", "arousal"].map((h) => el("th", {text: h}))));
  for (const t of data.tracks) {
    const top = EXPRESSIONS.reduce((a, b) => ((t[`${b}_share`] || 0) > (t[`${a}_share`] || 0) ? b : a));
    table.append(el("tr", {}, ...[`#${t.track_id}`, t.first_s.toFixed(1), t.last_s.toFixed(1), t.frames,
      `${top} (${Math.round(100 * t[`${top}_share`])}%)`, fmt(t.valence_mean), fmt(t.arousal_mean)].map((v) => el("td", {text: String(v)}))));
  }
  body.append(el("h3", {text: "People"}), table);
}

function timelineSvg(data) {
  const ns = "http://www.w3.org/2000/svg";
  const tracks = [...new Set(data.segments.map((s) => s.track_id))].sort((a, b) => a - b);
  const end = Math.max(1e-6, ...data.segments.map((s) => s.end_s));
  const width = 900, rowH = 26, left = 110, height = tracks.length * rowH + 30;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `expression timeline of ${tracks.length} people over ${end.toFixed(1)} s`);
  const x = (t) => left + (t / end) * (width - left - 10);
  tracks.forEach((track, row) => {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4); label.setAttribute("y", row * rowH + 18); label.setAttribute("font-size", "14");
    label.textContent = `person #${track}`;
    svg.append(label);
    for (const s of data.segments.filter((seg) => seg.track_id === track)) {
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", x(s.start_s)); rect.setAttribute("y", row * rowH + 4);
      rect.setAttribute("width", Math.max(1, x(s.end_s) - x(s.start_s))); rect.setAttribute("height", rowH - 8);
      rect.setAttribute("fill", COLOURS[s.expression] || "#999");
      rect.setAttribute("class", "segment");
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${s.expression} ${s.start_s.toFixed(1)}–${s.end_s.toFixed(1)} s`;
      rect.append(tip); svg.append(rect);
    }
  });
  const axis = document.createElementNS(ns, "text");
  axis.setAttribute("x", left); axis.setAttribute("y", height - 6); axis.setAttribute("font-size", "13");
  axis.textContent = `0 s … ${end.toFixed(1)} s`;
  svg.append(axis);
  return el("div", {class: "timeline"}, svg);
}

function curvesSvg(curves) {
  const ns = "http://www.w3.org/2000/svg";
  const tracks = Object.keys(curves).sort((a, b) => a - b);
  const end = Math.max(1e-6, ...tracks.map((t) => curves[t].time_s[curves[t].time_s.length - 1] || 0));
  const width = 900, rowH = 70, left = 110, height = tracks.length * rowH + 10;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "valence (-1 to +1) over time for each person; the dashed line is 0");
  const x = (t) => left + (t / end) * (width - left - 10);
  tracks.forEach((track, row) => {
    const top = row * rowH + 5, mid = top + (rowH - 10) / 2, scale = (rowH - 10) / 2;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4); label.setAttribute("y", mid + 5); label.setAttribute("font-size", "14");
    label.textContent = `person #${track}`;
    const zero = document.createElementNS(ns, "line");
    zero.setAttribute("x1", left); zero.setAttribute("x2", width - 10); zero.setAttribute("y1", mid); zero.setAttribute("y2", mid);
    zero.setAttribute("stroke", "#bbb"); zero.setAttribute("stroke-dasharray", "4 4");
    const line = document.createElementNS(ns, "polyline");
    const c = curves[track];
    line.setAttribute("points", c.time_s.map((t, i) => `${x(t).toFixed(1)},${(mid - c.valence[i] * scale).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#1a5fb4"); line.setAttribute("stroke-width", "2");
    line.setAttribute("class", "valence-curve");
    svg.append(label, zero, line);
  });
  return el("div", {class: "timeline"}, svg);
}

async function startWebcam() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  } catch (error) {
    setStatus(`Camera not available: ${error.message}`, true);
    return;
  }
  $("webcam").hidden = false;
  const video = $("camera");
  video.srcObject = state.stream;
  await video.play();
  const key = $("api-key").value.trim();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live${key ? `?key=${encodeURIComponent(key)}` : ""}`;
  const canvas = $("live-canvas"), ctx = canvas.getContext("2d");
  const grab = document.createElement("canvas");
  let frames = 0, since = performance.now(), reconnects = 0;
  const connect = () => {
    const socket = new WebSocket(url);
    state.socket = socket;
    const send = () => {
      if (state.socket !== socket) return;
      if (socket.readyState !== WebSocket.OPEN || !video.videoWidth) { setTimeout(send, 50); return; }
      grab.width = video.videoWidth; grab.height = video.videoHeight;
      grab.getContext("2d").drawImage(video, 0, 0);
      if (state.calibrate) { socket.send(JSON.stringify({calibrate: 3})); state.calibrate = false; }
      grab.toBlob((blob) => socket.send(blob), "image/jpeg", 0.8);
    };
    socket.addEventListener("open", send);
    socket.addEventListener("close", (e) => {
      if (state.socket !== socket) return;  // stopped by the user
      // A dropped connection (network, server restart) is reopened; a refusal (key, limits, bad frame) is not.
      if ([1000, 1003, 1007, 1008, 1009].includes(e.code) || reconnects >= 20) {
        setStatus(`Webcam session ended ${e.reason || ""}`, e.code !== 1000);
        return;
      }
      reconnects += 1;
      document.body.dataset.liveReconnects = reconnects;
      setStatus(`Webcam connection lost (${e.code}); reconnecting...`);
      setTimeout(() => { if (state.socket === socket) connect(); }, Math.min(5000, 500 * reconnects));
    });
    socket.addEventListener("message", (event) => {
      const result = JSON.parse(event.data);
      canvas.width = grab.width; canvas.height = grab.height;
      ctx.drawImage(grab, 0, 0);
      if (!result.error) drawLive(ctx, result);
      frames += 1;
      const seconds = (performance.now() - since) / 1000;
      $("live-stats").textContent = `${(frames / seconds).toFixed(1)} fps, ${result.ms} ms on the server`;
      document.body.dataset.liveFrames = frames;
      showCalibration(result.calibration);
      send();
    });
  };
  connect();
}

function showCalibration(calibration) {
  const text = !calibration ? "" : calibration.state === "collecting"
    ? `calibrating: keep a neutral face (${Math.max(0, calibration.remaining_s).toFixed(1)} s)`
    : `calibrated: face ${calibration.tracks.map((t) => `#${t}`).join(", ")} (readings marked "cal")`;
  $("live-calibration").textContent = text;
  document.body.dataset.liveCalibration = calibration ? calibration.state : "";
}

// A live face is a table row (as in the files and the REST API): box_x/y/w/h, and the smoothed
// columns (*_smooth) that the video pipeline adds, preferred for display; after calibration, the calibrated
// reading (*_cal) of the person's own rest.
function liveView(face) {
  if (face.expression_cal) {
    // relative to the person's rest: only the AUs that rose above it
    const aus = Object.keys(face).filter((k) => /^AU\d\d_cal$/.test(k) && (face[k] ?? 0) > 0.05)
      .map((k) => [k.slice(0, 4), face[k]]);
    return {expression: face.expression_cal, confidence: face[`expr_${face.expression_cal}_cal`] ?? 0, aus, calibrated: true};
  }
  const expression = face.expression_smooth ?? face.expression;
  const confidence = expression ? (face[`expr_${expression}_smooth`] ?? face.expression_confidence ?? 0) : 0;
  const aus = Object.keys(face).filter((k) => /^AU\d\d$/.test(k))
    .map((au) => [au, face[`${au}_smooth`] ?? face[au] ?? 0]);
  return {expression, confidence, aus, calibrated: false};
}

function drawLive(ctx, result) {
  const list = el("ul");
  ctx.lineWidth = 3; ctx.font = "16px system-ui, sans-serif";
  for (const face of result.faces) {
    const x1 = face.box_x, y1 = face.box_y, x2 = face.box_x + face.box_w;
    const view = liveView(face);
    const colour = COLOURS[view.expression] || "#3a3";
    ctx.strokeStyle = colour; ctx.strokeRect(x1, y1, face.box_w, face.box_h);
    const label = view.expression
      ? `#${face.track_id} ${view.expression} ${view.confidence.toFixed(2)}${view.calibrated ? " (cal)" : ""}`
      : `#${face.track_id}`;
    ctx.fillStyle = colour; ctx.fillText(label, x1, Math.max(16, y1 - 6));
    if (view.aus.length) {
      const top = view.aus.sort((a, b) => b[1] - a[1]).slice(0, 4);
      top.forEach(([au, v], k) => {
        ctx.fillStyle = "#222"; ctx.fillRect(x2 + 4, y1 + k * 14, 60, 10);
        ctx.fillStyle = "#3584e4"; ctx.fillRect(x2 + 4, y1 + k * 14, 60 * v, 10);
        ctx.fillStyle = "#fff"; ctx.fillText(au, x2 + 68, y1 + k * 14 + 10);
      });
    }
    const [custom] = customReadings(face, view.calibrated);
    const strongest = custom && custom[1] >= 0.5 ? ` · ${custom[0]} ${custom[1].toFixed(2)}` : "";
    list.append(el("li", {class: "live-face", text: label + strongest}));
  }
  $("live-faces").replaceChildren(list);
}

function stopWebcam() {
  if (state.socket) { const s = state.socket; state.socket = null; s.close(); }
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  $("webcam").hidden = true;
}

document.addEventListener("DOMContentLoaded", () => init().catch((e) => setStatus(e.message, true)));
