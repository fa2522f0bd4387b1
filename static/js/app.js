// The drawing page: a canvas drawn with pointer events, predictions and corrections
// through the REST API, and the fine-tune that follows a correction.

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const penWidth = document.getElementById("pen-width");
const penWidthValue = document.getElementById("pen-width-value");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const modelVersion = document.getElementById("model-version");
const modeSwitch = document.getElementById("mode");
const predictButton = document.getElementById("predict");
const board = document.querySelector(".board");

const CSS_SIZE = 280;
const strokes = []; // [{width, points: [[x, y, t], ...]}], in CSS pixels
let startedAt = null;
let current = null;
let prediction = null; // the shown answer of POST /api/predictions/, while it is about this drawing
let predictionMode = "all"; // the mode (Any, Digits, Letters) that answer was restricted to
let pollTimer = null;
let predicting = false; // a POST /api/predictions/ is in flight
let askedWhilePredicting = false; // Recognize was pressed again meanwhile
let drawingRevision = 0; // bumped whenever the drawing changes, to drop stale answers

// --- Canvas ---------------------------------------------------------------

function setUpCanvas() {
  // A backing store at device resolution keeps strokes crisp on high-DPI screens.
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(CSS_SIZE * ratio);
  canvas.height = Math.round(CSS_SIZE * ratio);
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  redraw();
}

function redraw() {
  context.save();
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#ffffff"; // what is sent is always black ink on white paper
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.restore();
  for (const stroke of strokes) drawStroke(stroke);
}

function drawStroke(stroke) {
  const points = stroke.points;
  context.strokeStyle = "#000000";
  context.fillStyle = "#000000";
  context.lineWidth = stroke.width;
  context.lineCap = "round";
  context.lineJoin = "round";
  if (points.length === 1) {
    context.beginPath();
    context.arc(points[0][0], points[0][1], stroke.width / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.beginPath();
  context.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) context.lineTo(x, y);
  context.stroke();
}

function pointFrom(event) {
  const box = canvas.getBoundingClientRect();
  if (startedAt === null) startedAt = event.timeStamp;
  return [
    Math.round(((event.clientX - box.left) * CSS_SIZE) / box.width * 10) / 10,
    Math.round(((event.clientY - box.top) * CSS_SIZE) / box.height * 10) / 10,
    Math.round(event.timeStamp - startedAt),
  ];
}

// A changed drawing is no longer the sample the shown answer is about.
function drawingChanged() {
  drawingRevision += 1;
  markStale();
}

// The shown answer no longer counts: no button or key may label its sample. It keeps
// its place, dimmed, so that the page does not move under a finger that starts a stroke.
function markStale() {
  prediction = null;
  if (result.hidden) return;
  // An inert panel drops the focus to <body>: a keyboard user goes on at the canvas.
  if (result.contains(document.activeElement)) canvas.focus({ preventScroll: true });
  result.inert = true;
  result.classList.add("stale");
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  canvas.setPointerCapture(event.pointerId);
  drawingChanged();
  current = { width: Number(penWidth.value), points: [pointFrom(event)] };
  strokes.push(current);
  redraw();
  event.preventDefault();
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) current.points.push(pointFrom(each));
  redraw();
});

for (const name of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(name, () => {
    current = null;
  });
}

function undo() {
  if (!strokes.length) return;
  strokes.pop();
  drawingChanged();
  if (!strokes.length) startedAt = null;
  redraw();
}

function clearAll() {
  drawingChanged();
  strokes.length = 0;
  startedAt = null;
  say("");
  redraw();
}

// --- API ------------------------------------------------------------------

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function apiError(message, code) {
  const error = new Error(message);
  error.code = code;
  return error;
}

// Errors carry a message for people: a network failure or a server fault in plain
// words, and for a request the API refused (4xx) the API's own reason.
async function api(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        ...(method === "GET" ? {} : { "X-CSRFToken": csrfToken() }),
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw apiError("Couldn't reach the server. Check your connection and try again.", "network");
  }
  if (response.status === 429) {
    const wait = Number(response.headers.get("Retry-After"));
    throw apiError(`Too many requests. Try again in ${wait > 0 ? `${wait} s` : "a minute"}.`, "throttled");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const reason = data && data.error ? data.error : null;
    if (response.status >= 500) {
      throw apiError("The server had a problem. Please try again.", reason ? reason.code : "server_error");
    }
    if (reason && reason.message) throw apiError(reason.message, reason.code);
    throw apiError(`The request was refused (error ${response.status}). Please try again.`, "http_error");
  }
  return data;
}

function say(message, tone = "") {
  statusLine.textContent = message;
  statusLine.dataset.tone = tone;
}

// On a phone the canvas and the answer do not fit on one screen: each step brings the
// part the user needs next into view, and leaves the page alone where it already shows.
function bringIntoView(element) {
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  element.scrollIntoView({ block: "nearest", behavior: still ? "auto" : "smooth" });
}

async function showActiveVersion() {
  try {
    const version = await api("GET", "/api/model-versions/active/");
    modelVersion.textContent = `v${version.number}`;
  } catch {
    modelVersion.textContent = "none yet";
  }
  return modelVersion.textContent;
}

// --- Predicting -----------------------------------------------------------

// Whether the shown answer is about this drawing, in the mode chosen now.
function answerIsCurrent() {
  return prediction !== null && predictionMode === currentMode();
}

async function predict() {
  if (answerIsCurrent()) {
    // One drawing, one sample: asking again would store the same drawing twice.
    say("Already recognized: the answer is shown.");
    bringIntoView(result);
    result.focus({ preventScroll: true });
    return;
  }
  if (predicting) {
    // One drawing, one sample: a double click sends it once. A press after the drawing
    // changed is answered when this request returns (below).
    askedWhilePredicting = true;
    return;
  }
  predicting = true;
  askedWhilePredicting = false;
  const hadFocus = document.activeElement === predictButton;
  predictButton.disabled = true;
  stopPolling();
  markStale(); // an answer in another mode is being replaced
  say("Recognizing…");
  const revision = drawingRevision;
  const image = canvas.toDataURL("image/png");
  const sentStrokes = strokes.map((stroke) => stroke.points);
  const mode = currentMode();
  let answer = null;
  let failure = null;
  try {
    answer = await api("POST", "/api/predictions/", {
      image,
      strokes: sentStrokes.length ? sentStrokes : null,
      source: "page",
      classes: mode,
    });
  } catch (error) {
    failure = error;
  } finally {
    predicting = false;
    predictButton.disabled = false;
    // A disabled button loses the focus: give it back to a keyboard user.
    if (hadFocus && (!document.activeElement || document.activeElement === document.body)) {
      predictButton.focus();
    }
  }
  if (revision !== drawingRevision || mode !== currentMode()) {
    say(""); // the drawing or the mode changed meanwhile: this answer is about neither
    if (askedWhilePredicting && strokes.length) predict();
    return;
  }
  if (failure) {
    say(failure.message, "error");
    return;
  }
  prediction = answer;
  predictionMode = mode;
  showPrediction(prediction);
  say("");
  bringIntoView(result);
}

function showPrediction(answer) {
  document.getElementById("guess-label").textContent = answer.label;
  document.getElementById("guess-confidence").textContent = `${(answer.confidence * 100).toFixed(1)}%`;
  document.getElementById("preview").src = answer.preview;
  modelVersion.textContent = `v${answer.model_version}`;
  const bars = document.getElementById("top");
  bars.replaceChildren(
    ...answer.top.map(({ label, probability }) => {
      const item = document.createElement("li");
      item.className = "bar";
      const name = document.createElement("span");
      name.className = "bar-label";
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "bar-track";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${Math.max(probability * 100, 0.5)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = `${(probability * 100).toFixed(1)}%`;
      item.append(name, track, value);
      return item;
    }),
  );
  for (const button of document.querySelectorAll(".label-button")) {
    button.classList.toggle("predicted", button.dataset.label === answer.label);
    button.setAttribute("aria-pressed", "false");
    // The answer was restricted to the mode's labels: so is its correction.
    button.hidden = !labelOffered(button.dataset.label);
  }
  document.getElementById("personal-badge").hidden = !answer.personal;
  showLookalikes(answer.lookalikes, answer.personal);
  result.hidden = false;
  result.inert = false;
  result.classList.remove("stale");
}

// --- Context and look-alikes ----------------------------------------------

const MODE_KEY = "recognizer.classes";

function currentMode() {
  return modeSwitch.querySelector("input:checked").value;
}

const MODE_LABELS = { digits: /^[0-9]$/, letters: /^[a-z]$/, all: /^[0-9a-z]$/ };

// Whether the shown answer can be corrected to ``label``: the labels of the mode it
// was predicted in (Digits: 0-9, Letters: a-z, Any: both).
function labelOffered(label) {
  return (MODE_LABELS[predictionMode] || MODE_LABELS.all).test(label);
}

function restoreMode() {
  const saved = localStorage.getItem(MODE_KEY);
  const input = saved && modeSwitch.querySelector(`input[value="${CSS.escape(saved)}"]`);
  if (input) input.checked = true;
}

// Two close guesses of one shape (0 or o?), or a guess this writer corrected to
// something else before, are asked about instead of one confident guess.
function showLookalikes(labels, personal) {
  const asking = labels.length > 1;
  document.getElementById("lookalikes").hidden = !asking;
  // While the page asks "0 or o?", "Right" would silently pick the top guess.
  document.getElementById("confirm-row").hidden = asking;
  document.getElementById("pick-row").hidden = !asking;
  document.getElementById("lookalike-personal").hidden = !personal;
  document.getElementById("guess-main").hidden = asking;
  if (!asking) return;
  document.getElementById("lookalike-question").textContent =
    `${labels.slice(0, -1).join(", ")} or ${labels[labels.length - 1]}?`;
  document.getElementById("lookalike-buttons").replaceChildren(
    ...labels.map((label) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "lookalike-button";
      button.dataset.label = label;
      button.textContent = label;
      return button;
    }),
  );
}

// --- Personal model -------------------------------------------------------

async function forgetHandwriting() {
  if (!window.confirm("Forget your handwriting? The corrections that taught your own model cannot be undone.")) return;
  try {
    const answer = await api("DELETE", "/api/writers/me/");
    // The shown answer may come from the model that is gone.
    markStale();
    say(answer.forgotten ? "Forgot your handwriting: you get the shared model now." : "There was nothing to forget.", "ok");
  } catch (error) {
    say(error.message, "error");
  }
  bringIntoView(board); // the line that tells is by the canvas, out of sight from the button
}

// --- Correcting -----------------------------------------------------------

// Marks ``label`` as the one saved for the shown answer (none: null).
function pressLabel(label) {
  for (const button of document.querySelectorAll(".label-button, .lookalike-button")) {
    button.setAttribute("aria-pressed", String(button.dataset.label === label));
  }
}

async function correct(label) {
  if (!prediction) return;
  const saved = result.querySelector('[aria-pressed="true"]')?.dataset.label ?? null;
  pressLabel(label);
  try {
    const correction = await api("POST", `/api/samples/${prediction.sample}/corrections/`, {
      label,
      source: "page",
    });
    if (correction.training_run) {
      say(`Saved “${label}”. Learning from it…`, "ok");
      followRun(correction.training_run.id, label);
    } else if (correction.training_state === "proposed") {
      say("Learned for you; a moderator will review it for everyone.", "ok");
    } else {
      say(`Saved “${label}”: the model already knew it. Thank you!`, "ok");
    }
  } catch (error) {
    pressLabel(saved);
    say(`“${label}” was not saved. ${error.message}`, "error");
  }
  bringIntoView(board); // the line that tells, and the canvas for the next drawing
}

function stopPolling() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
}

function followRun(runId, label) {
  stopPolling();
  const deadline = Date.now() + 60000;
  // A run usually ends within a second: ask soon, then back off to spare the throttle.
  let delay = 300;
  const poll = async () => {
    let run;
    try {
      run = await api("GET", `/api/training-runs/${runId}/`);
    } catch (error) {
      say(`Saved “${label}”. ${error.message}`, "error");
      return;
    }
    if (run.status === "succeeded") {
      const number = await showActiveVersion();
      say(`Learned “${label}”: now serving model ${number}.`, "ok");
      return;
    }
    if (run.status === "rejected") {
      say(`Saved “${label}”. This update was not published: it did not pass the checks.`, "warn");
      return;
    }
    if (run.status === "failed") {
      say(`Saved “${label}”. Training failed and will be retried.`, "warn");
      return;
    }
    const progress = run.status === "running" ? ` ${Math.round(run.progress * 100)}%` : "";
    say(`Saved “${label}”. ${run.status === "queued" ? "Waiting to learn…" : `Learning…${progress}`}`, "ok");
    if (Date.now() < deadline) pollTimer = setTimeout(poll, delay);
    delay = Math.min(delay * 1.5, 2000);
  };
  poll();
}

// --- Wiring ---------------------------------------------------------------

document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clearAll);
predictButton.addEventListener("click", predict);
document.getElementById("confirm").addEventListener("click", () => prediction && correct(prediction.label));
document.getElementById("labels").addEventListener("click", (event) => {
  const button = event.target.closest(".label-button");
  if (button) correct(button.dataset.label);
});
document.getElementById("lookalike-buttons").addEventListener("click", (event) => {
  const button = event.target.closest(".lookalike-button");
  if (button) correct(button.dataset.label);
});

// The slider's value in pixels, shown beside it and read out by screen readers.
function showPenWidth() {
  const text = `${penWidth.value} px`;
  penWidthValue.textContent = text;
  penWidth.setAttribute("aria-valuetext", text);
}

penWidth.addEventListener("input", showPenWidth);
modeSwitch.addEventListener("change", () => {
  localStorage.setItem(MODE_KEY, currentMode());
  // The shown answer and its labels must be the mode's: ask again in the new one.
  if (prediction || predicting) predict();
});
document.getElementById("forget").addEventListener("click", forgetHandwriting);

// A label key corrects only where the user is answering "Is it right?": with the
// focus in the result panel (its label grid, look-alike buttons or "Right").
function inCorrectionArea(target) {
  return target instanceof Element && !result.hidden && !result.inert && result.contains(target);
}

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Enter" && !(event.target instanceof HTMLButtonElement)) {
    event.preventDefault();
    predict();
  } else if (event.key === "Escape") {
    clearAll();
  } else if (
    prediction &&
    inCorrectionArea(event.target) &&
    !event.ctrlKey &&
    !event.metaKey &&
    !event.altKey &&
    labelOffered(event.key)
  ) {
    event.preventDefault();
    correct(event.key);
  }
});

window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`).addEventListener?.("change", setUpCanvas);
restoreMode();
showPenWidth(); // a reload may keep the slider where it was
setUpCanvas();
showActiveVersion();
