// WebGPU host of the WGSL kernels: the sequence of aqn_shaders::kernel (shaders/src/kernel.rs),
// the same one shaders/src/runner.rs runs natively on lavapipe. The WGSL source, the uniform
// words, the dispatch size and the finishing of the statistics all come from the wasm module;
// this file only moves buffers.

// Opens an adapter and compiles the module, or says why not: {gpu} or {reason}.
export async function openGpu(aqn) {
  if (!('gpu' in navigator)) {
    return { reason: 'this browser has no WebGPU (navigator.gpu is missing)' };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { reason: `requestAdapter failed: ${e.message}` };
  }
  if (!adapter) {
    return { reason: 'no WebGPU adapter (requestAdapter() returned null)' };
  }
  const want = 1 << 26; // 16M f32: the largest tensor the kernels take (MAX_GPU_ELEMENTS)
  const limits = {};
  if (adapter.limits.maxStorageBufferBindingSize >= want) { limits.maxStorageBufferBindingSize = want; }
  if (adapter.limits.maxBufferSize >= want) { limits.maxBufferSize = want; }
  const device = await adapter.requestDevice({ requiredLimits: limits });
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const module = device.createShaderModule({ label: 'aqn kernels', code: aqn.wgsl_source() });
  const compiled = await module.getCompilationInfo();
  const errors = compiled.messages.filter((m) => m.type === 'error');
  if (errors.length) {
    return { reason: 'the WGSL kernels do not compile here: ' + errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ') };
  }
  const layout = JSON.parse(aqn.kernel_layout());
  const bindGroupLayout = device.createBindGroupLayout({
    label: 'aqn bindings',
    entries: layout.bindings.map((b, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: b.kind },
    })),
  });
  const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] });
  const pipelines = {};
  for (const entry of layout.entry_points) {
    pipelines[entry] = await device.createComputePipelineAsync({
      label: entry,
      layout: pipelineLayout,
      compute: { module, entryPoint: entry },
    });
  }
  device.lost.then((e) => console.warn('WebGPU device lost:', e.message));
  return { gpu: { device, bindGroupLayout, pipelines, layout, name, maxBinding: device.limits.maxStorageBufferBindingSize } };
}

function buffer(device, label, words, usage) {
  const size = Math.max(4, words.byteLength ?? words.length * 4);
  const b = device.createBuffer({ label, size, usage, mappedAtCreation: true });
  new Uint32Array(b.getMappedRange()).set(words instanceof Uint32Array ? words : new Uint32Array(words));
  b.unmap();
  return b;
}

async function readWords(device, src, words) {
  const size = Math.max(4, words * 4);
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Uint32Array(staging.getMappedRange().slice(0, words * 4));
  staging.unmap();
  staging.destroy();
  return out;
}

// Runs a GPU plan (aqn.gpu_plan) on x: {q: Float32Array, stats (aqn Stats)}.
export async function runOnGpu(gpu, plan, x) {
  const { device, pipelines, layout } = gpu;
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const n = x.length;
  const params = buffer(device, 'params', plan.params(), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const xb = buffer(device, 'x', new Uint32Array(x.buffer, x.byteOffset, n), storage);
  const qb = device.createBuffer({ label: 'q', size: Math.max(4, n * 4), usage: storage });
  const globals = buffer(device, 'globals', new Uint32Array(layout.global_words), storage);
  const partials = device.createBuffer({ label: 'partials', size: Math.max(4, plan.partial_words() * 4), usage: storage });
  const hist = buffer(device, 'hist', new Uint32Array(plan.bins()), storage);
  const group = device.createBindGroup({
    layout: gpu.bindGroupLayout,
    entries: [params, xb, qb, globals, partials, hist].map((b, i) => ({ binding: i, resource: { buffer: b } })),
  });
  const [gx, gy] = [plan.groups_x(), plan.groups_y()];
  const dispatch = (enc, entry) => {
    const pass = enc.beginComputePass({ label: entry });
    pass.setPipeline(pipelines[entry]);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(gx, gy, 1);
    pass.end();
  };
  const [amaxEntry, quantEntry, pass1Entry, pass2Entry] = layout.entry_points;
  let enc = device.createCommandEncoder();
  if (plan.needs_tensor_amax()) { dispatch(enc, amaxEntry); }
  dispatch(enc, quantEntry);
  dispatch(enc, pass1Entry);
  device.queue.submit([enc.finish()]);
  const g = await readWords(device, globals, layout.global_words);
  plan.set_pass2(g[1], g[2]);
  device.queue.writeBuffer(params, 0, new Uint32Array(plan.params()));
  enc = device.createCommandEncoder();
  dispatch(enc, pass2Entry);
  device.queue.submit([enc.finish()]);
  const qWords = await readWords(device, qb, n);
  const partialWords = await readWords(device, partials, plan.partial_words());
  const counts = await readWords(device, hist, plan.bins());
  for (const b of [params, xb, qb, globals, partials, hist]) { b.destroy(); }
  const stats = plan.finish(partialWords, counts);
  return { q: new Float32Array(qWords.buffer, 0, n), stats };
}
