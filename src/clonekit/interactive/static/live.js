// clonekit's live page: watch the policy, take over, act, release. Text goes in with textContent only.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socketUrl = `${scheme}://${location.host}/api/live` + (token ? `?token=${encodeURIComponent(token)}` : "");
const socket = new WebSocket(socketUrl);
let current = null;

function send(message) {
  socket.send(JSON.stringify(message));
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

function render(state) {
  current = state;
  buildActions(state.action_names);
  const human = state.control === "human";
  document.getElementById("status").textContent = human ? "you are in control" : "the policy is acting";
  document.body.dataset.control = state.control;
  document.getElementById("takeover").disabled = human;
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
    ? `last action ${state.action_names[last.action]} (policy proposed ${state.action_names[last.proposed]}), reward ${last.reward}`
    : "";
}

socket.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "state") render(message);
  else if (message.type === "error") document.getElementById("error").textContent = message.error;
});
socket.addEventListener("close", () => { document.getElementById("status").textContent = "disconnected"; });
document.getElementById("takeover").addEventListener("click", () => send({ type: "takeover" }));
document.getElementById("release").addEventListener("click", () => send({ type: "release" }));
document.getElementById("end").addEventListener("click", () => send({ type: "end" }));
document.addEventListener("keydown", (event) => {
  const index = Number(event.key) - 1;
  if (current && current.control === "human" && index >= 0 && index < current.action_names.length) {
    send({ type: "action", action: index });
  }
});
