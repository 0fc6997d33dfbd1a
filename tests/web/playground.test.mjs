// Playwright tests of the browser playground (www/), with playwright-core driving Debian's
// chromium (never `npx playwright install`). Run by scripts/test.sh after scripts/build_web.sh:
//   node --test tests/web/playground.test.mjs
//
// - The quantization lab on WebGPU (chromium with --enable-unsafe-webgpu: SwiftShader) and on the
//   CPU fallback (without it: no adapter) shows identical numbers, digit for digit, and the same
//   digest of the quantized tensor; both agree with `aqn-native quant-error --json` for the same
//   seed: counts, deadzone, saturation and max |q - x| exactly, the sum-based metrics within the
//   bound of f32 block sums, (B + 3) 2^-24 relative (aqn_core::error_stats).
// - Every panel renders (screenshots under target/web-test/, checked not blank, and every plot
//   canvas holds a drawing), and invalid input shows the core's error message inline.
// - A tensor without a finite value shows its non-finite count and no metric (no 0 or infinity).
// - Only the selected tab's panel is displayed; the run viewer shows one row per step (the
//   trainer's two lines of an evaluation step merged) and keeps the rollouts' reward/acc out of
//   the validation accuracy.
// - The wasm size and the page load time go to target/web-test/report.json.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync, inflateSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = join(ROOT, 'target', 'web-test');
// AQN_NATIVE overrides the binary (a shared target/ may hold another checkout's build).
const NATIVE = process.env.AQN_NATIVE || join(ROOT, 'target', 'release', 'aqn-native');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BASE_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT = { timeout: 180_000 };
const F32_HALF_ULP = 2 ** -24;

// What the lab is compared on: [distribution, elements, seed, formats].
const CASES = [
  ['normal', 1 << 20, 0, ['mxfp4:floor', 'mxfp4:ceil', 'mxfp4:even', 'mxfp4:rceil', 'nvfp4:two-level', 'nvfp4:single-level', 'fp8', 'bf16']],
  ['weight-like', 1 << 18, 3, ['mxfp4:floor', 'nvfp4:two-level', 'fp8']],
  ['laplace:b=0.5', 1 << 18, 9, ['mxfp4:rceil', 'nvfp4:single-level']],
];
// Specs the kernels do not cover: the WebGPU page must say so and compute on the CPU.
const CPU_ONLY = ['nvfp4:two-level:tile16x16', 'mxfp4:floor:sr=7'];

let server;
let baseUrl;
const browsers = {};
const report = { cases: [] };
const pageErrors = [];

function labUrl(dist, n, seed, spec) {
  const [kind, ...params] = dist.split(':');
  const [format, ...opts] = spec.split(':');
  const q = new URLSearchParams({ panel: 'lab', src: 'generate', dist: kind, n: String(n), row: '1024', seed: String(seed), fmt: format, bins: '64', backend: 'auto' });
  for (const p of params) { const [k, v] = p.split('='); q.set('p_' + k, v); }
  for (const o of opts) {
    if (format === 'mxfp4' && ['floor', 'ceil', 'even', 'rceil'].includes(o)) { q.set('mode', o); }
    else if (o === 'two-level' || o === 'single-level') { q.set('scaling', o); }
    else if (o === 'tile16x16') { q.set('blocks', o); }
    else if (o.startsWith('sr=')) { q.set('round', 'stochastic'); q.set('srseed', o.slice(3)); }
  }
  return `${baseUrl}?${q}`;
}

async function newPage(kind) {
  const page = await browsers[kind].newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(`${kind}: ${e.message}`));
  return page;
}

// Loads the lab with a URL state and returns {backend, fallback, values: {metric: text}}.
async function labNumbers(page, url) {
  await page.goto(url);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.lab), null, WAIT);
  const error = await page.locator('#lab-error').innerText();
  assert.equal(await page.evaluate(() => document.body.dataset.lab), 'done', `lab failed: ${error}`);
  return page.evaluate(() => ({
    backend: document.querySelector('#lab-backend').dataset.backend,
    fallback: document.querySelector('#lab-fallback')?.textContent || '',
    ms: Number(document.body.dataset.labMs),
    values: Object.fromEntries([...document.querySelectorAll('td[data-metric]')].map((td) => [td.dataset.metric, td.dataset.value])),
  }));
}

function cliRows(dist, n, seed, formats) {
  const out = execFileSync(NATIVE, ['quant-error', '--json', '--seed', String(seed), '--elements', String(n), '--generate', dist, '--format', formats.join(',')]);
  return JSON.parse(out);
}

// Relative bound of the f32 block sums against the f64 metrics (aqn_core::error_stats).
function sumTolerance(spec) {
  const block = spec.startsWith('nvfp4') ? (spec.includes('tile16x16') ? 256 : 16) : 32;
  return (block + 3) * F32_HALF_ULP;
}

function assertMatchesCli(values, row, spec) {
  const v = (k) => Number(values[k]);
  for (const k of ['count', 'non_finite', 'deadzone_ratio', 'saturation_ratio', 'max_abs_error']) {
    assert.equal(v(k), row[k], `${spec} ${k}: page ${values[k]} vs CLI ${row[k]} (must be equal)`);
  }
  const tol = sumTolerance(spec);
  for (const k of ['norm_relative_error', 'mean_relative_error', 'mean_abs_error', 'norm']) {
    const rel = Math.abs(v(k) - row[k]) / Math.abs(row[k]);
    assert.ok(rel <= tol, `${spec} ${k}: page ${values[k]} vs CLI ${row[k]}: relative ${rel} > ${tol}`);
  }
  const dbTol = (10 / Math.LN10) * 2 * tol;
  assert.ok(Math.abs(v('sqnr_db') - row.sqnr_db) <= dbTol, `${spec} sqnr_db: page ${values.sqnr_db} vs CLI ${row.sqnr_db} (> ${dbTol} dB)`);
}

// Decodes an 8-bit RGB/RGBA PNG (what chromium writes) and counts its distinct colours and the
// share of the most common one.
function pngColours(file) {
  const buf = readFileSync(file);
  let pos = 8;
  let width = 0; let height = 0; let type = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const kind = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'PNG bit depth 8');
      type = data[9];
      assert.equal(data[12], 0, 'non-interlaced PNG');
    } else if (kind === 'IDAT') {
      idat.push(data);
    }
    pos += 12 + len;
  }
  const bpp = type === 6 ? 4 : 3;
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  const prev = Buffer.alloc(stride);
  const cur = Buffer.alloc(stride);
  const counts = new Map();
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0;
      const b = prev[i];
      const c = i >= bpp ? prev[i - bpp] : 0;
      let p = 0;
      if (f === 1) { p = a; } else if (f === 2) { p = b; } else if (f === 3) { p = (a + b) >> 1; } else if (f === 4) {
        const pa = Math.abs(b - c); const pb = Math.abs(a - c); const pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      cur[i] = (line[i] + p) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      const k = (cur[x * bpp] << 16) | (cur[x * bpp + 1] << 8) | cur[x * bpp + 2];
      counts.set(k, (counts.get(k) || 0) + 1);
    }
    cur.copy(prev);
  }
  return { distinct: counts.size, top: Math.max(...counts.values()) / (width * height) };
}

// Saves a screenshot and checks that it is not blank, and that every visible plot canvas of the
// page holds a drawing (more than a handful of colours).
async function screenshot(page, name) {
  const file = join(OUT, `${name}.png`);
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: file, fullPage: true });
  const { distinct, top } = pngColours(file);
  assert.ok(distinct >= 64 && top < 0.97, `${name}.png looks blank: ${distinct} colours, top colour ${(100 * top).toFixed(1)}%`);
  const canvases = await page.evaluate(() => [...document.querySelectorAll('canvas.plot')]
    .filter((c) => c.offsetParent !== null)
    .map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let i = 0; i < d.length; i += 16) { seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
      return { id: c.id, colours: seen.size };
    }));
  for (const c of canvases) { assert.ok(c.colours >= 8, `${name}: canvas #${c.id} is empty (${c.colours} colours)`); }
  return { file, distinct, canvases: canvases.length };
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  statSync(join(ROOT, 'www', 'pkg', 'aqn_web_bg.wasm')); // built by scripts/build_web.sh
  server = spawn(NATIVE, ['serve', '--port', '0', '--dir', join(ROOT, 'www')], { stdio: ['ignore', 'pipe', 'inherit'] });
  baseUrl = await new Promise((resolve, reject) => {
    let text = '';
    server.stdout.on('data', (d) => {
      text += d;
      const m = text.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) { resolve(m[0]); }
    });
    server.on('exit', (code) => reject(new Error(`aqn-native serve exited with ${code}`)));
  });
  browsers.gpu = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'] });
  browsers.cpu = await chromium.launch({ executablePath: CHROMIUM, args: BASE_ARGS });
});

after(async () => {
  for (const b of Object.values(browsers)) { await b.close(); }
  if (server) { server.kill(); }
  const wasm = join(ROOT, 'www', 'pkg', 'aqn_web_bg.wasm');
  report.wasm_bytes = statSync(wasm).size;
  report.wasm_gzip_bytes = gzipSync(readFileSync(wasm), { level: 9 }).length;
  report.page_errors = pageErrors;
  writeFileSync(join(OUT, 'report.json'), JSON.stringify(report, null, 2));
});

describe('quantization lab', () => {
  test('WebGPU and CPU give identical numbers, equal to aqn-native quant-error --json', async () => {
    const gpu = await newPage('gpu');
    const cpu = await newPage('cpu');
    for (const [dist, n, seed, formats] of CASES) {
      const rows = cliRows(dist, n, seed, formats);
      for (const [k, spec] of formats.entries()) {
        const url = labUrl(dist, n, seed, spec);
        const g = await labNumbers(gpu, url);
        const c = await labNumbers(cpu, url);
        assert.equal(g.backend, 'webgpu', `${spec}: the WebGPU page computed on ${g.backend}: ${g.fallback}`);
        assert.equal(c.backend, 'cpu', `${spec}: the page without WebGPU computed on ${c.backend}`);
        assert.match(c.fallback, /no WebGPU adapter/);
        assert.deepEqual(g.values, c.values, `${dist} ${spec}: WebGPU and CPU numbers differ`);
        assert.equal(rows[k].format, spec);
        assertMatchesCli(g.values, rows[k], spec);
        report.cases.push({ dist, n, seed, spec, webgpu_ms: g.ms, cpu_ms: c.ms, digest: g.values.q_digest });
      }
    }
    await screenshot(gpu, 'lab-webgpu');
    await screenshot(cpu, 'lab-cpu');
    await gpu.close();
    await cpu.close();
  });

  test('specs the kernels do not cover run on the CPU, say why, and match the CLI', async () => {
    const page = await newPage('gpu');
    const rows = cliRows('normal', 1 << 18, 4, CPU_ONLY);
    for (const [k, spec] of CPU_ONLY.entries()) {
      const r = await labNumbers(page, labUrl('normal', 1 << 18, 4, spec));
      assert.equal(r.backend, 'cpu', spec);
      assert.match(r.fallback, /runs on the CPU only/, spec);
      assertMatchesCli(r.values, rows[k], spec);
    }
    await page.close();
  });

  test('invalid input shows the core error inline', async () => {
    const page = await newPage('gpu');
    const expectError = async (url, text, shot) => {
      await page.goto(url);
      await page.waitForFunction(() => document.body.dataset.lab === 'error', null, WAIT);
      const shown = await page.locator('#lab-error').innerText();
      assert.ok(shown.includes(text), `expected "${text}", the page shows "${shown}"`);
      if (shot) { await screenshot(page, shot); }
    };
    await expectError(labUrl('normal:std=-1', 4096, 0, 'mxfp4'), 'normal parameter std = -1 is invalid: it must be a finite number > 0', 'lab-invalid-sigma');
    await expectError(labUrl('normal', 4096, 'x1', 'mxfp4'), 'seed `x1` is not an unsigned 64-bit integer');
    await expectError(labUrl('normal', 4096, 0, 'fp8').replace('bins=64', 'bins=1'), 'the histogram needs 2 to 1024 bins, not 1');
    await expectError(labUrl('normal', 4096, 0, 'mxfp4').replace('row=1024', 'row=1000'), 'a tensor of 4096 elements cannot be split into rows of 1000');
    // A malformed upload.
    await page.goto(`${baseUrl}?panel=lab&src=upload`);
    await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, WAIT);
    await page.setInputFiles('input[name=upload]', { name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a safetensors file') });
    await page.waitForFunction(() => !document.querySelector('#lab-error').hidden, null, WAIT);
    const shown = await page.locator('#lab-error').innerText();
    assert.match(shown, /^broken\.safetensors is not a valid safetensors file/);
    await screenshot(page, 'lab-invalid-upload');
    await page.close();
  });

  test('an uploaded .npy tensor is quantized', async () => {
    const page = await newPage('gpu');
    const values = new Float32Array(64 * 32).map((_, i) => Math.sin(i) * 3);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 32), }";
    while ((10 + header.length + 1) % 64) { header += ' '; }
    header += '\n';
    const pre = Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0, header.length & 0xff, header.length >> 8]);
    const npy = Buffer.concat([pre, Buffer.from(header), Buffer.from(values.buffer)]);
    await page.goto(`${baseUrl}?panel=lab&src=upload&fmt=nvfp4`);
    await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, WAIT);
    await page.setInputFiles('input[name=upload]', { name: 'w.npy', mimeType: 'application/octet-stream', buffer: npy });
    await page.waitForFunction(() => document.body.dataset.lab === 'done', null, WAIT);
    const count = await page.locator('td[data-metric=count]').getAttribute('data-value');
    assert.equal(count, '2048');
    await page.close();
  });

  test('an all-NaN tensor gets its non-finite count and no metric', async () => {
    const page = await newPage('cpu');
    const values = new Float32Array(64 * 32).fill(NaN);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 32), }";
    while ((10 + header.length + 1) % 64) { header += ' '; }
    header += '\n';
    const pre = Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0, header.length & 0xff, header.length >> 8]);
    const npy = Buffer.concat([pre, Buffer.from(header), Buffer.from(values.buffer)]);
    await page.goto(`${baseUrl}?panel=lab&src=upload&fmt=mxfp4`);
    await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, WAIT);
    await page.setInputFiles('input[name=upload]', { name: 'nan.npy', mimeType: 'application/octet-stream', buffer: npy });
    await page.waitForFunction(() => document.body.dataset.lab === 'done', null, WAIT);
    const value = (m) => page.locator(`td[data-metric=${m}]`).getAttribute('data-value');
    assert.equal(await value('non_finite'), '2048');
    assert.equal(await value('count'), '0');
    for (const m of ['mean_relative_error', 'sqnr_db', 'norm_relative_error']) { assert.equal(await value(m), 'n/a', m); }
    assert.match(await page.locator('#lab-non-finite').innerText(), /2,048 pairs hold NaN or an infinity/);
    await page.close();
  });
});

describe('schedules', () => {
  test('every kind draws from the core, presets load, invalid K and sigma show the core error', async () => {
    const page = await newPage('cpu');
    const kinds = ['constant,0.01,0.01,3,1,100', 'linear,0.01,0.0001,3,1,100', 'geometric,0.01,0.0001,10,1,200', 'geometric-paper,0.02,0.0002,6,1,300', 'epoch-aware,0.01,0.0001,5,3,100'];
    await page.goto(`${baseUrl}?panel=schedules&slog=1&rin=e9b&s=${encodeURIComponent(kinds.join(';'))}`);
    await page.waitForFunction(() => document.body.dataset.schedules === 'done', null, WAIT);
    const lines = await page.locator('#sched-describe > div').allInnerTexts();
    assert.match(lines[0], /constant: sigma = 0\.01, T = 100/);
    assert.match(lines[2], /geometric \(QeRL\): 0\.01 -> 0\.0001, K = 10, T = 200/);
    assert.match(lines[4], /epoch-aware: .* 3 epochs x 100 steps = T = 300/);
    assert.match(await page.locator('#rin-note').innerText(), /28 layers/);
    await screenshot(page, 'schedules');
    // A preset is one click away.
    await page.selectOption('select[name=preset]', { index: 1 });
    await page.waitForFunction(() => document.querySelectorAll('#sched-list .sched').length === 6, null, WAIT);
    // Redraw time of an edit (reported, not asserted: timings belong to benchmarks).
    await page.fill('input[name=s02]', '0.02');
    report.schedule_redraw_ms = Number(await page.evaluate(() => document.body.dataset.schedMs));
    // K < 3 and sigma <= 0 show the core's messages inline.
    await page.fill('input[name=K2]', '2');
    await page.waitForFunction(() => !document.querySelector('#sched-error-2').hidden, null, WAIT);
    assert.match(await page.locator('#sched-error-2').innerText(), /^stages K = 2 is refused: the geometric schedule needs K >= 3/);
    await page.fill('input[name=s01]', '0');
    await page.waitForFunction(() => !document.querySelector('#sched-error-1').hidden, null, WAIT);
    assert.equal(await page.locator('#sched-error-1').innerText(), 'sigma_start = 0 is refused: it must be a finite number > 0');
    assert.equal(await page.evaluate(() => document.body.dataset.schedules), 'error');
    await page.fill('input[name=rin]', 'sideways');
    await page.waitForFunction(() => !document.querySelector('#rin-error').hidden, null, WAIT);
    assert.match(await page.locator('#rin-error').innerText(), /`sideways`/);
    await screenshot(page, 'schedules-invalid');
    await page.close();
  });
});

describe('run viewer', () => {
  test('the sample run renders and a malformed file shows its line', async () => {
    const page = await newPage('cpu');
    await page.goto(`${baseUrl}?panel=runs&run=sample`);
    await page.waitForFunction(() => document.body.dataset.runs === 'done', null, WAIT);
    const summary = await page.locator('#runs-summary').innerText();
    // The sample holds 67 lines as the trainer writes them: step 0, one line per step and a
    // second line for each evaluation step. The viewer shows one row per step.
    const lines = readFileSync(join(ROOT, 'tests', 'fixtures', 'run_sample', 'metrics.jsonl'), 'utf8').trim().split('\n');
    const steps = new Set(lines.map((l) => JSON.parse(l).step));
    assert.equal(lines.length, 67);
    assert.equal(steps.size, 61);
    assert.match(summary, /metrics\.jsonl: 61 steps/);
    assert.equal(await page.locator('#runs-summary').getAttribute('data-steps'), String(steps.size));
    assert.match(summary, /noise_audit\.jsonl: 49 lines, 4 targets/);
    // Validation accuracy is the held-out evaluation only, never the rollouts' reward/acc.
    assert.equal(await page.locator('#runs-summary').getAttribute('data-validation'), 'val/accuracy,val/accuracy_flexible,val_bf16/accuracy');
    await screenshot(page, 'runs-sample');
    await page.setInputFiles('input[name=metrics]', { name: 'metrics.jsonl', mimeType: 'text/plain', buffer: Buffer.from('{"step": 1, "reward/mean": 0.5}\n{"reward/mean": 0.6}\n') });
    await page.waitForFunction(() => !document.querySelector('#runs-error').hidden, null, WAIT);
    assert.equal(await page.locator('#runs-error').innerText(), 'metrics.jsonl line 2: no integer `step` >= 0');
    await page.close();
  });
});

describe('page', () => {
  test('only the selected tab shows its panel', async () => {
    const page = await newPage('cpu');
    await page.goto(`${baseUrl}?panel=schedules`);
    await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, WAIT);
    const panels = ['schedules', 'lab', 'runs'];
    for (const selected of panels) {
      await page.click(`#tab-${selected}`);
      for (const p of panels) {
        const shown = await page.evaluate((id) => {
          const el = document.getElementById(id);
          const box = el.getBoundingClientRect();
          return getComputedStyle(el).display !== 'none' && box.height > 0;
        }, `panel-${p}`);
        assert.equal(shown, p === selected, `tab ${selected}: panel ${p} ${shown ? 'shown' : 'hidden'}`);
      }
    }
    await page.close();
  });

  test('load time and a share link restore the state', async () => {
    const page = await newPage('gpu');
    const t0 = Date.now();
    await page.goto(`${baseUrl}?panel=runs`);
    await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, WAIT);
    const wall = Date.now() - t0;
    const timing = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const wasm = performance.getEntriesByType('resource').find((r) => r.name.endsWith('.wasm'));
      return { dom_content_loaded_ms: nav.domContentLoadedEventEnd, wasm_fetch_ms: wasm ? wasm.duration : null, wasm_init_ms: Number(document.body.dataset.wasmMs), ready_after_script_ms: Number(document.body.dataset.readyMs) };
    });
    report.load = { wall_ms_to_ready: wall, ...timing };
    assert.equal(await page.locator('#tab-runs').getAttribute('aria-selected'), 'true');
    await page.click('#tab-lab');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.lab), null, WAIT);
    await page.selectOption('select[name=fmt]', 'fp8');
    await page.waitForFunction(() => new URLSearchParams(location.search).get('fmt') === 'fp8', null, WAIT);
    const shared = page.url();
    const other = await newPage('cpu');
    await other.goto(shared);
    await other.waitForFunction(() => document.body.dataset.lab === 'done', null, WAIT);
    assert.equal(await other.locator('select[name=fmt]').inputValue(), 'fp8');
    await page.close();
    await other.close();
  });

  test('no script errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
