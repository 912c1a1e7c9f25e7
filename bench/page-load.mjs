// Time from opening the page to its first heatmap on the model that ships with the app, in
// headless Chromium on this machine: on WebGPU (SwiftShader, a CPU rasterizer) and on the CPU
// fallback. A benchmark, not a test: it prints the median of several cold loads.
//   node bench/page-load.mjs [runs]

import { launch, serveDist } from '../tests/e2e/lib.mjs';

const runs = Number(process.argv[2] ?? 5);
const server = await serveDist();
for (const webgpu of [false, true]) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const context = await launch({ webgpu });
    const page = await context.newPage();
    const start = Date.now();
    await page.goto(server.url);
    await page.waitForFunction(() => window.patchbay?.heatmap || window.patchbay?.errors.length, null, { timeout: 600_000 });
    times.push(Date.now() - start);
    if (i === 0) console.log(`  ${webgpu ? 'WebGPU' : 'CPU'} milestones (ms since navigation):`, await page.evaluate(() => window.patchbay.timings));
    await context.close();
  }
  times.sort((a, b) => a - b);
  console.log(`${webgpu ? 'WebGPU (SwiftShader)' : 'CPU fallback'}: first heatmap after ${times[Math.floor(times.length / 2)]} ms (median of ${runs}; min ${times[0]}, max ${times[times.length - 1]})`);
}
await server.close();
