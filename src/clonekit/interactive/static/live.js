// clonekit's live page: watch the policy, take over, act, release. Text goes in with textContent only.
// Discrete actions: one button (or number key) a step. Continuous (Box) actions: a pad sets the first two
// values (held: a step every interval), the arrow keys make one step at a bound, Enter repeats the action shown.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socketUrl = `${scheme}://${location.host}/api/live` + (token ? `?token=${encodeURIComponent(token)}` : "");
const socket = new WebSocket(socketUrl);
const pad = document.getElementById("pad");
let current = null;
let vector = null; // continuous: the action shown on the pad
let holding = null; // continuous: the repeat timer while the pointer is held on the pad

function send(message) {
  socket.send(JSON.stringify(message));
}

function isContinuous() {
  return current !== null && Array.isArray(current.action_low);
}

function inControl() {
  return current !== null && current.control === "human";
}

// Bounds as the pad uses them: an unbounded side (sent as null) counts as 1 away from zero.
function low(i) {
  const value = current.action_low[i];
  return value === null ? -1 : value;
}

function high(i) {
  const value = current.action_high[i];
  return value === null ? 1 : value;
}

function clip(value, i) {
  return Math.min(high(i), Math.max(low(i), value));
}

function rest() {
  return current.action_low.map((_, i) => clip(0, i)); // zero where the bounds allow it
}

function showVector() {
  const dims = vector.length;
  const fx = high(0) > low(0) ? (vector[0] - low(0)) / (high(0) - low(0)) : 0.5;
  const fy = dims > 1 && high(1) > low(1) ? (vector[1] - low(1)) / (high(1) - low(1)) : 0.5;
  const dot = document.getElementById("pad-dot");
  dot.style.left = `${(100 * fx).toFixed(2)}%`;
  dot.style.top = `${(100 * (1 - fy)).toFixed(2)}%`;
  const shown = document.getElementById("vector");
  shown.textContent = `action [${vector.map((v) => v.toFixed(3)).join(", ")}]`;
  shown.dataset.action = JSON.stringify(vector);
}

function sendVector() {
  if (inControl()) send({ type: "action", action: vector.slice() });
}

function fromPointer(event) {
  const box = pad.getBoundingClientRect();
  const fx = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const fy = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
  const round = (v) => Math.round(v * 1e4) / 1e4;
  vector = rest();
  vector[0] = clip(round(low(0) + fx * (high(0) - low(0))), 0);
  if (vector.length > 1) vector[1] = clip(round(high(1) - fy * (high(1) - low(1))), 1);
  showVector();
}

function stopHolding() {
  if (holding !== null) clearInterval(holding);
  holding = null;
}

function buildActions(names) {
  const box = document.getElementById("actions");
  if (box.childElementCount === names.length) return;
  box.replaceChildren();
  names.forEach((name, index) => {
    const button = document.createElement("button");
    button.textContent = `${index + 1}: ${name}`;
    button.dataset.action = String(index);
    button.addEventListener("click", () => send({ type: "action", action: index }));
    box.append(button);
  });
}

function describe(action, names) {
  return Array.isArray(action) ? `[${action.join(", ")}]` : names[action];
}

function render(state) {
  current = state;
  const continuous = isContinuous();
  document.getElementById("discrete").hidden = continuous || state.action_names.length === 0; // none: no round
  document.getElementById("continuous").hidden = !continuous;
  if (continuous) {
    if (vector === null || vector.length !== state.action_low.length) vector = rest();
    showVector();
  } else {
    buildActions(state.action_names);
  }
  const human = state.control === "human";
  if (!human) stopHolding();
  let status = human ? "you are in control" : "the policy is acting";
  if (state.waiting) status = state.waiting;
  else if (state.finished) status = "this round's episodes are saved";
  document.getElementById("status").textContent = status;
  document.getElementById("round").textContent = state.round === undefined || state.round === null
    ? "" : `interactive round ${state.round}`;
  document.body.dataset.control = state.control;
  const idle = Boolean(state.waiting || state.finished); // nothing to act in until the next round
  document.getElementById("takeover").disabled = human || idle;
  document.getElementById("end").disabled = idle;
  document.getElementById("release").disabled = !human;
  document.querySelectorAll("#actions button").forEach((b) => { b.disabled = !human; });
  const frame = document.getElementById("frame");
  frame.hidden = !state.frame;
  if (state.frame) frame.src = state.frame;
  document.getElementById("obs").textContent = state.obs ? `obs ${JSON.stringify(state.obs)}` : "";
  const counters = document.getElementById("counters");
  counters.textContent = `episode ${state.episode}, step ${state.step}, ` +
    `${state.interventions} intervention steps this episode, ${state.episodes_saved} episodes saved`;
  counters.dataset.step = String(state.step);
  counters.dataset.saved = String(state.episodes_saved);
  const last = state.last;
  document.getElementById("last").textContent = last && last.action !== undefined
    ? `last action ${describe(last.action, state.action_names)} ` +
      `(policy proposed ${describe(last.proposed, state.action_names)}), reward ${last.reward}`
    : "";
}

socket.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "state") render(message);
  else if (message.type === "error") document.getElementById("error").textContent = message.error;
});
socket.addEventListener("close", () => {
  stopHolding();
  document.getElementById("status").textContent = "disconnected";
});
document.getElementById("takeover").addEventListener("click", () => send({ type: "takeover" }));
document.getElementById("release").addEventListener("click", () => send({ type: "release" }));
document.getElementById("end").addEventListener("click", () => send({ type: "end" }));

pad.addEventListener("pointerdown", (event) => {
  if (!isContinuous() || !inControl()) return;
  pad.setPointerCapture(event.pointerId);
  fromPointer(event);
  sendVector();
  stopHolding();
  holding = setInterval(sendVector, 1000 * (current.step_interval || 0.25));
});
pad.addEventListener("pointermove", (event) => { if (holding !== null) fromPointer(event); });
pad.addEventListener("pointerup", stopHolding);
pad.addEventListener("pointercancel", stopHolding);

const ARROWS = { ArrowLeft: [0, "low"], ArrowRight: [0, "high"], ArrowDown: [1, "low"], ArrowUp: [1, "high"] };

document.addEventListener("keydown", (event) => {
  if (!inControl()) return;
  if (isContinuous()) {
    const arrow = ARROWS[event.key];
    if (arrow && arrow[0] < vector.length) {
      event.preventDefault();
      const [axis, side] = arrow;
      vector = rest();
      vector[axis] = side === "low" ? low(axis) : high(axis);
      showVector();
      sendVector();
    } else if (event.key === "Enter") {
      event.preventDefault();
      sendVector();
    }
    return;
  }
  const index = Number(event.key) - 1;
  if (index >= 0 && index < current.action_names.length) {
    send({ type: "action", action: index });
  }
});
