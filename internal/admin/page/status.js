// The status page: polls /api/v1/status every two seconds and redraws.
// Rates are computed between two polls.
"use strict";

const refreshMs = 2000;
let previous = null; // last status, for rates

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function num(n) { return el("td", {class: "num"}, n); }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function sum(m) { return Object.values(m || {}).reduce((a, b) => a + b, 0); }

function ends(m) {
  return Object.keys(m || {}).sort().map(k => k + "=" + m[k]).join(" ");
}

function ago(t, now) {
  const s = (new Date(now) - new Date(t)) / 1000;
  return s < 1 ? "now" : s.toFixed(0) + "s ago";
}

function rate(now, prev, seconds) {
  if (prev === undefined || seconds <= 0) return "";
  return ((now - prev) / seconds).toFixed(1);
}

function draw(st) {
  const seconds = previous ? (new Date(st.now) - new Date(previous.now)) / 1000 : 0;
  const prevL = {};
  for (const l of (previous ? previous.listeners : [])) prevL[l.name] = l;
  document.getElementById("meta").textContent =
    "version " + st.version + ", up since " + new Date(st.started).toLocaleString() +
    ", refreshed " + new Date(st.now).toLocaleTimeString();
  const lb = document.querySelector("#listeners tbody");
  lb.replaceChildren(...st.listeners.map(l => {
    const ended = sum(l.ended);
    const p = prevL[l.name];
    return el("tr", {"data-listener": l.name},
      el("td", {}, l.name), el("td", {}, l.protocol), el("td", {}, l.bind), el("td", {}, l.pool),
      num(l.live !== undefined ? l.live : l.sessions !== undefined ? l.sessions : "-"), num(ended),
      num(rate(ended, p && sum(p.ended), seconds)),
      num(bytes(l.received_bytes)), num(bytes(l.sent_bytes)), el("td", {}, ends(l.ended)));
  }));
  const prevB = {};
  for (const p of (previous ? previous.pools : [])) {
    for (const b of p.backends) prevB[p.name + " " + b.address] = b;
  }
  const pools = document.getElementById("pools");
  pools.replaceChildren(...st.pools.map(p => {
    const rows = p.backends.map(b => {
      const pb = prevB[p.name + " " + b.address];
      const c = b.last_check;
      const check = c ? (c.passed ? "passed" : "failed: " + c.error) + " (" + ago(c.at, st.now) +
        ", " + (c.duration_ns / 1e6).toFixed(1) + " ms)" : "";
      return el("tr", {class: b.state, "data-backend": b.address},
        el("td", {}, b.address), el("td", {class: "state"}, b.state), num(b.weight),
        el("td", {}, b.backup ? "backup" : ""), num(b.live), num(b.active), num(sum(b.ended)),
        num(rate(sum(b.ended), pb && sum(pb.ended), seconds)),
        el("td", {}, check), el("td", {}, ends(b.ended)));
    });
    const head = el("tr", {}, ...["backend", "state", "weight", "", "live", "active", "ended", "rate /s", "last check", "ends"].map(h => el("th", {}, h)));
    const title = "Pool " + p.name + " (" + p.balance + (p.hash_key ? " on " + p.hash_key : "") + ")";
    return el("section", {"data-pool": p.name},
      el("h2", {}, title),
      p.unavailable ? el("div", {class: "unavailable"}, p.unavailable) : "",
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  }));
  previous = st;
}

async function refresh() {
  try {
    const r = await fetch("api/v1/status", {cache: "no-store", credentials: "same-origin"});
    if (!r.ok) throw new Error("status " + r.status);
    draw(await r.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach sluice: " + e.message;
  }
  setTimeout(refresh, refreshMs);
}

refresh();
