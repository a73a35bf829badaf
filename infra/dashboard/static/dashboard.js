// streamwarden's dashboard: one server-sent event stream of snapshots, redrawn in place.
// No framework and nothing fetched from elsewhere: plain DOM and SVG.
"use strict";

const WINDOW_S = 15 * 60;  // the time axis: the last quarter of an hour
const SVG = "http://www.w3.org/2000/svg";

const fmt = (v, digits = 0) =>
  v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toLocaleString("en-US", {maximumFractionDigits: digits, minimumFractionDigits: digits});
const tick = (v) => fmt(v, Number.isInteger(v) ? 0 : 1);  // axis labels: 2.5 stays 2.5
const seconds = (ms) => (ms === null || ms === undefined ? "–" : ms >= 1000 ? `${fmt(ms / 1000, 1)} s` : `${fmt(ms)} ms`);
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB", {hour12: false});
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = tag === "svg" || ["line", "polyline", "rect", "text", "g", "title"].includes(tag)
    ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A panel's source is missing: say so in its place (or above its stale history).
function say(panelId, message, hideContent) {
  const panel = $(panelId);
  const note = panel.querySelector(".missing");
  note.hidden = !message;
  note.textContent = message || "";
  for (const child of panel.querySelectorAll("svg, table")) child.style.display = message && hideContent ? "none" : "";
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function lineChart(svg, series, markers, t0, t1, yFormat, yFloor = 0) {
  svg.replaceChildren();
  const [W, H] = svg.getAttribute("viewBox").split(" ").slice(2).map(Number);
  const left = 64, right = 10, top = 10, bottom = 22;
  const ymax = niceMax(Math.max(yFloor, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1)) * (W - left - right);
  const y = (v) => top + (1 - v / ymax) * (H - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(el("line", {class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v)}));
    svg.append(el("text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, yFormat(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(el("text", {x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"}, clock(t)));
  }
  for (const s of series) {
    const points = s.points.filter((p) => p[0] >= t0);
    if (!points.length) continue;
    svg.append(el("polyline", {fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name,
      points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ")}));
  }
  for (const m of markers.filter((m) => m.at >= t0)) {
    const g = el("g", {class: "marker-group"});
    g.append(el("line", {class: `marker ${m.kind}`, x1: x(m.at), x2: x(m.at), y1: top, y2: H - bottom}));
    g.append(el("text", {class: `marker-label ${m.kind}`, x: x(m.at) + 3, y: top + 10}, markerLabel(m)));
    g.append(el("title", {}, markerTitle(m)));
    svg.append(g);
  }
}

function markerLabel(m) {
  if (m.kind === "takeover") return `takeover ${fmt(m.seconds, 1)} s`;
  return m.kind === "swap" ? `v${m.version}` : `refused v${m.version}`;
}

function markerTitle(m) {
  if (m.kind === "takeover") {
    return `${clock(m.at)} driver ${m.driver} took the query over from driver ${m.previous} (${m.cause}); `
      + `its first batch committed ${fmt(m.seconds, 1)} s after the previous driver's last heartbeat`;
  }
  return m.kind === "swap"
    ? `${clock(m.at)} now scoring with version ${m.version}${m.previous ? ` (was ${m.previous})` : ""}`
    : `${clock(m.at)} refused version ${m.version}: ${m.reason}`;
}

function barChart(svg, bars, labelEvery = 1) {
  svg.replaceChildren();
  const [W, H] = svg.getAttribute("viewBox").split(" ").slice(2).map(Number);
  const left = 56, right = 6, top = 8, bottom = 22;
  const ymax = 4 * niceMax(Math.max(1, ...bars.map((b) => b[1] / 4)));  // counts: whole numbers at the 4 ticks
  const step = (W - left - right) / Math.max(bars.length, 1);
  const y = (v) => top + (1 - v / ymax) * (H - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(el("line", {class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v)}));
    svg.append(el("text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, tick(v)));
  }
  bars.forEach(([label, value], i) => {
    const rect = el("rect", {class: "bar", x: left + i * step + step * 0.12, width: step * 0.76, y: y(value), height: y(0) - y(value)});
    rect.append(el("title", {}, `${label}: ${fmt(value)}`));
    svg.append(rect);
    if (i % labelEvery === 0) svg.append(el("text", {x: left + i * step + step / 2, y: H - 6, "text-anchor": "middle"}, label));
  });
}

function rows(tbody, data) {
  tbody.replaceChildren(...data.map((cells) => {
    const tr = el("tr");
    for (const cell of cells) {
      const [text, cls] = Array.isArray(cell) ? cell : [cell, ""];
      tr.append(el("td", cls ? {class: cls} : {}, String(text)));
    }
    return tr;
  }));
}

function renderStream(s, now) {
  const state = $("stream-state");
  state.textContent = `stream: ${s.state}`;
  state.className = `badge ${s.state.split(" ")[0]}`;
  $("tile-in").textContent = s.state === "running" ? fmt(s.now.in_per_s) : "–";
  $("tile-scored").textContent = s.state === "running" ? fmt(s.now.scored_per_s) : "–";
  $("tile-lag").textContent = fmt(s.now.lag);
  $("tile-latency").textContent = s.now.latency_ms.p50 === undefined ? "–" : `${seconds(s.now.latency_ms.p50)} / ${seconds(s.now.latency_ms.p99)}`;
  $("tile-dlq").textContent = fmt(Object.values(s.dead_letters).reduce((a, b) => a + b, 0));
  $("tile-total").textContent = fmt(s.totals.scored || 0);

  const never = s.series.length === 0;
  for (const id of ["panel-rates", "panel-latency", "panel-lag", "panel-dlq"]) say(id, s.message, never);
  const t1 = now, t0 = Math.max(now - WINDOW_S, Math.min(now - 60, ...s.series.map((p) => p.t)));
  lineChart($("chart-rates"), [
    {name: "in", color: "var(--in)", points: s.series.map((p) => [p.t, p.in_per_s])},
    {name: "scored", color: "var(--scored)", points: s.series.map((p) => [p.t, p.scored_per_s])},
  ], s.markers, t0, t1, tick, 4);
  lineChart($("chart-latency"), ["p50", "p95", "p99"].map((q) => ({
    name: q, color: `var(--${q})`, points: s.series.filter((p) => p.latency_ms[q] !== undefined).map((p) => [p.t, p.latency_ms[q] / 1000]),
  })), s.markers, t0, t1, (v) => `${fmt(v, 1)} s`, 1);
  const lag = Object.entries(s.lag_by_partition);
  barChart($("chart-lag"), lag.map(([p, v]) => [p, v]));
  if (!s.message && !lag.length) say("panel-lag", "No lag reported yet: it comes with the stream's first batch.", true);
  const letters = Object.entries(s.dead_letters);
  rows($("dlq").querySelector("tbody"), letters.map(([reason, n]) => [reason, [fmt(n), "num"]]));
  if (!s.message && !letters.length) say("panel-dlq", "No dead letters: every event so far parsed and validated.", true);

  const drivers = s.drivers.map((d) => `${d.role} pid ${d.pid}${d.silent_s > 3 ? ` (silent ${fmt(d.silent_s, 0)} s)` : ""}`);
  const takeovers = s.markers.filter((m) => m.kind === "takeover");
  const last = takeovers[takeovers.length - 1];
  $("stream-drivers").textContent = drivers.length || last
    ? `drivers: ${drivers.join(", ") || "none"}${last ? ` · ${s.takeovers} takeovers, last ${clock(last.at)} in ${fmt(last.seconds, 1)} s` : ""}`
    : "";
  const modelEvents = s.markers.filter((m) => m.kind !== "takeover");
  $("model-events").replaceChildren(...modelEvents.slice(-8).reverse().map((m) => el("li", {class: m.kind},
    m.kind === "swap" ? `${clock(m.at)} swapped to v${m.version}${m.previous ? ` (was v${m.previous})` : ""}`
      : `${clock(m.at)} refused v${m.version}: ${m.reason}`)));
}

function renderAlerts(a) {
  const minutes = a.per_minute;
  $("tile-alerts").textContent = a.available ? fmt(minutes.length ? minutes[minutes.length - 1][1] : 0) : "–";
  say("panel-alert-rate", a.available ? "" : a.message, true);
  barChart($("chart-alerts"), minutes.map(([t, n]) => [clock(t).slice(0, 5), n]), 10);
  say("panel-alerts", a.message, true);
  rows($("alerts").querySelector("tbody"), a.latest.map((x) => [
    clock(x.published_at), x.device_id, x.event_ts, [fmt(x.score, 3), "num"], [fmt(x.threshold, 3), "num"],
    `v${x.model_version}`, `${x.source_partition} / ${x.source_offset}`, [x.event_id, "id"],
  ]));
}

function renderRegistry(r, stream) {
  const champion = r.versions.find((v) => v.alias === "champion");
  const scoring = stream.model ? `scoring: v${stream.model.version}` : "";
  const badge = $("champion-badge");
  badge.textContent = [champion ? `champion: v${champion.version}` : "", scoring].filter(Boolean).join(" · ");
  badge.hidden = !badge.textContent;
  say("panel-models", r.message, !r.versions.length);
  const table = $("models");
  table.querySelector("thead").replaceChildren(el("tr"));
  const head = table.querySelector("thead tr");
  head.append(el("th", {}, "test window"));
  for (const v of r.versions) head.append(el("th", {class: "num"}, `${v.alias} v${v.version} (${v.kind})`));
  const metric = (name) => [name, ...r.versions.map((v) => [fmt(v.metrics[name], 3), "num"])];
  rows(table.querySelector("tbody"), [
    metric("precision"), metric("recall"), metric("f1"), metric("pr_auc"),
    ["threshold", ...r.versions.map((v) => [fmt(v.threshold, 3), "num"])],
    ["decided by", ...r.versions.map((v) => [v.decided_by ? `${v.decided_by}, ${v.decided_at}` : "–", "num"])],
  ]);
}

function render(snapshot) {
  $("link-mlflow").href = snapshot.links.mlflow;
  $("link-airflow").href = snapshot.links.airflow;
  $("link-metrics").href = snapshot.links.metrics;
  renderStream(snapshot.stream, snapshot.at);
  renderAlerts(snapshot.alerts);
  renderRegistry(snapshot.registry, snapshot.stream);
  $("updated").textContent = `updated ${clock(snapshot.at)}`;
}

const source = new EventSource("/api/events");
source.onmessage = (event) => render(JSON.parse(event.data));
// EventSource reconnects by itself; meanwhile the page keeps its last picture and says so.
source.onerror = () => { $("updated").textContent = "dashboard server unreachable: reconnecting…"; };
