// clonekit's viewer. Every value from the server is inserted with textContent (never innerHTML).
"use strict";

const token = new URLSearchParams(location.search).get("token");

function url(path, params = {}) {
  const query = new URLSearchParams(params);
  if (token) query.set("token", token);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function getJSON(path, params) {
  const response = await fetch(url(path, params));
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function element(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

const state = { episode: null, step: 0 };

function show(value) {
  if (Array.isArray(value)) return JSON.stringify(value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
  return String(value);
}

function renderStep() {
  const ep = state.episode;
  const t = state.step;
  document.getElementById("step-label").textContent = `step ${t} / ${ep.length - 1}`;
  const frame = document.getElementById("frame");
  frame.hidden = !ep.frames;
  if (ep.frames) frame.src = url(`api/datasets/${ep.dataset}/episodes/${ep.index}/frames/${t}.png`);
  document.getElementById("obs").textContent = ep.obs ? `obs ${show(ep.obs[t])}` : "";
  const body = document.querySelector("#streams tbody");
  body.replaceChildren();
  for (const [name, values] of Object.entries(ep.streams)) {
    const row = element("tr", undefined, { "data-stream": name });
    row.append(element("td", name), element("td", typeof values === "string" ? values : show(values[t])));
    body.append(row);
  }
}

async function openEpisode(row, button) {
  state.episode = await getJSON(`api/datasets/${row.dataset}/episodes/${row.index}`);
  state.step = 0;
  document.querySelectorAll("#episodes button.current").forEach((b) => b.classList.remove("current"));
  button.classList.add("current");
  document.getElementById("episode").hidden = false;
  document.getElementById("episode-title").textContent =
    `episode ${row.index} (dataset ${row.dataset}): ${row.length} steps, return ${show(row.return)}`;
  const slider = document.getElementById("step");
  slider.max = String(state.episode.length - 1);
  slider.value = "0";
  renderStep();
}

async function loadEpisodes() {
  const params = {
    success: document.getElementById("f-success").value,
    intervention: document.getElementById("f-intervention").value,
    demonstrator: document.getElementById("f-demonstrator").value,
  };
  const rows = await getJSON("api/episodes", params);
  const list = document.getElementById("episodes");
  list.replaceChildren();
  document.getElementById("count").textContent = `${rows.length} episodes`;
  for (const row of rows) {
    const item = element("li");
    const label = `#${row.index} ${row.success ? "success" : "failure"}, ${row.length} steps` +
      (row.interventions ? `, ${row.interventions} intervention steps` : "") +
      (row.demonstrator !== null ? `, demonstrator ${row.demonstrator}` : "");
    const button = element("button", label, {
      class: row.success ? "success" : "failure",
      "data-dataset": row.dataset,
      "data-episode": row.index,
    });
    button.addEventListener("click", () => openEpisode(row, button));
    item.append(button);
    list.append(item);
  }
}

async function main() {
  const summary = await getJSON("api/summary");
  document.getElementById("source").textContent = `${summary.kind}: ${summary.path}`;
  const plots = document.getElementById("plots");
  plots.hidden = summary.plots.length === 0;
  for (const name of summary.plots) plots.append(element("img", undefined, { src: url(`api/plots/${name}`), alt: name, title: name }));
  for (const id of ["f-success", "f-intervention", "f-demonstrator"]) {
    document.getElementById(id).addEventListener("change", loadEpisodes);
  }
  document.getElementById("step").addEventListener("input", (event) => {
    state.step = Number(event.target.value);
    renderStep();
  });
  await loadEpisodes();
  document.body.dataset.ready = "1";
}

main().catch((error) => {
  document.body.append(element("p", `error: ${error.message}`, { id: "error" }));
});
