// Polls live.json and redraws the page (see peaknet_serve.live.LiveBoard.snapshot for the JSON).
"use strict";

const POLL_MS = 1000;
let lastHitKey = null;

function byId(id) { return document.getElementById(id); }

function draw(data) {
  const totals = data.totals;
  const rate = totals.hit_rate === null ? "-" : (100 * totals.hit_rate).toFixed(1) + " %";
  byId("totals").textContent =
    `${totals.frames} frames, ${totals.hits} hits (${rate}), up ${data.uptime_s.toFixed(0)} s`;
  byId("replicas").replaceChildren(...Object.entries(data.replicas).map(([name, n]) => {
    const span = document.createElement("span");
    span.textContent = `${name}: ${n}`;
    return span;
  }));
  const s = data.series;
  Charts.line(byId("hit-rate"), s.t, s.hit_rate.map((v) => (v === null ? null : 100 * v)),
    { yMax: 100, yFormat: (v) => v.toFixed(0) + "%", xFormat: (v) => v.toFixed(0) + " s", color: "#ffb74d" });
  Charts.line(byId("frames-per-s"), s.t, s.frames_per_s, { xFormat: (v) => v.toFixed(0) + " s" });
  Charts.bars(byId("peaks-per-frame"), data.peaks_per_frame.counts, data.peaks_per_frame.bin_width);
  const p = data.peakogram;
  Charts.heatmap(byId("peakogram"), p.counts, p.radius_max_px || 1, p.log10_intensity_max,
    { yFormat: (v) => "1e" + v.toFixed(1) });
  const hit = data.last_hit;
  if (hit) {
    const key = hit.png.length + ":" + hit.png.slice(-64);
    byId("hit-label").textContent =
      `(${hit.n_peaks} peaks` + (hit.timestamp !== undefined ? `, timestamp ${hit.timestamp})` : ")");
    if (key !== lastHitKey) {
      lastHitKey = key;
      Charts.peaksImage(byId("latest-hit"), hit);
    }
  }
  byId("updated").textContent = new Date().toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const response = await fetch("live.json", { cache: "no-store" });
    if (response.ok) draw(await response.json());
  } catch (error) {
    byId("updated").textContent = "no answer: " + error;
  }
  setTimeout(poll, POLL_MS);
}

poll();
