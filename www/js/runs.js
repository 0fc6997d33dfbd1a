// Run viewer: a run's metrics.jsonl and noise_audit.jsonl (docs/run_format.md), parsed by
// aqn-core's run_log through wasm; accuracy, reward, the scheduled sigma and the realized noise.

import { linePlot, PALETTE } from './plot.js';
import { get, h, messageOf, set, showError } from './state.js';

const SAMPLE = 'pkg/samples/run_sample/';

export function createRuns(root, aqn) {
  let metrics = null; // {steps, series}
  let audit = null; // {steps, sigma, targets}
  let names = { metrics: '', audit: '' };
  const errorBox = h('div', { class: 'error', id: 'runs-error', hidden: true });
  const summary = h('div', { class: 'note', id: 'runs-summary' }, 'No run loaded.');
  const logY = h('input', { type: 'checkbox', name: 'sigma_log', checked: get('rlog', '1') === '1', onchange: () => { set({ rlog: logY.checked ? '1' : '0' }); draw(); } });
  const extra = h('select', { name: 'extra', onchange: () => { set({ rextra: extra.value }); draw(); } });
  const canvases = {
    acc: h('canvas', { class: 'plot', id: 'runs-accuracy' }),
    reward: h('canvas', { class: 'plot', id: 'runs-reward' }),
    sigma: h('canvas', { class: 'plot', id: 'runs-sigma' }),
    ratio: h('canvas', { class: 'plot', id: 'runs-ratio' }),
    extra: h('canvas', { class: 'plot', id: 'runs-extra' }),
  };
  const metricsInput = h('input', { type: 'file', name: 'metrics', accept: '.jsonl,.json,.txt', onchange: () => readFile(metricsInput.files[0], 'metrics') });
  const auditInput = h('input', { type: 'file', name: 'audit', accept: '.jsonl,.json,.txt', onchange: () => readFile(auditInput.files[0], 'audit') });
  const drop = h('div', { class: 'drop', id: 'runs-drop' }, 'Drop metrics.jsonl and noise_audit.jsonl here');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    for (const f of e.dataTransfer.files) { readFile(f, /audit/i.test(f.name) ? 'audit' : 'metrics'); }
  });

  root.append(
    h('div', { class: 'card controls' },
      h('h2', {}, 'Run files'),
      h('label', {}, 'metrics.jsonl', metricsInput),
      h('label', {}, 'noise audit', auditInput),
      drop,
      h('div', { class: 'row', style: 'margin-top:10px' },
        h('button', { class: 'btn', id: 'runs-sample', onclick: loadSample }, 'Load the sample run')),
      h('h3', {}, 'View'),
      h('label', {}, 'sigma on log axis', logY),
      h('label', {}, 'extra metric', extra),
      errorBox, summary,
      h('p', { class: 'note' }, 'Schema: docs/run_format.md (one JSON object per line; ', h('code', {}, 'step'), ' plus metrics such as ', h('code', {}, 'reward/mean'), ', ', h('code', {}, 'val/accuracy'), ', ', h('code', {}, 'aqn/sigma'), ').')),
    h('div', { class: 'plots' },
      h('div', { class: 'card' }, canvases.acc),
      h('div', { class: 'card' }, canvases.reward),
      h('div', { class: 'card' }, canvases.sigma),
      h('div', { class: 'card' }, canvases.ratio),
      h('div', { class: 'card wide' }, canvases.extra)),
  );

  // Whether the sample run is being fetched: the page reports `done` only once both of its files
  // are drawn (a test, or a user's screenshot, must not see the metrics without the audit).
  let loadingSample = false;

  // Parses and draws one file; false (with the error shown) when it is malformed.
  function load(kind, text, name) {
    try {
      if (kind === 'metrics') {
        metrics = JSON.parse(aqn.parse_metrics_jsonl(text, name));
      } else {
        audit = JSON.parse(aqn.parse_audit_jsonl(text, name));
      }
      names[kind] = name;
      showError(errorBox, '');
    } catch (e) {
      showError(errorBox, messageOf(e));
      document.body.dataset.runs = 'error';
      return false;
    }
    fillExtra();
    draw();
    return true;
  }

  async function readFile(file, kind) {
    if (!file) { return; }
    load(kind, await file.text(), file.name);
  }

  async function loadSample() {
    loadingSample = true;
    try {
      for (const [kind, file] of [['metrics', 'metrics.jsonl'], ['audit', 'noise_audit.jsonl']]) {
        const r = await fetch(SAMPLE + file);
        if (!r.ok) {
          showError(errorBox, `cannot fetch the sample ${file}: HTTP ${r.status}`);
          document.body.dataset.runs = 'error';
          return;
        }
        if (!load(kind, await r.text(), file)) { return; }
      }
    } finally {
      loadingSample = false;
    }
    set({ run: 'sample' });
    draw();
  }

  function fillExtra() {
    if (!metrics) { return; }
    const want = get('rextra', extra.value || 'actor/entropy');
    extra.replaceChildren(...Object.keys(metrics.series).map((k) => h('option', { value: k, selected: k === want }, k)));
  }

  function seriesMatching(pattern) {
    if (!metrics) { return []; }
    return Object.keys(metrics.series).filter((k) => pattern.test(k)).map((k, i) => ({ name: k, x: metrics.steps, y: metrics.series[k], color: PALETTE[i % PALETTE.length] }));
  }

  function draw() {
    // Held-out accuracies as aqn-core classifies them (val/accuracy...); the rollouts'
    // reward/acc is a training accuracy and is drawn with the rewards.
    const accKeys = metrics ? metrics.validation_accuracy : [];
    const acc = accKeys.map((k, i) => ({ name: k, x: metrics.steps, y: metrics.series[k], color: PALETTE[i % PALETTE.length], points: false }));
    linePlot(canvases.acc, { title: 'Validation accuracy (held-out)', xLabel: 'step', yLabel: 'accuracy', series: acc.map((s) => withGaps(s)), empty: 'no val/accuracy metric' });
    linePlot(canvases.reward, { title: 'Reward', xLabel: 'step', yLabel: 'reward', series: seriesMatching(/^reward\//), empty: 'no reward/* metric' });
    const sig = [];
    if (metrics && metrics.series['aqn/sigma']) { sig.push({ name: 'scheduled sigma (aqn/sigma)', x: metrics.steps, y: metrics.series['aqn/sigma'], color: '#1d2433', dash: [5, 3] }); }
    const ratio = [];
    if (audit) {
      audit.targets.forEach((t, i) => {
        const color = PALETTE[(i + 1) % PALETTE.length];
        sig.push({ name: `realized: ${shortName(t.name)}`, x: audit.steps, y: t.realized_std, color, points: true, radius: 3 });
        ratio.push({ name: shortName(t.name), x: audit.steps, y: t.ratio, color });
      });
    }
    linePlot(canvases.sigma, { title: 'Noise: scheduled sigma and realized std', xLabel: 'step', yLabel: 'sigma', yLog: logY.checked, series: sig, legendPos: 'left-bottom', empty: 'load metrics.jsonl and the noise audit' });
    linePlot(canvases.ratio, { title: 'Realized std / applied sigma per target (colours as in the noise plot)', xLabel: 'step', yLabel: 'ratio', series: ratio, legend: false, empty: 'load the noise audit' });
    const key = extra.value;
    linePlot(canvases.extra, { title: key ? `Metric: ${key}` : 'Metric', xLabel: 'step', yLabel: key || '', series: metrics && key ? [withGaps({ name: key, x: metrics.steps, y: metrics.series[key] })] : [], empty: 'load metrics.jsonl' });
    if (metrics) {
      // One row per step (aqn-core merges the trainer's lines of one step).
      summary.dataset.steps = String(metrics.steps.length);
      summary.dataset.validation = accKeys.join(',');
    }
    if (metrics || audit) {
      summary.textContent = [
        metrics ? `${names.metrics}: ${metrics.steps.length} steps, ${Object.keys(metrics.series).length} metrics` : null,
        audit ? `${names.audit}: ${audit.steps.length} lines, ${audit.targets.length} targets` : null,
      ].filter(Boolean).join('; ');
      if (!loadingSample) { document.body.dataset.runs = 'done'; }
    }
  }

  // A parameter name without the common `model.` prefix and `.weight` suffix.
  function shortName(name) {
    return name.replace(/^model\./, '').replace(/\.weight$/, '');
  }

  // Sparse series (evaluated every N steps, or a metric some steps lack) are drawn through
  // their points only.
  function withGaps(s) {
    const x = []; const y = [];
    s.y.forEach((v, i) => { if (v !== null) { x.push(s.x[i]); y.push(v); } });
    return { ...s, x, y };
  }

  return {
    show: () => {
      if (!metrics && !audit && get('run', '') === 'sample') { loadSample(); } else { draw(); }
    },
  };
}
