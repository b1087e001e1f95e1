"use strict";
// beamline timeline page. Everything from the log reaches the DOM through textContent or the canvas
// through fillText; nothing is ever parsed as HTML.
(function () {
  const T0 = performance.now();
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
  const status = $("status");
  function fmt(ns) {
    const a = Math.abs(ns);
    if (a >= 1e9) return (ns / 1e9).toFixed(a >= 1e10 ? 1 : 3) + " s";
    if (a >= 1e6) return (ns / 1e6).toFixed(a >= 1e7 ? 1 : 2) + " ms";
    if (a >= 1e3) return (ns / 1e3).toFixed(a >= 1e4 ? 1 : 2) + " µs";
    return Math.round(ns) + " ns";
  }

  function bytes(b64) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // LEB128 varint reader (values up to 2^53, so arithmetic rather than 32-bit shifts).
  function Reader(b) { this.b = b; this.i = 0; }
  Reader.prototype.next = function () {
    const b = this.b; let x = 0, mul = 1, c;
    do { c = b[this.i++]; x += (c & 127) * mul; mul *= 128; } while (c & 128);
    return x;
  };
  Reader.prototype.more = function () { return this.i < this.b.length; };

  function readFields(r, fk, fv) {
    const n = r.next();
    for (let k = 0; k < n; k++) { fk.push(r.next()); fv.push(r.next()); }
  }

  function main() {
    const D = JSON.parse($("data").textContent);
    $("data").textContent = ""; // the parsed copy is all we need: frees the text
    const S = D.strings;
    document.title = D.title;
    $("title").textContent = D.title;

    // ---- decode lanes ----
    const lanes = [];
    D.procs.forEach((p, pi) => {
      p.lanes.forEach((L, li) => {
        const n = L.n, r = new Reader(bytes(L.cols));
        const st = new Float64Array(n), du = new Float64Array(n), dp = new Uint16Array(n), nm = new Uint32Array(n), fo = new Uint32Array(n + 1);
        const fk = [], fv = [], perDepth = new Uint32Array(Math.max(1, L.depths));
        let t = 0;
        for (let i = 0; i < n; i++) {
          t += r.next(); st[i] = t; du[i] = r.next(); dp[i] = r.next(); nm[i] = r.next();
          fo[i] = fk.length; readFields(r, fk, fv); perDepth[dp[i]]++;
        }
        fo[n] = fk.length;
        const byDepth = [], fill = new Uint32Array(perDepth.length);
        for (let d = 0; d < perDepth.length; d++) byDepth.push(new Uint32Array(perDepth[d]));
        for (let i = 0; i < n; i++) { const d = dp[i]; byDepth[d][fill[d]++] = i; }
        const er = new Reader(bytes(L.events)), et = [], en = [], efo = [], efk = [], efv = [];
        t = 0;
        while (er.more()) { t += er.next(); et.push(t); en.push(er.next()); efo.push(efk.length); readFields(er, efk, efv); }
        efo.push(efk.length);
        const gr = new Reader(bytes(L.gaps)), gs = [], ge = [];
        t = 0;
        while (gr.more()) { t += gr.next(); gs.push(t); ge.push(t + gr.next()); }
        lanes.push({ p: pi, li, name: L.name, tid: L.tid, n, depths: Math.max(1, L.depths), st, du, dp, nm, fo, fk, fv, byDepth, et, en, efo, efk, efv, gs, ge });
      });
    });
    const counters = [];
    D.procs.forEach((p, pi) => p.counters.forEach((c) => {
      const r = new Reader(bytes(c.t)), t = new Float64Array(c.v.length); let x = 0;
      for (let i = 0; i < t.length; i++) { x += r.next(); t[i] = x; }
      let max = 0, min = 0; for (const v of c.v) { if (v > max) max = v; if (v < min) min = v; }
      counters.push({ p: pi, name: c.name, t, v: c.v, max, min });
    }));

    // ---- colours ----
    const EXPECTED = new Set(D.expected_waits || []);
    // Each lane names its process; the pid (in the process row above) only where two share a command.
    const procShort = D.procs.map((p) => {
      const short = p.label.replace(/ \(pid \d+\)$/, "");
      return D.procs.filter((q) => q.label.replace(/ \(pid \d+\)$/, "") === short).length > 1 ? p.label : short;
    });
    const colour = S.map((s) => {
      if (s.startsWith("wait.")) return EXPECTED.has(s.slice(5)) ? "#9aa3b2" : "#d9363e";
      let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
      return "hsl(" + (h % 360) + ",52%," + (58 + (h >> 9) % 12) + "%)";
    });
    const isWait = S.map((s) => s.startsWith("wait."));

    // ---- layout ----
    const ROW = 16, AXIS = 24, LABEL = 190, PROC = 22, COUNTER = 40;
    // Rows in order; a search hides the lanes (and counters) with nothing matching it.
    let rows = [], contentH = 0, laneRow = new Map();
    const box = $("tl"), cv = $("cv"), ctx = cv.getContext("2d"), tip = $("tip");
    function layout(shown) {
      rows = []; laneRow = new Map(); let y = AXIS;
      D.procs.forEach((p, pi) => {
        const ls = lanes.filter((l) => l.p === pi && (!shown || shown(l)));
        if (shown && !ls.length) return;
        rows.push({ kind: "proc", p: pi, y, h: PROC }); y += PROC;
        ls.forEach((l) => { const h = l.depths * ROW + 6; const r = { kind: "lane", lane: l, y, h }; rows.push(r); laneRow.set(l.p + ":" + l.li, r); y += h; });
        if (!shown) counters.filter((c) => c.p === pi).forEach((c) => { rows.push({ kind: "counter", c, y, h: COUNTER }); y += COUNTER; });
      });
      contentH = y + 8;
      $("spacer").style.height = contentH + "px";
      box.style.height = "min(62vh, " + (contentH + 2) + "px)";
      document.body.dataset.lanesShown = String(laneRow.size);
    }
    layout(null);
    let W = 0, H = 0, dpr = 1;
    let vs = 0, ve = Math.max(D.wall, 1000);
    let match = null, matchList = null, matchAt = -1;

    function resize() {
      dpr = window.devicePixelRatio || 1; W = box.clientWidth; H = Math.min(box.clientHeight, contentH);
      cv.width = Math.floor(W * dpr); cv.height = Math.floor(H * dpr); cv.style.width = W + "px"; cv.style.height = H + "px";
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0); draw();
    }
    const X = (t) => LABEL + (t - vs) / (ve - vs) * (W - LABEL);
    const Tm = (x) => vs + (x - LABEL) / (W - LABEL) * (ve - vs);

    // First index at one depth whose end is >= t (ends are sorted within a depth).
    function firstEnding(l, idx, t) {
      let lo = 0, hi = idx.length;
      while (lo < hi) { const m = (lo + hi) >> 1, i = idx[m]; if (l.st[i] + l.du[i] < t) lo = m + 1; else hi = m; }
      return lo;
    }
    function firstStarting(l, idx, t, lo) {
      let hi = idx.length;
      while (lo < hi) { const m = (lo + hi) >> 1; if (l.st[idx[m]] < t) lo = m + 1; else hi = m; }
      return lo;
    }

    let pending = false;
    function draw() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; paint(); }); } }

    function paint() {
      const top = box.scrollTop;
      ctx.clearRect(0, 0, W, H);
      ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
      const nsPerPx = (ve - vs) / (W - LABEL);
      for (const row of rows) {
        const ry = row.y - top;
        if (ry + row.h < AXIS || ry > H) continue;
        ctx.save(); ctx.beginPath(); ctx.rect(0, AXIS, W, H - AXIS); ctx.clip();
        if (row.kind === "proc") {
          const p = D.procs[row.p];
          ctx.fillStyle = "#e9edf3"; ctx.fillRect(0, ry, W, row.h);
          ctx.fillStyle = "#1d2330"; ctx.font = "600 12px system-ui, sans-serif";
          ctx.fillText(p.label + "  ·  " + p.status + (p.dropped ? "  ·  " + p.dropped + " records dropped" : ""), 6, ry + row.h / 2);
          ctx.font = "11px system-ui, sans-serif";
        } else if (row.kind === "lane") {
          paintLane(row.lane, ry, row.h, nsPerPx);
        } else {
          paintCounter(row.c, ry, row.h);
        }
        ctx.restore();
      }
      if ($("flows-on").checked) paintFlows(top);
      paintAxis();
      document.body.dataset.view = vs + "," + ve; // the visible time range, for tests and bookmarks
    }

    function paintLane(l, ry, h, nsPerPx) {
      ctx.fillStyle = (l.li % 2) ? "#fafbfd" : "#ffffff"; ctx.fillRect(LABEL, ry, W - LABEL, h);
      // idle gaps and waits highlighted behind the spans
      ctx.fillStyle = "rgba(217,54,62,0.13)";
      for (let g = 0; g < l.gs.length; g++) {
        if (l.ge[g] < vs || l.gs[g] > ve) continue;
        const x0 = Math.max(LABEL, X(l.gs[g])), x1 = Math.min(W, X(l.ge[g]));
        ctx.fillRect(x0, ry, Math.max(1, x1 - x0), h);
      }
      for (let d = 0; d < l.byDepth.length; d++) {
        const idx = l.byDepth[d], yy = ry + 3 + d * ROW;
        let k = firstEnding(l, idx, vs);
        while (k < idx.length) {
          const i = idx[k], s = l.st[i];
          if (s > ve) break;
          const x0 = Math.max(LABEL, X(s)), x1 = Math.min(W, X(s + l.du[i]));
          let name = l.nm[i];
          if (x1 - x0 < 1) {
            // Level of detail: one pixel column for all spans starting inside it, coloured as waiting
            // when most of a sample of them waits, else like the longest. Spans at one depth never
            // overlap, so only the last of them can reach past the pixel; it is drawn on its own.
            const px = Math.floor(x0), j = firstStarting(l, idx, Tm(px + 1), k + 1);
            let waitNs = 0, allNs = 0, longest = 0;
            for (let m = k; m < j && m < k + 32; m++) {
              const q = idx[m], d = l.du[q]; allNs += d;
              if (isWait[l.nm[q]]) waitNs += d;
              if (d > longest) { longest = d; name = l.nm[q]; }
            }
            ctx.globalAlpha = match && !match[name] ? 0.15 : 1;
            ctx.fillStyle = waitNs * 2 > allNs ? "#d9363e" : colour[name];
            ctx.fillRect(px, yy, 1, ROW - 1);
            const last = idx[j - 1];
            k = (j - 1 > k && X(l.st[last] + l.du[last]) >= px + 1) ? j - 1 : j;
            continue;
          }
          ctx.globalAlpha = match && !match[name] ? 0.15 : 1;
          ctx.fillStyle = colour[name];
          ctx.fillRect(x0, yy, x1 - x0, ROW - 1);
          if (isWait[name]) { ctx.fillStyle = "rgba(255,255,255,0.35)"; for (let hx = x0 - (x0 % 6); hx < x1; hx += 6) ctx.fillRect(Math.max(hx, x0), yy + ROW / 2 - 1, 3, 2); }
          if (x1 - x0 > 28) {
            ctx.fillStyle = isWait[name] ? "#fff" : "#111";
            const label = S[name], room = Math.floor((x1 - x0 - 6) / 6.2);
            ctx.fillText(label.length > room ? label.slice(0, Math.max(1, room - 1)) + "…" : label, x0 + 3, yy + ROW / 2);
          }
          k++;
        }
      }
      ctx.globalAlpha = 1;
      // instant events: ticks on top
      ctx.fillStyle = "#1d2330";
      let lastPx = -1;
      for (let e = 0; e < l.et.length; e++) {
        const t = l.et[e]; if (t < vs || t > ve) continue;
        const px = Math.floor(X(t)); if (px === lastPx) continue; lastPx = px;
        ctx.beginPath(); ctx.moveTo(px - 3, ry); ctx.lineTo(px + 3, ry); ctx.lineTo(px, ry + 5); ctx.fill();
      }
      const bn = D.diagnosis.bottleneck, role = bn && bn[0] === l.p && bn[1] === l.li ? "#ffd54d"
        : D.diagnosis.waiters.some((w) => w[0] === l.p && w[1] === l.li) ? "#fbe7b0" : "#fff";
      const proc = D.procs[l.p] ? " · " + procShort[l.p] : "";
      if (role !== "#fff") { ctx.fillStyle = role === "#ffd54d" ? "rgba(217,164,0,0.9)" : "rgba(217,164,0,0.45)"; ctx.fillRect(LABEL, ry, W - LABEL, 2); ctx.fillRect(LABEL, ry + h - 3, W - LABEL, 2); }
      label((role === "#ffd54d" ? "\u25B6 " : "") + l.name + proc, "#1d2330", ry, h, ry + 3 + ROW / 2, role);
      ctx.strokeStyle = "#dde1e8"; ctx.beginPath(); ctx.moveTo(0, ry + h - 0.5); ctx.lineTo(W, ry + h - 0.5); ctx.stroke();
    }

    // Flow arrows: from the stage that released a queue wait (its last span end inside the wait) to the
    // end of that wait, drawn when both lanes are shown, the arrow crosses the view and the wait is wide
    // enough to see (zoom in for the short ones); the longest first, at most MAX_ARROWS.
    const FL = (D.flows || []).slice().sort((a, b) => b[6] - a[6]), MAX_ARROWS = 40, MIN_PX = 12;
    document.body.dataset.flowsTotal = String(FL.length);
    document.body.dataset.lockFlowsTotal = String(FL.filter((f) => f[7]).length);
    function paintFlows(top) {
      const minNs = MIN_PX * (ve - vs) / (W - LABEL);
      ctx.save(); ctx.beginPath(); ctx.rect(LABEL, AXIS, W - LABEL, H - AXIS); ctx.clip();
      ctx.lineWidth = 1.2;
      let lockArrows = 0;
      let drawn = 0, lastKey = "";
      for (const f of FL) {
        if (f[6] < minNs) break; // sorted longest first: the rest are narrower
        if (drawn >= MAX_ARROWS) break;
        if (Math.max(f[2], f[5]) < vs || Math.min(f[2], f[5]) > ve) continue;
        const a = laneRow.get(f[0] + ":" + f[1]), b = laneRow.get(f[3] + ":" + f[4]);
        if (!a || !b) continue;
        const x0 = X(f[2]), x1 = X(f[5]), y0 = a.y - top + 3 + ROW / 2, y1 = b.y - top + 3 + ROW / 2;
        const key = Math.round(x0) + "," + Math.round(x1) + "," + a.y + "," + b.y;
        if (key === lastKey) continue; // many arrows on the same pixels: draw one
        lastKey = key;
        // Queue hand-offs purple, lock releases (holder → waiter) red.
        const col = f[7] ? "196,40,40" : "107,63,160";
        ctx.strokeStyle = "rgba(" + col + ",0.8)"; ctx.fillStyle = "rgba(" + col + ",0.95)";
        if (f[7]) lockArrows++;
        ctx.beginPath(); ctx.moveTo(x0, y0); ctx.bezierCurveTo(x0 + 12, y0, x1 - 12, y1, x1, y1); ctx.stroke();
        const dir = y1 >= y0 ? 1 : -1;
        ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x1 - 6, y1 - 3 * dir - 2); ctx.lineTo(x1 - 6, y1 + 3 * dir - 2); ctx.closePath(); ctx.fill();
        drawn++;
      }
      ctx.restore();
      document.body.dataset.flowsDrawn = String(drawn);
      document.body.dataset.lockFlowsDrawn = String(lockArrows);
    }

    // Lane and track names, clipped to the label column.
    function label(text, colour, ry, h, ty, bg) {
      ctx.fillStyle = bg || "#fff"; ctx.fillRect(0, ry, LABEL, h);
      ctx.save(); ctx.beginPath(); ctx.rect(0, ry, LABEL - 6, h); ctx.clip();
      ctx.fillStyle = colour; ctx.fillText(text, 10, ty); ctx.restore();
    }

    function paintCounter(c, ry, h) {
      ctx.fillStyle = "#fff"; ctx.fillRect(0, ry, W, h);
      const span = (c.max - c.min) || 1, yOf = (v) => ry + h - 4 - (v - c.min) / span * (h - 10);
      ctx.fillStyle = "rgba(60,110,200,0.25)"; ctx.strokeStyle = "#3c6ec8"; ctx.beginPath();
      let k = 0; while (k < c.t.length && c.t[k] < vs) k++;
      let prevY = yOf(k > 0 ? c.v[k - 1] : 0);
      ctx.moveTo(LABEL, ry + h - 4); ctx.lineTo(LABEL, prevY);
      let lastPx = -1;
      for (; k < c.t.length && c.t[k] <= ve; k++) {
        const px = X(c.t[k]), yy = yOf(c.v[k]);
        if (Math.floor(px) === lastPx) { ctx.lineTo(px, yy); prevY = yy; continue; }
        lastPx = Math.floor(px);
        ctx.lineTo(px, prevY); ctx.lineTo(px, yy); prevY = yy;
      }
      ctx.lineTo(W, prevY); ctx.lineTo(W, ry + h - 4); ctx.closePath(); ctx.fill(); ctx.stroke();
      label(c.name + " (max " + c.max + ")", "#3c6ec8", ry, h, ry + h / 2);
      ctx.strokeStyle = "#dde1e8"; ctx.beginPath(); ctx.moveTo(0, ry + h - 0.5); ctx.lineTo(W, ry + h - 0.5); ctx.stroke();
    }

    function paintAxis() {
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, AXIS);
      ctx.strokeStyle = "#dde1e8"; ctx.beginPath(); ctx.moveTo(0, AXIS - 0.5); ctx.lineTo(W, AXIS - 0.5); ctx.stroke();
      const range = ve - vs, raw = range / Math.max(1, (W - LABEL) / 110), p = Math.pow(10, Math.floor(Math.log10(raw)));
      const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
      ctx.fillStyle = "#6a7385"; ctx.strokeStyle = "#eef0f4";
      // One unit for the whole axis, chosen by the step (ms under 1 s), and just the decimals the step needs.
      const top = Math.max(Math.abs(vs), Math.abs(ve));
      const [unit, div] = top >= 1e9 && step >= 1e7 ? ["s", 1e9] : top >= 1e6 && step >= 1e4 ? ["ms", 1e6] : top >= 1e3 && step >= 10 ? ["µs", 1e3] : ["ns", 1];
      const dec = Math.max(0, Math.min(6, -Math.floor(Math.log10(step / div) + 1e-9)));
      const labels = [];
      for (let k = Math.ceil(vs / step); k * step <= ve; k++) {
        const t = k * step, x = X(t), v = t / div;
        const text = (Math.abs(v) < 1e-12 ? "0" : v.toFixed(dec)) + " " + unit;
        ctx.fillRect(x, AXIS - 6, 1, 6); ctx.fillText(text, x + 3, 10); labels.push(text);
      }
      document.body.dataset.axis = labels.join("|");
      ctx.fillStyle = "#1d2330"; ctx.fillText("view " + fmt(range), 8, 10);
    }

    // ---- interaction ----
    function zoom(factor, atX) {
      const t = Tm(atX === undefined ? (LABEL + W) / 2 : atX);
      let ns = (ve - vs) * factor; ns = Math.max(100, Math.min(ns, D.wall * 4 + 1000));
      const f = (t - vs) / (ve - vs); vs = t - f * ns; ve = vs + ns; draw();
    }
    function pan(dx) { const d = dx * (ve - vs) / (W - LABEL); vs += d; ve += d; draw(); }
    function show(t0, t1) { const pad = Math.max((t1 - t0) * 0.3, 500); vs = t0 - pad; ve = t1 + pad; draw(); }
    function reset() { vs = 0; ve = Math.max(D.wall, 1000); draw(); }
    function scrollToLane(p, li) { const r = rows.find((r) => r.kind === "lane" && r.lane.p === p && r.lane.li === li); if (r) box.scrollTop = Math.max(0, r.y - AXIS - 40); box.scrollIntoView({ block: "nearest" }); }

    cv.addEventListener("wheel", (e) => {
      if (e.shiftKey) return; // shift+wheel scrolls lanes
      e.preventDefault();
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) pan(e.deltaX); else zoom(Math.exp(e.deltaY * 0.0025), e.offsetX);
    }, { passive: false });
    let drag = null;
    cv.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, top: box.scrollTop }; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", (e) => {
      if (drag) { pan(drag.x - e.clientX); drag.x = e.clientX; box.scrollTop = drag.top + (drag.y - e.clientY); }
    });
    cv.addEventListener("mousemove", (e) => hover(e));
    cv.addEventListener("mouseleave", () => { tip.hidden = true; });
    cv.addEventListener("dblclick", (e) => { const h = hit(e.offsetX, e.offsetY); if (h && h.span !== undefined) show(h.lane.st[h.span], h.lane.st[h.span] + h.lane.du[h.span]); });
    window.addEventListener("keydown", (e) => {
      if (e.target === $("search")) return;
      const k = e.key.toLowerCase();
      if (k === "w" || k === "+" || k === "=") zoom(0.7);
      else if (k === "s" || k === "-") zoom(1 / 0.7);
      else if (k === "a") pan(-(W - LABEL) * 0.15);
      else if (k === "d") pan((W - LABEL) * 0.15);
      else if (k === "0" || k === "home") reset();
      else return;
      e.preventDefault();
    });
    box.addEventListener("scroll", draw);
    window.addEventListener("resize", resize);

    function hit(x, yy) {
      if (x < LABEL) return null;
      const y = yy + box.scrollTop, t = Tm(x), tol = (ve - vs) / (W - LABEL);
      const row = rows.find((r) => y >= r.y && y < r.y + r.h);
      if (!row) return null;
      if (row.kind === "counter") {
        const c = row.c; let lo = 0, hi = c.t.length;
        while (lo < hi) { const m = (lo + hi) >> 1; if (c.t[m] <= t) lo = m + 1; else hi = m; }
        return lo > 0 ? { counter: c, k: lo - 1 } : null;
      }
      if (row.kind !== "lane") return null;
      const l = row.lane, d = Math.floor((y - row.y - 3) / ROW);
      if (d >= 0 && d < l.byDepth.length) {
        const idx = l.byDepth[d];
        let k = firstEnding(l, idx, t - tol);
        if (k < idx.length && l.st[idx[k]] <= t + tol) return { lane: l, span: idx[k] };
      }
      for (let g = 0; g < l.gs.length; g++) if (l.gs[g] <= t && t <= l.ge[g]) return { lane: l, gap: g };
      return null;
    }

    function hover(e) {
      const h = hit(e.offsetX, e.offsetY);
      if (!h) { tip.hidden = true; return; }
      const lines = [];
      if (h.counter) {
        lines.push(h.counter.name + " = " + h.counter.v[h.k], "at " + fmt(h.counter.t[h.k]));
      } else if (h.span !== undefined) {
        const l = h.lane, i = h.span;
        lines.push(S[l.nm[i]] + "  " + fmt(l.du[i]), "lane " + l.name + " · starts at " + fmt(l.st[i]) + " · depth " + l.dp[i]);
        for (let f = l.fo[i]; f < l.fo[i + 1]; f++) {
          const key = Math.floor(l.fk[f] / 3), kind = l.fk[f] % 3, v = l.fv[f];
          lines.push(S[key] + " = " + (kind === 0 ? v : kind === 1 ? -v : S[v]));
        }
      } else {
        const l = h.lane; lines.push("idle " + fmt(l.ge[h.gap] - l.gs[h.gap]) + " on " + l.name, "from " + fmt(l.gs[h.gap]));
      }
      tip.textContent = lines.join("\n"); tip.hidden = false;
      tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 530) + "px"; tip.style.top = (e.clientY + 14) + "px";
    }

    // ---- search ----
    const search = $("search"), found = $("found");
    function runSearch() {
      const q = search.value.trim().toLowerCase();
      if (!q) { match = null; matchList = null; found.textContent = ""; layout(null); resize(); return; }
      match = new Uint8Array(S.length); S.forEach((s, i) => { if (s.toLowerCase().includes(q)) match[i] = 1; });
      matchList = []; let count = 0;
      const hits = new Set();
      for (const l of lanes) for (let i = 0; i < l.n; i++) if (match[l.nm[i]]) { count++; hits.add(l); if (matchList.length < 100000) matchList.push([l.st[i], l, i]); }
      matchList.sort((a, b) => a[0] - b[0]); matchAt = -1;
      // Lanes with a matching span, or whose own (or process) name matches, stay; the others are hidden.
      const named = (l) => l.name.toLowerCase().includes(q) || D.procs[l.p].label.toLowerCase().includes(q);
      layout((l) => hits.has(l) || named(l));
      const shown = laneRow.size;
      found.textContent = count + " matching span" + (count === 1 ? "" : "s") + (shown < lanes.length ? " · " + shown + " of " + lanes.length + " lanes shown" : "");
      resize();
    }
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || !matchList || !matchList.length) return;
      matchAt = (matchAt + 1) % matchList.length;
      const [s, l, i] = matchList[matchAt];
      show(s, s + l.du[i]); scrollToLane(l.p, l.li);
      found.textContent = (matchAt + 1) + " / " + matchList.length + " matching spans";
    });

    // ---- diagnosis ----
    $("verdict").textContent = D.diagnosis.verdict;
    $("flows-on").addEventListener("change", draw);
    const evList = $("evidence");
    D.diagnosis.evidence.forEach((e) => {
      const li = el("li"); li.append(el("span", e.text), el("span", " at " + fmt(e.start)));
      li.addEventListener("click", () => { show(e.start, e.start + e.dur); scrollToLane(e.p, e.l); });
      evList.append(li);
    });

    // ---- tables ----
    const stallList = $("stall-list");
    D.stalls.top.forEach((s) => {
      const li = el("li"); li.append(el("span", s.text, "stall"), el("span", " at " + fmt(s.start)));
      li.addEventListener("click", () => { show(s.start, s.start + s.dur); scrollToLane(s.p, s.l); });
      stallList.append(li);
    });
    if (!D.stalls.top.length) stallList.append(el("li", "no lane waited: no wait.* spans and no gaps between spans"));
    const laneIdle = $("lane-idle");
    D.stalls.lanes.forEach((s) => { const li = el("li", s.text); li.addEventListener("click", () => scrollToLane(s.p, s.l)); laneIdle.append(li); });

    const tbody = $("summary").tBodies[0];
    const cells = (tr, r) => { tr.append(el("td", r.label), el("td", String(r.count)), el("td", fmt(r.total_ns)), el("td", fmt(r.mean_ns)), el("td", fmt(r.p95_ns)), el("td", fmt(r.max_ns)), el("td", (r.share * 100).toFixed(1) + "%")); };
    D.summary.forEach((s) => {
      const tr = el("tr", undefined, "name"); cells(tr, s.all);
      tr.addEventListener("click", () => { search.value = s.all.label; runSearch(); });
      tbody.append(tr);
      s.lanes.slice(0, 24).forEach((r) => { const sub = el("tr", undefined, "sub"); cells(sub, r); tbody.append(sub); });
    });

    const laneList = $("lanes");
    lanes.forEach((l) => {
      const li = el("li"); li.append(el("b", l.name, "lane-name"), el("span", "  " + D.procs[l.p].label + " · " + l.n + " spans" + (l.tid ? " · tid " + l.tid : " · device")));
      li.addEventListener("click", () => scrollToLane(l.p, l.li)); laneList.append(li);
    });
    const runs = $("runs").tBodies[0];
    D.procs.forEach((p) => {
      const tr = el("tr");
      tr.append(el("td", p.label), el("td", p.argv, "wrap"), el("td", p.started), el("td", fmt(p.wall)), el("td", p.status + (p.error ? ": " + p.error : ""), "wrap"), el("td", String(p.dropped)), el("td", p.path, "wrap"));
      runs.append(tr);
    });

    resize();
    paint();
    const spans = lanes.reduce((a, l) => a + l.n, 0);
    const now = performance.now(), ms = now - T0;
    status.textContent = spans + " spans in " + lanes.length + " lanes, " + D.procs.length + " process" + (D.procs.length === 1 ? "" : "es") + ", wall " + fmt(D.wall) + " (started " + D.started + ") · drawn " + now.toFixed(0) + " ms after navigation (script " + ms.toFixed(0) + " ms)";
    document.body.dataset.readyMs = now.toFixed(1); // since navigation start: loading, parsing and drawing
    document.body.dataset.scriptMs = ms.toFixed(1);
    document.body.dataset.ready = "ok";
  }
  try { main(); } catch (e) { status.textContent = "could not draw the timeline: " + e; status.className = "error"; throw e; }
})();
