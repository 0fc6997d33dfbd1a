// Schedules panel: sigma against the optimizer step for several schedules at once (every kind of
// aqn-core's schedule module, the seed's presets one click away), and the per-layer effective
// sigma of a RIN policy over an SRDD report as a layer x step heat map. All values come from
// aqn-core through wasm.

import { heatMap, linePlot, PALETTE } from './plot.js';
import { get, h, messageOf, set, showError } from './state.js';

const DEFAULT = 'geometric,0.01,0.0001,10,1,200';
const STAGED = ['geometric', 'geometric-paper', 'epoch-aware'];

export function createSchedules(root, aqn) {
  const catalog = JSON.parse(aqn.schedule_catalog());
  // Each schedule: {kind, s0, s1, K, E, S} as the texts typed.
  const parse = (text) => {
    const [kind, s0, s1, K, E, S] = text.split(',');
    return { kind, s0, s1, K, E, S };
  };
  let scheds = get('s', DEFAULT).split(';').filter(Boolean).map(parse);
  let logY = get('slog', '1') === '1';
  let rin = get('rin', 'e9b');
  let report = { text: '', name: 'sample report (synthetic 28-layer profile)' };

  const list = h('div', { class: 'sched-list', id: 'sched-list' });
  const plotCanvas = h('canvas', { class: 'plot tall', id: 'sched-plot' });
  const heatCanvas = h('canvas', { class: 'plot tall', id: 'sched-heat' });
  const errCanvas = h('canvas', { class: 'plot', id: 'sched-errors' });
  const describe = h('div', { class: 'note', id: 'sched-describe' });
  const heatNote = h('div', { class: 'note', id: 'rin-note' });
  const rinError = h('div', { class: 'error', id: 'rin-error', hidden: true });
  const rinInput = h('input', { name: 'rin', value: rin, oninput: (e) => { rin = e.target.value; drawHeat(); save(); } });
  const reportInput = h('input', { type: 'file', name: 'srdd', accept: '.json', onchange: onReport });
  const reportName = h('span', { class: 'note', id: 'srdd-name' }, report.name);
  const presetSel = h('select', { name: 'preset' },
    h('option', { value: '' }, 'add a preset of the seed…'),
    catalog.presets.map((p) => h('option', { value: p.name, title: p.source }, `${p.name}: ${p.kind} ${p.sigma_start} → ${p.sigma_end}`)));
  presetSel.addEventListener('change', () => {
    const p = catalog.presets.find((q) => q.name === presetSel.value);
    presetSel.value = '';
    if (!p) { return; }
    const epochAware = p.kind === 'epoch-aware';
    scheds.push({
      kind: p.kind, s0: String(p.sigma_start), s1: String(p.sigma_end), K: String(p.stages),
      E: String(epochAware ? p.epochs : 1), S: String(epochAware ? p.steps_per_epoch : p.epochs * p.steps_per_epoch),
      preset: p.name,
    });
    if (p.rin) { rin = p.rin; rinInput.value = rin; }
    renderList();
    redraw();
  });
  const logBox = h('input', { type: 'checkbox', name: 'slog', checked: logY, onchange: (e) => { logY = e.target.checked; redraw(); } });

  root.append(
    h('div', { class: 'card controls' },
      h('h2', {}, 'Sigma schedules'),
      h('p', { class: 'note' }, `docs/spec.md section 3. K ≥ ${catalog.min_stages} for the staged kinds; epoch-aware runs E epochs of S steps, the others T steps.`),
      list,
      h('div', { class: 'row' },
        h('button', { class: 'btn', id: 'sched-add', onclick: () => { scheds.push(parse(DEFAULT)); renderList(); redraw(); } }, 'Add schedule'),
        presetSel),
      h('h3', {}, 'Plot'),
      h('label', {}, 'log sigma axis', logBox),
      h('h3', {}, 'RIN: per-layer sigma'),
      h('label', {}, 'RIN policy', rinInput),
      h('p', { class: 'note' }, 'A preset (', catalog.rin_presets.join(', '), ') or a policy (', catalog.rin_policies.join(', '), ') with options, e.g. ', h('code', {}, 'targeted:top-k=4'), '.'),
      h('label', {}, 'SRDD report', reportInput),
      h('div', { class: 'row' }, reportName, h('button', { class: 'btn', onclick: () => { report = { text: '', name: 'sample report (synthetic 28-layer profile)' }; reportName.textContent = report.name; reportInput.value = ''; drawHeat(); } }, 'Use the sample')),
      rinError),
    h('div', {},
      h('div', { class: 'card' }, plotCanvas, describe),
      h('div', { class: 'plots', style: 'margin-top:16px' },
        h('div', { class: 'card wide' }, heatCanvas, heatNote),
        h('div', { class: 'card wide' }, errCanvas))),
  );

  async function onReport() {
    const f = reportInput.files[0];
    if (!f) { return; }
    report = { text: await f.text(), name: f.name };
    reportName.textContent = report.name;
    drawHeat();
  }

  function renderList() {
    list.replaceChildren(...scheds.map((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      const num = (key, label) => h('label', {}, label, h('input', {
        name: `${key}${i}`, value: s[key], inputmode: 'decimal',
        oninput: (e) => { s[key] = e.target.value; delete s.preset; redraw(); },
      }));
      const epochAware = s.kind === 'epoch-aware';
      return h('div', { class: 'sched', style: `--c:${color}` },
        h('div', { class: 'head' }, `#${i + 1}${s.preset ? ` (${s.preset})` : ''}`,
          scheds.length > 1 ? h('button', { class: 'btn', title: 'remove', onclick: () => { scheds.splice(i, 1); renderList(); redraw(); } }, '×') : null),
        h('label', {}, 'kind', h('select', { name: `kind${i}`, onchange: (e) => { s.kind = e.target.value; renderList(); redraw(); } },
          catalog.kinds.map((k) => h('option', { value: k, selected: k === s.kind }, k)))),
        num('s0', s.kind === 'constant' ? 'sigma' : 'sigma start'),
        s.kind !== 'constant' ? num('s1', 'sigma end') : null,
        STAGED.includes(s.kind) ? num('K', 'K (stages)') : null,
        epochAware ? num('E', 'epochs E') : null,
        num('S', epochAware ? 'steps / epoch S' : 'steps T'),
        h('div', { class: 'error', id: `sched-error-${i}`, hidden: true }));
    }));
  }

  // The schedule's form values (non-epoch kinds run one "epoch" of T steps).
  function args(s) {
    const E = s.kind === 'epoch-aware' ? Number(s.E) : 1;
    const s1 = s.kind === 'constant' ? Number(s.s0) : Number(s.s1);
    return [s.kind, Number(s.s0), s1, Number(s.K), E, Number(s.S)];
  }

  function save() {
    set({ s: scheds.map((s) => [s.kind, s.s0, s.s1, s.K, s.E, s.S].join(',')).join(';'), slog: logY ? '1' : '0', rin });
  }

  function redraw() {
    const t0 = performance.now();
    save();
    const series = [];
    const lines = [];
    let bad = 0;
    scheds.forEach((s, i) => {
      const box = document.getElementById(`sched-error-${i}`);
      try {
        const c = aqn.schedule_curve(...args(s));
        const sigma = c.sigma();
        const steps = Float64Array.from(sigma, (_, k) => k + 1);
        series.push({ name: `#${i + 1} ${s.kind}`, x: steps, y: sigma, color: PALETTE[i % PALETTE.length] });
        lines.push(h('div', {}, h('span', { style: `color:${PALETTE[i % PALETTE.length]}` }, '■ '), `#${i + 1} `, c.describe()));
        c.free();
        showError(box, '');
      } catch (e) {
        bad++;
        showError(box, messageOf(e));
      }
    });
    linePlot(plotCanvas, {
      title: 'sigma(step)', xLabel: 'optimizer step', yLabel: 'sigma', yLog: logY, series,
      empty: 'no valid schedule: see the errors on the left',
    });
    describe.replaceChildren(...lines, logY ? h('div', {}, 'Warm-up steps (sigma = 0) are not drawn on the log axis.') : '');
    document.body.dataset.schedules = bad ? 'error' : 'done';
    document.body.dataset.schedMs = (performance.now() - t0).toFixed(2);
    drawHeat();
  }

  function drawHeat() {
    const first = scheds[0];
    try {
      const heat = aqn.rin_heat(...args(first), rin, report.text);
      const layers = heat.layers();
      const steps = heat.steps();
      const data = heat.data();
      const errors = heat.errors();
      const label = heat.label();
      heat.free();
      heatMap(heatCanvas, {
        data: Float32Array.from(data), rows: layers, cols: steps.length, log: true,
        title: `Effective sigma per layer: schedule #1 × RIN "${rin}" (light grey: sigma = 0)`,
        xLabel: 'optimizer step', yLabel: 'layer', colorLabel: 'sigma(step) · m_l',
        xRange: [steps[0], steps[steps.length - 1]], yRange: [0, layers],
      });
      linePlot(errCanvas, {
        title: 'SRDD error per layer (the metric the policy reads)', xLabel: 'layer', yLabel: 'error',
        series: [{ name: 'layer error', x: Float64Array.from(errors, (_, k) => k), y: errors, color: '#e4572e' }],
      });
      heatNote.textContent = `RIN ${label} on ${report.name}; ${layers} layers × ${steps.length} steps${steps.length < steps[steps.length - 1] ? ' (evenly spaced)' : ''}.`;
      showError(rinError, '');
    } catch (e) {
      heatNote.textContent = '';
      showError(rinError, messageOf(e));
      heatMap(heatCanvas, { data: new Float32Array(1).fill(NaN), rows: 1, cols: 1, title: 'Effective sigma per layer: not computed (see the error on the left)', xLabel: 'optimizer step', yLabel: 'layer' });
      linePlot(errCanvas, { title: 'SRDD error per layer', xLabel: 'layer', yLabel: 'error', series: [], empty: 'not computed' });
    }
  }

  renderList();
  return { show: redraw };
}
