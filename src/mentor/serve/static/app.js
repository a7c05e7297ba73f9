// The web page over the mentor HTTP API: plain JavaScript, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let health = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

function post(path, body, headers = {}) {
  return api(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

async function describe(ids) {
  if (!ids.length) return [];
  const { items } = await post("/items/lookup", { ids: ids.slice(0, 1000) });
  const byId = new Map(items.map((item) => [item.id, item]));
  return ids.map((id) => byId.get(id) || { id, title: "", text: "", image: "" });
}

function card(item, score) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.item = item.id;
  button.title = item.text || item.title || item.id;
  const picture = item.image ? document.createElement("img") : document.createElement("div");
  if (item.image) {
    picture.src = item.image;
    picture.alt = item.title || item.id;
    picture.loading = "lazy";
  } else {
    picture.className = "blank";
  }
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.title || item.id;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = score === undefined ? item.id : `${item.id} · ${score.toFixed(3)}`;
  button.append(picture, title, meta);
  button.addEventListener("click", () => showSimilar(item));
  return button;
}

async function fill(grid, ids, scores) {
  const items = await describe(ids);
  grid.replaceChildren(...items.map((item, i) => card(item, scores ? scores[i] : undefined)));
}

function note(element, text, error = false) {
  element.textContent = text;
  element.classList.toggle("error", error);
}

async function showUser(event) {
  event.preventDefault();
  const user = $("user-id").value.trim();
  const k = Number($("user-k").value) || 10;
  note($("user-note"), "");
  try {
    let history = [];
    try {
      history = (await api(`/users/${encodeURIComponent(user)}`)).history;
    } catch (error) {
      if (!String(error.message).startsWith("404")) throw error;
    }
    await fill($("history"), history);
    const result = await api(`/recommend?user=${encodeURIComponent(user)}&k=${k}`);
    await fill($("recommended"), result.items, result.scores);
    if (result.fallback) note($("user-note"), "Not a trained user: the most popular items.");
  } catch (error) {
    note($("user-note"), error.message, true);
  }
}

async function showSimilar(item) {
  const section = $("similar-section");
  section.hidden = false;
  $("similar-title").textContent = item.title || item.id;
  try {
    const result = await api(`/similar?item=${encodeURIComponent(item.id)}&k=50`);
    await fill($("similar"), result.items, result.scores);
  } catch (error) {
    $("similar").replaceChildren(document.createTextNode(error.message));
  }
  section.scrollIntoView({ block: "nearest" });
}

async function search(event) {
  event.preventDefault();
  const q = $("search-q").value.trim();
  try {
    const { items } = await api(`/items/search?q=${encodeURIComponent(q)}&k=40`);
    $("found").replaceChildren(...items.map((item) => card(item)));
  } catch (error) {
    $("found").replaceChildren(document.createTextNode(error.message));
  }
}

function randomFeatures() {
  const features = {};
  for (const [modality, dim] of Object.entries(health.feature_dims)) {
    features[modality] = Array.from({ length: dim }, () => Number(Math.random().toFixed(4)));
  }
  $("add-features").value = JSON.stringify(features);
}

async function addItem(event) {
  event.preventDefault();
  const id = $("add-id").value.trim();
  const key = $("api-key").value;
  sessionStorage.setItem("mentor-api-key", key);
  try {
    const features = JSON.parse($("add-features").value || "{}");
    const item = { id, features };
    if ($("add-title").value.trim()) item.title = $("add-title").value.trim();
    const result = await post("/items", { items: [item] }, { "x-api-key": key });
    note($("add-note"), `Added ${id}; the catalogue has ${result.items} items.`);
    await showSimilar({ id, title: item.title || id });
  } catch (error) {
    note($("add-note"), error.message, true);
  }
}

function drawCurves(curves) {
  const epoch = curves.columns.indexOf("epoch");
  // validation recall and NDCG at the largest cut-off, and every loss term
  const cuts = curves.columns.filter((c) => c.startsWith("valid_recall@")).map((c) => Number(c.split("@")[1]));
  const top = Math.max(...cuts);
  const wanted = curves.columns.filter((c) => c === `valid_recall@${top}` || c === `valid_ndcg@${top}` ||
    c === "loss" || c.startsWith("loss_"));
  if (epoch < 0 || !wanted.length || curves.rows.length < 2) return;
  $("curves-section").hidden = false;
  const [width, height, pad] = [580, 180, 56];
  const charts = [wanted.filter((c) => c.startsWith("valid_")), wanted.filter((c) => !c.startsWith("valid_"))];
  const colours = ["#2f5fd0", "#d0662f", "#2f9d5f", "#9d2fa0", "#a08a2f", "#2f96a0"];
  const svg = [];
  charts.filter((names) => names.length).forEach((names) => {
    const points = names.map((name) => {
      const column = curves.columns.indexOf(name);
      return curves.rows.filter((row) => row[column] !== null).map((row) => [row[epoch], row[column]]);
    });
    const all = points.flat();
    const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    const [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
    const sy = (y) => height - pad + ((y0 - y) / (y1 - y0 || 1)) * (height - 2 * pad);
    const lines = points.map((series, i) =>
      `<polyline fill="none" stroke="${colours[i % colours.length]}" stroke-width="1.5" points="${series
        .map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")}"/>` +
      `<text x="${width - pad + 4}" y="${14 + 13 * i}" style="fill:${colours[i % colours.length]}">${names[i]}</text>`);
    svg.push(`<svg width="${width + 150}" height="${height}" role="img" aria-label="${names.join(", ")}">` +
      `<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#999"/>` +
      `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${height - pad}" stroke="#999"/>` +
      `<text x="${pad}" y="${height - 10}">epoch ${x0}</text><text x="${width - pad - 40}" y="${height - 10}">epoch ${x1}</text>` +
      `<text x="${pad - 4}" y="${pad}" text-anchor="end">${y1.toPrecision(3)}</text>` +
      `<text x="${pad - 4}" y="${height - pad}" text-anchor="end">${y0.toPrecision(3)}</text>` +
      lines.join("") + "</svg>");
  });
  $("curves").innerHTML = svg.join("");
}

async function start() {
  $("user-form").addEventListener("submit", showUser);
  $("search-form").addEventListener("submit", search);
  $("add-form").addEventListener("submit", addItem);
  $("add-random").addEventListener("click", randomFeatures);
  $("api-key").value = sessionStorage.getItem("mentor-api-key") || "";
  health = await api("/health");
  const digest = health.bundle_digest.slice(0, 12);
  $("bundle").textContent =
    `${health.model} · ${health.items} items · ${health.users} users · bundle ${digest} ` +
    `(mentor ${health.bundle_version}) · server ${health.version}`;
  if (!health.can_add_items) {
    $("add-section").hidden = true;
  }
  drawCurves(await api("/curves"));
}

start().catch((error) => note($("user-note"), error.message, true));
