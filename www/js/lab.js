// Quantization lab: a generated or uploaded tensor, fake-quantized with a format on WebGPU (when an
// adapter exists and the kernels cover the spec) or in wasm on the CPU; the docs/spec.md section 1
// metrics, a histogram of q - x, x against q(x) and the error of every block.

import { barPlot, heatMap, linePlot, fmt } from './plot.js';
import { get, h, messageOf, set, showError } from './state.js';
import { runOnGpu } from './gpu.js';

const SIZES = [4096, 65536, 262144, 1048576, 4194304, 16777216];
const DIST_PARAMS = {
  normal: [['std', 'std', '1']],
  laplace: [['b', 'scale b', '1']],
  uniform: [['a', 'half width a', '1']],
  'weight-like': [['std', 'std', '0.02'], ['outliers', 'outlier fraction', '0.01'], ['factor', 'outlier factor', '10']],
};
const METRICS = [
  ['count', 'elements (finite pairs)', (v) => v.toLocaleString('en-US')],
  ['non_finite', 'non-finite pairs', (v) => v.toLocaleString('en-US')],
  ['mean_relative_error', 'mean relative error', (v) => v.toFixed(5)],
  ['norm_relative_error', '‖q − x‖ / ‖x‖', (v) => v.toFixed(5)],
  ['sqnr_db', 'SQNR (dB)', (v) => (Number.isFinite(v) ? v.toFixed(3) : '∞')],
  ['deadzone_ratio', 'deadzone (x ≠ 0, q = 0)', (v) => (100 * v).toFixed(3) + ' %'],
  ['saturation_ratio', 'saturation (|q| ≥ 0.99 max|q|)', (v) => (100 * v).toFixed(4) + ' %'],
  ['mean_abs_error', 'mean |q − x|', (v) => v.toExponential(4)],
  ['max_abs_error', 'max |q − x|', (v) => v.toExponential(4)],
  ['norm', '‖x‖', (v) => v.toExponential(5)],
];

export function createLab(root, aqn, gpuReady) {
  let gpuInfo = { reason: 'WebGPU is still starting' };
  const st = {
    source: get('src', 'generate'),
    dist: get('dist', 'normal'),
    params: {},
    n: Number(get('n', '1048576')),
    row: get('row', '1024'),
    seed: get('seed', '0'),
    format: get('fmt', 'mxfp4'),
    mode: get('mode', 'floor'),
    scaling: get('scaling', 'two-level'),
    blocks: get('blocks', 'row'),
    rounding: get('round', 'nearest'),
    srSeed: get('srseed', '0'),
    bins: get('bins', '64'),
    backend: get('backend', 'auto'),
  };
  for (const [d, list] of Object.entries(DIST_PARAMS)) {
    st.params[d] = {};
    for (const [key, , def] of list) { st.params[d][key] = d === st.dist ? get('p_' + key, def) : def; }
  }
  let upload = null; // {bytes, name, tensors}
  let cache = { key: null, x: null };
  let timer = null;

  const sel = (name, options, value, onchange) => h('select', { name, onchange }, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
  const field = (label, input) => h('label', {}, label, input);
  const errorBox = h('div', { class: 'error', id: 'lab-error', hidden: true });
  const paramBox = h('div');
  const uploadBox = h('div');
  const genBox = h('div');
  const status = h('div', { class: 'status', id: 'lab-status' }, 'waiting for input…');
  const table = h('table', { class: 'metrics', id: 'lab-metrics' });
  const canvases = {
    hist: h('canvas', { class: 'plot', id: 'lab-hist' }),
    scatter: h('canvas', { class: 'plot', id: 'lab-scatter' }),
    blocks: h('canvas', { class: 'plot tall', id: 'lab-blocks' }),
  };

  const rerun = () => { clearTimeout(timer); timer = setTimeout(run, 120); };
  const change = (key) => (e) => { st[key] = e.target.value; renderControls(); rerun(); };

  function renderParams() {
    paramBox.replaceChildren(...DIST_PARAMS[st.dist].map(([key, label]) => field(label, h('input', {
      name: 'p_' + key, value: st.params[st.dist][key], type: 'text', inputmode: 'decimal',
      oninput: (e) => { st.params[st.dist][key] = e.target.value; rerun(); },
    }))));
  }

  function renderControls() {
    const fmtOpts = h('div', {},
      st.format === 'mxfp4' ? field('scale mode', sel('mode', ['floor', 'ceil', 'even', 'rceil'].map((m) => [m, m]), st.mode, change('mode'))) : null,
      st.format === 'nvfp4' ? field('scaling', sel('scaling', [['two-level', 'two-level (tensor g)'], ['single-level', 'single-level']], st.scaling, change('scaling'))) : null,
      st.format === 'nvfp4' ? field('blocks', sel('blocks', [['row', '1×16 rows'], ['tile16x16', '16×16 tiles']], st.blocks, change('blocks'))) : null,
      ['mxfp4', 'nvfp4'].includes(st.format) ? field('rounding', sel('round', [['nearest', 'nearest even'], ['stochastic', 'stochastic']], st.rounding, change('rounding'))) : null,
      ['mxfp4', 'nvfp4'].includes(st.format) && st.rounding === 'stochastic' ? field('SR seed', h('input', { name: 'srseed', value: st.srSeed, oninput: (e) => { st.srSeed = e.target.value; rerun(); } })) : null,
    );
    formatBox.replaceChildren(
      field('format', sel('fmt', [['mxfp4', 'MXFP4 (E2M1, E8M0 / 32)'], ['nvfp4', 'NVFP4 (E2M1, E4M3 / 16)'], ['fp8', 'FP8 E4M3 (tensor scale)'], ['bf16', 'BF16']], st.format, change('format'))),
      fmtOpts,
      field('histogram bins', h('input', { name: 'bins', value: st.bins, type: 'number', min: 2, max: 1024, oninput: (e) => { st.bins = e.target.value; rerun(); } })),
      field('compute on', sel('backend', [['auto', 'WebGPU if available'], ['gpu', 'WebGPU only'], ['cpu', 'CPU (wasm)']], st.backend, change('backend'))),
    );
    genBox.hidden = st.source !== 'generate';
    uploadBox.hidden = st.source !== 'upload';
  }

  const sourceSel = sel('src', [['generate', 'generated'], ['upload', 'uploaded file']], st.source, (e) => { st.source = e.target.value; renderControls(); rerun(); });
  const distSel = sel('dist', [['normal', 'normal N(0, std²)'], ['laplace', 'Laplace(0, b)'], ['uniform', 'uniform [−a, a)'], ['weight-like', 'weight-like with outliers']], st.dist, (e) => { st.dist = e.target.value; renderParams(); rerun(); });
  const sizeSel = sel('n', SIZES.map((s) => [String(s), s.toLocaleString('en-US')]), String(st.n), (e) => { st.n = Number(e.target.value); rerun(); });
  genBox.append(
    field('distribution', distSel), paramBox,
    field('elements', sizeSel),
    field('row length', h('input', { name: 'row', value: st.row, oninput: (e) => { st.row = e.target.value; rerun(); } })),
    field('seed', h('input', { name: 'seed', value: st.seed, oninput: (e) => { st.seed = e.target.value; rerun(); } })),
    h('p', { class: 'note' }, 'Same tensors as ', h('code', {}, 'aqn-native quant-error --generate DIST --seed S --elements N'), '.'),
  );
  const tensorSel = h('select', { name: 'tensor', onchange: rerun });
  const fileInput = h('input', { type: 'file', name: 'upload', accept: '.safetensors,.npy', onchange: onFile });
  uploadBox.append(field('file', fileInput), field('tensor', tensorSel), h('p', { class: 'note' }, '.safetensors (f32, f16, bf16) or .npy (f2, f4, f8); quantized along the last axis.'));
  const formatBox = h('div');

  async function onFile() {
    const file = fileInput.files[0];
    if (!file) { return; }
    const bytes = new Uint8Array(await file.arrayBuffer());
    try {
      const tensors = JSON.parse(aqn.list_tensors(bytes, file.name));
      upload = { bytes, name: file.name, tensors };
      tensorSel.replaceChildren(...tensors.map((t) => h('option', { value: t.name, disabled: !t.readable }, `${t.name} [${t.shape.join('×')}] ${t.dtype}`)));
      const first = tensors.find((t) => t.readable);
      if (first) { tensorSel.value = first.name; }
      showError(errorBox, '');
      rerun();
    } catch (e) {
      upload = null;
      tensorSel.replaceChildren();
      fail(messageOf(e));
    }
  }

  root.append(
    h('div', { class: 'card controls' },
      h('h2', {}, 'Tensor'), field('source', sourceSel), genBox, uploadBox,
      h('h3', {}, 'Quantizer'), formatBox, errorBox),
    h('div', {},
      h('div', { class: 'card' }, h('h2', {}, 'Quantization error'), status, table),
      h('div', { class: 'plots', style: 'margin-top:16px' },
        h('div', { class: 'card' }, canvases.hist),
        h('div', { class: 'card' }, canvases.scatter),
        h('div', { class: 'card wide' }, canvases.blocks))),
  );
  renderParams();
  renderControls();

  function specString() {
    let s = st.format;
    if (st.format === 'mxfp4') { s += ':' + st.mode; }
    if (st.format === 'nvfp4') { s += ':' + st.scaling + (st.blocks === 'tile16x16' ? ':tile16x16' : ''); }
    if (['mxfp4', 'nvfp4'].includes(st.format) && st.rounding === 'stochastic') { s += ':sr=' + st.srSeed.trim(); }
    return s;
  }

  function distString() {
    return st.dist + DIST_PARAMS[st.dist].map(([key]) => `:${key}=${st.params[st.dist][key].trim()}`).join('');
  }

  function fail(message) {
    showError(errorBox, message);
    document.body.dataset.lab = 'error';
    status.textContent = 'not computed: see the error on the left';
    table.replaceChildren();
    const empty = 'not computed: invalid input';
    barPlot(canvases.hist, { counts: [], lo: -1, hi: 1, title: 'Histogram of errors', xLabel: 'q(x) − x', yLabel: 'elements', empty });
    linePlot(canvases.scatter, { title: 'x vs q(x)', xLabel: 'x', yLabel: 'q(x)', series: [], empty });
    linePlot(canvases.blocks, { title: 'Per-block error', xLabel: 'block column', yLabel: 'block row', series: [], empty });
  }

  function saveState() {
    const p = {};
    for (const [key] of DIST_PARAMS[st.dist]) { p['p_' + key] = st.params[st.dist][key]; }
    for (const d of Object.keys(DIST_PARAMS)) { for (const [key] of DIST_PARAMS[d]) { if (!(('p_' + key) in p)) { p['p_' + key] = null; } } }
    set({ src: st.source, dist: st.dist, n: st.n, row: st.row, seed: st.seed, fmt: st.format, mode: st.format === 'mxfp4' ? st.mode : null, scaling: st.format === 'nvfp4' ? st.scaling : null, blocks: st.format === 'nvfp4' && st.blocks !== 'row' ? st.blocks : null, round: st.rounding !== 'nearest' ? st.rounding : null, srseed: st.rounding === 'stochastic' ? st.srSeed : null, bins: st.bins, backend: st.backend, ...p });
  }

  // The tensor to quantize: {x, rowLen, label}; throws the core's message.
  function tensor() {
    if (st.source === 'upload') {
      if (!upload) { throw new Error('choose a .safetensors or .npy file'); }
      const t = aqn.read_tensor(upload.bytes, upload.name, tensorSel.value);
      const x = t.data();
      const rowLen = t.row_len();
      t.free();
      return { x, rowLen, label: `${tensorSel.value} of ${upload.name}` };
    }
    const dist = distString();
    const key = `${dist}|${st.n}|${st.seed}`;
    if (cache.key !== key) {
      cache = { key, x: aqn.generate(dist, st.n, st.seed), label: aqn.distribution_label(dist) };
    }
    const rowLen = Number(st.row);
    if (!Number.isInteger(rowLen) || rowLen < 1) { throw new Error(`row length \`${st.row}\` is not a positive integer`); }
    return { x: cache.x, rowLen, label: cache.label };
  }

  async function run() {
    saveState();
    document.body.dataset.lab = 'running';
    gpuInfo = await gpuReady;
    let t;
    let spec;
    try {
      spec = specString();
      aqn.format_label(spec);
      t = tensor();
    } catch (e) {
      fail(messageOf(e));
      return;
    }
    const bins = Number(st.bins);
    let backend = 'cpu';
    let reason = '';
    let plan = null;
    if (st.backend !== 'cpu') {
      if (!gpuInfo.gpu) {
        reason = gpuInfo.reason;
      } else {
        try {
          plan = aqn.gpu_plan(spec, t.x.length, t.rowLen, bins);
          backend = 'webgpu';
        } catch (e) {
          reason = messageOf(e);
        }
      }
      if (st.backend === 'gpu' && backend !== 'webgpu') {
        fail(`WebGPU only was asked for, but: ${reason}`);
        return;
      }
    }
    const t0 = performance.now();
    let q;
    let stats;
    try {
      if (backend === 'webgpu') {
        ({ q, stats } = await runOnGpu(gpuInfo.gpu, plan, t.x));
        plan.free();
      } else {
        const r = aqn.cpu_run(spec, t.x, t.rowLen, bins);
        q = r.q();
        stats = r.take_stats();
        r.free();
      }
    } catch (e) {
      fail(messageOf(e));
      return;
    }
    const ms = performance.now() - t0;
    showError(errorBox, '');
    const label = aqn.format_label(spec);
    const metrics = JSON.parse(stats.metrics_json());
    status.replaceChildren(...[
      h('span', { class: 'badge ' + (backend === 'webgpu' ? 'gpu' : 'cpu'), id: 'lab-backend', 'data-backend': backend }, backend === 'webgpu' ? `WebGPU: ${gpuInfo.gpu.name}` : 'CPU (wasm)'),
      ` ${label} on ${t.label}, ${t.x.length.toLocaleString('en-US')} elements in rows of ${t.rowLen}: ${ms.toFixed(1)} ms`,
      backend === 'cpu' && reason ? h('div', { class: 'note', id: 'lab-fallback' }, 'Not on WebGPU: ' + reason) : null,
      metrics.non_finite > 0 ? h('div', { class: 'error', id: 'lab-non-finite' }, `${metrics.non_finite.toLocaleString('en-US')} pairs hold NaN or an infinity and are left out of every metric` + (metrics.count === 0 ? '; no finite value is left, so there is no metric to show.' : '.')) : null,
    ].filter(Boolean));
    // With no finite pair every metric would be a meaningless 0 or infinity: none is shown.
    const shown = (key) => metrics.count > 0 || key === 'count' || key === 'non_finite';
    const digest = aqn.digest(q);
    table.replaceChildren(
      h('tr', {}, h('th', {}, 'metric'), h('th', {}, 'value')),
      ...METRICS.map(([key, name, f]) => h('tr', {}, h('td', {}, name), shown(key)
        ? h('td', { class: 'num', 'data-metric': key, 'data-value': String(metrics[key] ?? 'Infinity') }, f(metrics[key] ?? Infinity))
        : h('td', { class: 'num', 'data-metric': key, 'data-value': 'n/a' }, 'n/a'))),
      h('tr', {}, h('td', {}, 'q digest (FNV-1a of the bits)'), h('td', { class: 'num', 'data-metric': 'q_digest', 'data-value': digest }, digest)),
    );
    draw(t, q, stats, label);
    stats.free();
    document.body.dataset.lab = 'done';
    document.body.dataset.labMs = ms.toFixed(1);
  }

  function draw(t, q, stats, label) {
    const range = stats.hist_range();
    barPlot(canvases.hist, { counts: stats.counts(), lo: -range, hi: range, title: 'Histogram of errors', xLabel: 'q(x) − x', yLabel: 'elements', yLog: true, legendText: label });
    const n = t.x.length;
    const stride = Math.max(1, Math.floor(n / 12000));
    const xs = []; const qs = [];
    for (let i = 0; i < n; i += stride) { if (Number.isFinite(t.x[i]) && Number.isFinite(q[i])) { xs.push(t.x[i]); qs.push(q[i]); } }
    let lo = Infinity; let hi = -Infinity;
    for (const v of xs) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    linePlot(canvases.scatter, {
      legendPos: 'left',
      title: `x vs q(x) (${xs.length.toLocaleString('en-US')} of ${n.toLocaleString('en-US')} points)`, xLabel: 'x', yLabel: 'q(x)',
      series: [
        { name: 'y = x', x: [lo, hi], y: [lo, hi], color: '#9aa3b2', dash: [4, 4], width: 1 },
        { name: label, x: xs, y: qs, points: true, color: '#2f6fde' },
      ],
    });
    const rows = stats.block_rows();
    const cols = stats.block_cols();
    const err = stats.block_error();
    // Rows pooled (worst block) to at most 256 drawn rows.
    const pool = Math.max(1, Math.ceil(rows / 256));
    const outRows = Math.ceil(rows / pool);
    const data = new Float32Array(outRows * cols).fill(NaN);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = err[r * cols + c];
        const k = Math.floor(r / pool) * cols + c;
        if (Number.isFinite(v) && !(data[k] >= v)) { data[k] = v; }
      }
    }
    heatMap(canvases.blocks, {
      data, rows: outRows, cols, log: true, colorLabel: '‖q − x‖ / ‖x‖ per block',
      title: `Per-block error (${rows.toLocaleString('en-US')} × ${cols} blocks${pool > 1 ? `, worst of every ${pool} rows` : ''})`,
      xLabel: 'block column', yLabel: 'block row', xRange: [0, cols], yRange: [0, rows],
    });
  }

  return { run, show: () => { if (!document.body.dataset.lab) { run(); } } };
}

export { fmt };
