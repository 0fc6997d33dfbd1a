// Canvas plots: line/scatter plots with linear or log axes, bar histograms and heat maps, each
// with labelled axes, ticks and a legend or colour bar. Drawing only: every number plotted comes
// from aqn-core (wasm) or the WGSL kernels.

export const PALETTE = ['#2f6fde', '#e4572e', '#17a67a', '#a259c4', '#f0a202', '#1b998b', '#d7263d', '#5c6b73'];

const FONT = '12px "DejaVu Sans", system-ui, sans-serif';
const SMALL = '11px "DejaVu Sans", system-ui, sans-serif';
const MARGIN = { left: 64, right: 16, top: 28, bottom: 46 };

// Sizes the canvas backing store to its CSS size times the device pixel ratio.
function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const h = canvas.clientHeight || 300;
  legendBottom = h - MARGIN.bottom;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  return { ctx, w, h };
}

// "Nice" linear ticks covering [lo, hi].
export function linearTicks(lo, hi, count = 6) {
  if (!(hi > lo)) { return [lo]; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

// Decade ticks for a log axis over [lo, hi] (lo > 0).
function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const t = Math.pow(10, e);
    if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) { ticks.push(t); }
  }
  if (ticks.length < 2) { return linearTicks(lo, hi, 4).filter((t) => t > 0); }
  return ticks;
}

export function fmt(v) {
  if (v === 0) { return '0'; }
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) { return v.toExponential(a >= 1e5 ? 1 : 0).replace('e+', 'e'); }
  return Number(v.toPrecision(4)).toString();
}

function axisScale(lo, hi, log, a, b) {
  if (log) {
    const l0 = Math.log10(lo); const l1 = Math.log10(hi);
    return (v) => a + ((Math.log10(v) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

function extent(values, log) {
  let lo = Infinity; let hi = -Infinity;
  for (const v of values) {
    if (v === null || v === undefined || !Number.isFinite(v) || (log && v <= 0)) { continue; }
    if (v < lo) { lo = v; }
    if (v > hi) { hi = v; }
  }
  if (lo === Infinity) { return log ? [1e-3, 1] : [0, 1]; }
  if (lo === hi) {
    if (log) { return [lo / 2, hi * 2]; }
    const pad = Math.abs(lo) * 0.1 || 1;
    return [lo - pad, hi + pad];
  }
  // A little room so that lines on the extremes do not sit on the frame.
  if (log) { const r = Math.pow(hi / lo, 0.04); return [lo / r, hi * r]; }
  return [lo, hi];
}

function frame(ctx, w, h, opts, xs, ys, xTicks, yTicks) {
  const { left, right, top, bottom } = MARGIN;
  ctx.font = SMALL;
  ctx.strokeStyle = '#e8ebf0';
  ctx.lineWidth = 1;
  ctx.fillStyle = '#5d6677';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const t of xTicks) {
    const x = xs(t);
    if (opts.grid !== false) { ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, h - bottom); ctx.stroke(); }
    ctx.fillText(fmt(t), x, h - bottom + 5);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const t of yTicks) {
    const y = ys(t);
    if (opts.grid !== false) { ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke(); }
    ctx.fillText(fmt(t), left - 6, y);
  }
  ctx.strokeStyle = '#9aa3b2';
  ctx.strokeRect(left, top, w - left - right, h - top - bottom);
  ctx.fillStyle = '#1d2433';
  ctx.font = FONT;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  if (opts.xLabel) { ctx.fillText(opts.xLabel + (opts.xLog ? ' (log)' : ''), left + (w - left - right) / 2, h - 6); }
  if (opts.title) {
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.font = 'bold ' + FONT;
    ctx.fillText(opts.title, left, 7);
  }
  if (opts.yLabel) {
    ctx.save();
    ctx.translate(14, top + (h - top - bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = FONT;
    ctx.fillText(opts.yLabel + (opts.yLog ? ' (log)' : ''), 0, 0);
    ctx.restore();
  }
}

let legendBottom = 0;

function legend(ctx, w, items, where = 'right') {
  if (!items.length) { return; }
  ctx.font = SMALL;
  const rowH = 16;
  const width = Math.min(260, Math.max(...items.map((it) => ctx.measureText(it.name).width)) + 34);
  const x0 = where.startsWith('left') ? MARGIN.left + 6 : w - MARGIN.right - width - 6;
  const y0 = where.endsWith('bottom') ? legendBottom - 6 - (rowH * items.length + 6) : MARGIN.top + 6;
  ctx.fillStyle = 'rgba(255,255,255,0.88)';
  ctx.strokeStyle = '#dfe3ea';
  ctx.fillRect(x0, y0, width, rowH * items.length + 6);
  ctx.strokeRect(x0, y0, width, rowH * items.length + 6);
  items.forEach((it, i) => {
    const y = y0 + 3 + rowH * i + rowH / 2;
    ctx.strokeStyle = it.color;
    ctx.fillStyle = it.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(it.dash || []);
    if (it.points) {
      ctx.beginPath(); ctx.arc(x0 + 15, y, 3, 0, 2 * Math.PI); ctx.fill();
    } else {
      ctx.beginPath(); ctx.moveTo(x0 + 6, y); ctx.lineTo(x0 + 24, y); ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.fillStyle = '#1d2433';
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    let name = it.name;
    while (ctx.measureText(name).width > width - 34 && name.length > 4) { name = '…' + name.slice(2); }
    ctx.fillText(name, x0 + 30, y);
  });
}

// Line plot. series: [{name, x: number[], y: (number|null)[], color?, dash?, points?, band?: {lo, hi}}].
export function linePlot(canvas, opts) {
  const { ctx, w, h } = setup(canvas);
  const series = opts.series || [];
  const allX = series.flatMap((s) => Array.from(s.x));
  const allY = series.flatMap((s) => Array.from(s.y).concat(s.band ? [...s.band.lo, ...s.band.hi] : []));
  const [x0, x1] = opts.xRange || extent(allX, opts.xLog);
  let [y0, y1] = opts.yRange || extent(allY, opts.yLog);
  if (!opts.yLog && !opts.yRange && y0 > 0 && y0 < (y1 - y0) * 0.5) { y0 = 0; }
  const xs = axisScale(x0, x1, opts.xLog, MARGIN.left, w - MARGIN.right);
  const ys = axisScale(y0, y1, opts.yLog, h - MARGIN.bottom, MARGIN.top);
  frame(ctx, w, h, opts, xs, ys, opts.xLog ? logTicks(x0, x1) : linearTicks(x0, x1), opts.yLog ? logTicks(y0, y1) : linearTicks(y0, y1, 5));
  ctx.save();
  ctx.beginPath();
  ctx.rect(MARGIN.left, MARGIN.top, w - MARGIN.left - MARGIN.right, h - MARGIN.top - MARGIN.bottom);
  ctx.clip();
  const ok = (v, log) => v !== null && v !== undefined && Number.isFinite(v) && (!log || v > 0);
  series.forEach((s, k) => {
    const color = s.color || PALETTE[k % PALETTE.length];
    if (s.band) {
      ctx.fillStyle = color + '33';
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < s.x.length; i++) {
        if (!ok(s.band.hi[i], opts.yLog)) { continue; }
        const px = xs(s.x[i]); const py = ys(s.band.hi[i]);
        if (started) { ctx.lineTo(px, py); } else { ctx.moveTo(px, py); started = true; }
      }
      for (let i = s.x.length - 1; i >= 0; i--) {
        if (!ok(s.band.lo[i], opts.yLog)) { continue; }
        ctx.lineTo(xs(s.x[i]), ys(s.band.lo[i]));
      }
      ctx.closePath();
      ctx.fill();
    }
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = s.width || 2;
    ctx.setLineDash(s.dash || []);
    if (s.points) {
      const r = s.radius || 1.6;
      for (let i = 0; i < s.x.length; i++) {
        if (!ok(s.y[i], opts.yLog) || !ok(s.x[i], opts.xLog)) { continue; }
        ctx.fillRect(xs(s.x[i]) - r / 2, ys(s.y[i]) - r / 2, r, r);
      }
    } else {
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < s.x.length; i++) {
        if (!ok(s.y[i], opts.yLog) || !ok(s.x[i], opts.xLog)) { pen = false; continue; }
        const px = xs(s.x[i]); const py = ys(s.y[i]);
        if (pen) { ctx.lineTo(px, py); } else { ctx.moveTo(px, py); pen = true; }
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  });
  ctx.restore();
  if (opts.legend !== false) {
    legend(ctx, w, series.filter((s) => s.name).map((s, k) => ({ name: s.name, color: s.color || PALETTE[k % PALETTE.length], dash: s.dash, points: s.points })), opts.legendPos);
  }
  if (!series.some((s) => s.x.length)) { emptyNote(ctx, w, h, opts.empty || 'no data'); }
}

function emptyNote(ctx, w, h, text) {
  ctx.fillStyle = '#8a93a3';
  ctx.font = FONT;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.fillText(text, w / 2, h / 2);
}

// Histogram bars over [lo, hi] split into counts.length bins.
export function barPlot(canvas, opts) {
  const { ctx, w, h } = setup(canvas);
  const counts = Array.from(opts.counts);
  const n = counts.length;
  const [lo, hi] = [opts.lo, opts.hi > opts.lo ? opts.hi : opts.lo + 1];
  const yMax = Math.max(1, ...counts);
  const yLo = opts.yLog ? 0.5 : 0;
  const xs = axisScale(lo, hi, false, MARGIN.left, w - MARGIN.right);
  const ys = axisScale(opts.yLog ? yLo : 0, yMax * 1.08, opts.yLog, h - MARGIN.bottom, MARGIN.top);
  frame(ctx, w, h, opts, xs, ys, linearTicks(lo, hi, 6), opts.yLog ? logTicks(1, yMax * 1.08) : linearTicks(0, yMax * 1.08, 5));
  ctx.fillStyle = opts.color || PALETTE[0];
  for (let k = 0; k < n; k++) {
    if (counts[k] <= 0) { continue; }
    const a = xs(lo + (k * (hi - lo)) / n);
    const b = xs(lo + ((k + 1) * (hi - lo)) / n);
    const y = ys(Math.max(counts[k], yLo));
    ctx.fillRect(a + 0.5, y, Math.max(1, b - a - 1), h - MARGIN.bottom - y);
  }
  if (opts.legendText) { legend(ctx, w, [{ name: opts.legendText, color: opts.color || PALETTE[0] }]); }
  if (!n) { emptyNote(ctx, w, h, opts.empty || 'no data'); }
}

const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];

export function colormap(t) {
  const u = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(u));
  const f = u - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

// Heat map of data[rows * cols] (row-major; NaN drawn grey), with a colour bar.
// opts: {xLabel, yLabel, colorLabel, log, xRange: [lo, hi], yRange: [lo, hi], title}.
export function heatMap(canvas, opts) {
  const { ctx, w, h } = setup(canvas);
  const { rows, cols, data } = opts;
  const barW = 14;
  const right = 70;
  const plotW = w - MARGIN.left - right - barW;
  const plotH = h - MARGIN.top - MARGIN.bottom;
  let lo = Infinity; let hi = -Infinity;
  for (const v of data) {
    if (!Number.isFinite(v) || (opts.log && v <= 0)) { continue; }
    lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  if (lo === Infinity) { lo = opts.log ? 1e-3 : 0; hi = opts.log ? 1 : 1; }
  if (lo === hi) { hi = opts.log ? lo * 10 : lo + 1; }
  const norm = opts.log
    ? (v) => (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
    : (v) => (v - lo) / (hi - lo);
  const img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const v = data[i];
    // NaN: mid grey; on a log scale, zero (e.g. warm-up sigma): light grey.
    const c = Number.isFinite(v) && (!opts.log || v > 0) ? colormap(norm(v)) : (Number.isFinite(v) ? [226, 229, 236] : [190, 190, 190]);
    img.data.set([c[0], c[1], c[2], 255], i * 4);
  }
  const off = document.createElement('canvas');
  off.width = cols; off.height = rows;
  off.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, MARGIN.left, MARGIN.top, plotW, plotH);
  const xr = opts.xRange || [0, cols];
  const yr = opts.yRange || [0, rows];
  const xs = axisScale(xr[0], xr[1], false, MARGIN.left, MARGIN.left + plotW);
  const ys = axisScale(yr[0], yr[1], false, MARGIN.top, MARGIN.top + plotH);
  frame(ctx, MARGIN.left + plotW + MARGIN.right, h, { ...opts, grid: false }, xs, ys, linearTicks(xr[0], xr[1], 6), linearTicks(yr[0], yr[1], 5));
  // Colour bar.
  const bx = MARGIN.left + plotW + 12;
  for (let y = 0; y < plotH; y++) {
    const c = colormap(1 - y / plotH);
    ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
    ctx.fillRect(bx, MARGIN.top + y, barW, 1);
  }
  ctx.strokeStyle = '#9aa3b2';
  ctx.strokeRect(bx, MARGIN.top, barW, plotH);
  ctx.fillStyle = '#5d6677';
  ctx.font = SMALL;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  const ticks = opts.log ? logTicks(lo, hi) : linearTicks(lo, hi, 4);
  for (const t of ticks) {
    const y = MARGIN.top + plotH * (1 - norm(t));
    if (y < MARGIN.top - 1 || y > MARGIN.top + plotH + 1) { continue; }
    ctx.fillText(fmt(t), bx + barW + 4, y);
  }
  if (opts.colorLabel) {
    ctx.save();
    ctx.translate(w - 8, MARGIN.top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.font = FONT;
    ctx.fillStyle = '#1d2433';
    ctx.fillText(opts.colorLabel + (opts.log ? ' (log)' : ''), 0, 0);
    ctx.restore();
  }
  return { lo, hi };
}
