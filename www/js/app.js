// The playground: loads the wasm build of aqn-core, opens WebGPU when an adapter exists, and
// wires the three panels. Every computation goes through the wasm module or the WGSL kernels.

import init, * as aqn from '../pkg/aqn_web.js';
import { openGpu } from './gpu.js';
import { createLab } from './lab.js';
import { createRuns } from './runs.js';
import { createSchedules } from './schedules.js';
import { get, messageOf, set, showError } from './state.js';

const PANELS = ['schedules', 'lab', 'runs'];

async function main() {
  const fatal = document.getElementById('fatal');
  const engine = document.getElementById('engine');
  const t0 = performance.now();
  try {
    await init();
  } catch (e) {
    showError(fatal, `The wasm module did not load: ${messageOf(e)}. Build it with scripts/build_web.sh.`);
    engine.textContent = 'wasm failed';
    return;
  }
  document.body.dataset.wasmMs = (performance.now() - t0).toFixed(1);
  // WebGPU opens in the background (adapter, module, pipelines): only the lab waits for it.
  const gpuReady = openGpu(aqn).catch((e) => ({ reason: `WebGPU failed to start: ${messageOf(e)}` }));
  engine.textContent = `aqn-core ${aqn.version()} (wasm) · probing WebGPU…`;
  gpuReady.then((gpuInfo) => {
    engine.textContent = `aqn-core ${aqn.version()} (wasm) · ` + (gpuInfo.gpu ? 'WebGPU available' : 'CPU only');
    engine.title = gpuInfo.gpu ? gpuInfo.gpu.name : gpuInfo.reason;
    engine.className = 'badge ' + (gpuInfo.gpu ? 'gpu' : 'cpu');
    document.body.dataset.webgpu = gpuInfo.gpu ? 'yes' : 'no';
  });

  const panels = {};
  const makers = {
    schedules: (el) => createSchedules(el, aqn),
    lab: (el) => createLab(el, aqn, gpuReady),
    runs: (el) => createRuns(el, aqn),
  };
  function show(name) {
    if (!PANELS.includes(name)) { name = 'schedules'; }
    for (const p of PANELS) {
      document.getElementById('panel-' + p).hidden = p !== name;
      document.getElementById('tab-' + p).setAttribute('aria-selected', String(p === name));
    }
    if (!panels[name]) {
      try {
        panels[name] = makers[name](document.getElementById('panel-' + name));
      } catch (e) {
        showError(fatal, `The ${name} panel failed: ${messageOf(e)}`);
        return;
      }
    }
    set({ panel: name });
    panels[name].show();
  }
  for (const b of document.querySelectorAll('.tabs button')) {
    b.addEventListener('click', () => show(b.dataset.panel));
  }
  show(get('panel', 'schedules'));
  document.body.dataset.ready = 'yes';
  document.body.dataset.readyMs = (performance.now() - t0).toFixed(1);
}

main();
