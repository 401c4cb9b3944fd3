// photdb light-curve plot: plain SVG, no libraries, works offline.
// Draws the description made by photdb.plot.plot_series (the same one the matplotlib
// plot draws): one series per band in its colour, error bars, reference epochs as open
// squares, magnitude axis inverted, the magnitude system in the axis label.
// Drag a box to zoom, double-click to reset, mouse wheel to zoom about the cursor,
// hover a point for its values, click a legend entry to hide or show that band.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const holder = document.getElementById("plot");
  const data = JSON.parse(document.getElementById("lc-data").textContent);
  if (!holder) return;
  const W = 1000, H = 460, M = { l: 70, r: 170, t: 20, b: 50 };
  const hidden = new Set();

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function extent(key, withErr) {
    let lo = Infinity, hi = -Infinity;
    data.series.forEach(s => {
      if (hidden.has(s.band)) return;
      s[key].forEach((v, i) => {
        const e = withErr && s.err[i] ? s.err[i] : 0;
        lo = Math.min(lo, v - e); hi = Math.max(hi, v + e);
      });
    });
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    const pad = 0.05 * (hi - lo);
    return [lo - pad, hi + pad];
  }
  function ticks(lo, hi, n) {
    const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map(f => f * mag).find(s => s >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(12));
    return { values: out, digits: Math.max(0, -Math.floor(Math.log10(step))) };
  }

  let view = null;  // {x: [lo, hi], y: [lo, hi]} in data units; y lo = bright (top)
  function reset() { view = { x: extent("mjd", false), y: extent("mag", true) }; draw(); }

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": data.title });
  holder.appendChild(svg);
  const tip = document.createElement("div");
  tip.className = "tip";
  holder.appendChild(tip);

  function sx(v) { return M.l + (v - view.x[0]) / (view.x[1] - view.x[0]) * (W - M.l - M.r); }
  // inverted magnitude axis: bright (small) at the top
  function sy(v) { return M.t + (v - view.y[0]) / (view.y[1] - view.y[0]) * (H - M.t - M.b); }
  function ix(px) { return view.x[0] + (px - M.l) / (W - M.l - M.r) * (view.x[1] - view.x[0]); }
  function iy(py) { return view.y[0] + (py - M.t) / (H - M.t - M.b) * (view.y[1] - view.y[0]); }

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "#fff", stroke: "#888" }, svg);
    const clip = el("clipPath", { id: "plotclip" }, el("defs", {}, svg));
    el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b }, clip);
    const tx = ticks(view.x[0], view.x[1], 8), ty = ticks(view.y[0], view.y[1], 6);
    tx.values.forEach(v => {
      el("line", { x1: sx(v), x2: sx(v), y1: M.t, y2: H - M.b, stroke: "#eee" }, svg);
      el("text", { x: sx(v), y: H - M.b + 16, "text-anchor": "middle", "font-size": 12 }, svg).textContent = v.toFixed(tx.digits);
    });
    ty.values.forEach(v => {
      el("line", { x1: M.l, x2: W - M.r, y1: sy(v), y2: sy(v), stroke: "#eee" }, svg);
      el("text", { x: M.l - 6, y: sy(v) + 4, "text-anchor": "end", "font-size": 12 }, svg).textContent = v.toFixed(ty.digits);
    });
    el("text", { x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle", "font-size": 13 }, svg).textContent = data.xlabel;
    el("text", { x: 16, y: (M.t + H - M.b) / 2, "text-anchor": "middle", "font-size": 13,
      transform: `rotate(-90 16 ${(M.t + H - M.b) / 2})` }, svg).textContent = data.ylabel;
    const g = el("g", { "clip-path": "url(#plotclip)", class: "points" }, svg);
    data.series.forEach(s => {
      if (hidden.has(s.band)) return;
      s.mjd.forEach((x, i) => {
        const y = s.mag[i], e = s.err[i], X = sx(x), Y = sy(y);
        if (e) el("line", { x1: X, x2: X, y1: sy(y - e), y2: sy(y + e), stroke: s.colour, "stroke-width": 1 }, g);
        const attrs = { fill: s.reference[i] ? "none" : s.colour, stroke: s.colour, "stroke-width": 1.5,
          class: "pt" + (s.reference[i] ? " ref" : ""), "data-band": s.band, "data-i": i,
          "pointer-events": "all" };
        const p = s.reference[i]
          ? el("rect", Object.assign({ x: X - 5, y: Y - 5, width: 10, height: 10 }, attrs), g)
          : el("circle", Object.assign({ cx: X, cy: Y, r: 4 }, attrs), g);
        p.addEventListener("mouseenter", ev => {
          tip.textContent = `${s.label}${s.reference[i] ? " (reference)" : ""}\nMJD ${x.toFixed(5)}\n` +
            `${s.kind === "differential" ? "Δmag" : "mag"} ${y.toFixed(4)}${e ? " ± " + e.toFixed(4) : ""}`;
          tip.style.display = "block";
          const r = holder.getBoundingClientRect();
          tip.style.left = (ev.clientX - r.left + 12) + "px"; tip.style.top = (ev.clientY - r.top + 12) + "px";
          const row = document.getElementById("row-" + s.row[i]);
          if (row) row.style.outline = "2px solid " + s.colour;
        });
        p.addEventListener("mouseleave", () => {
          tip.style.display = "none";
          const row = document.getElementById("row-" + s.row[i]);
          if (row) row.style.outline = "";
        });
      });
    });
    // legend: one entry per band, click to hide/show
    let ly = M.t + 14;
    data.series.forEach(s => {
      const item = el("g", { class: "legend", "data-band": s.band, cursor: "pointer", opacity: hidden.has(s.band) ? 0.35 : 1 }, svg);
      el("circle", { cx: W - M.r + 16, cy: ly - 4, r: 5, fill: s.colour }, item);
      el("text", { x: W - M.r + 26, y: ly, "font-size": 12 }, item).textContent = s.label + (s.kind === "differential" ? " (diff.)" : "");
      item.addEventListener("click", () => { hidden.has(s.band) ? hidden.delete(s.band) : hidden.add(s.band); draw(); });
      ly += 17;
    });
    if (data.series.some(s => s.reference.some(Boolean))) {
      el("rect", { x: W - M.r + 11, y: ly - 9, width: 10, height: 10, fill: "none", stroke: "#444" }, svg);
      el("text", { x: W - M.r + 26, y: ly, "font-size": 12 }, svg).textContent = "reference epoch";
    }
    if (!data.series.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 14 }, svg).textContent = "no points with a magnitude";
    }
  }

  // zoom: drag a box; double-click resets; wheel zooms about the cursor
  function svgPoint(ev) {
    const r = svg.getBoundingClientRect();
    return [(ev.clientX - r.left) / r.width * W, (ev.clientY - r.top) / r.height * H];
  }
  let drag = null, box = null;
  svg.addEventListener("mousedown", ev => {
    drag = svgPoint(ev);
    box = el("rect", { fill: "rgba(30,80,160,.12)", stroke: "#1e50a0", "stroke-dasharray": "4 2" }, svg);
  });
  svg.addEventListener("mousemove", ev => {
    if (!drag) return;
    const [x, y] = svgPoint(ev);
    box.setAttribute("x", Math.min(x, drag[0])); box.setAttribute("y", Math.min(y, drag[1]));
    box.setAttribute("width", Math.abs(x - drag[0])); box.setAttribute("height", Math.abs(y - drag[1]));
  });
  window.addEventListener("mouseup", ev => {
    if (!drag) return;
    const [x, y] = svgPoint(ev), d = drag;
    drag = null;
    if (Math.abs(x - d[0]) > 5 && Math.abs(y - d[1]) > 5) {
      view = { x: [ix(Math.min(x, d[0])), ix(Math.max(x, d[0]))], y: [iy(Math.min(y, d[1])), iy(Math.max(y, d[1]))] };
      draw();
    } else if (box) {
      box.remove();  // a click, not a drag: leave the plot as it is (a double-click resets)
    }
    box = null;
  });
  svg.addEventListener("dblclick", reset);
  svg.addEventListener("wheel", ev => {
    ev.preventDefault();
    const [x, y] = svgPoint(ev), cx = ix(x), cy = iy(y), f = ev.deltaY > 0 ? 1.25 : 0.8;
    view = { x: [cx - (cx - view.x[0]) * f, cx + (view.x[1] - cx) * f], y: [cy - (cy - view.y[0]) * f, cy + (view.y[1] - cy) * f] };
    draw();
  }, { passive: false });
  window.photdbPlot = { reset: reset, view: () => view, hidden: hidden };
  reset();
  holder.setAttribute("data-rendered", String(svg.querySelectorAll(".pt").length));
})();
