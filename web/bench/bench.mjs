// Decode speed of the JavaScript decoder beside the Python decoder, on the same machine:
//
//   npm run bench            (from web/, after npm ci; Python: $SICC_PYTHON, else python3)
//
// Encodes a Kodak image with Python (kodim01.png from $SICC_KODAK or ../shared/data/kodak, else
// examples/kodim23.png), then times, for the whole file (16 levels) and for its first level (15
// levels sampled): the Python decoder (sicc.decode, threads=1 and its default), this decoder in
// node (onnxruntime-web's WASM backend), and the page in headless Chromium (WASM). In the page it
// also measures how long after level 1's bytes arrive level 1 is on screen, streaming the file
// from a throttled local server. Prints a table and the machine's load average. Timings on a busy
// machine are slow and noisy: read the load average with them.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { loadBundle } from '../src/bundle.js';
import { Codec } from '../src/codec.js';
import { seedGenerator } from '../src/sampler.js';
import { decodeInPage, launch, serve } from '../test/browser.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUNS = Number(process.env.SICC_BENCH_RUNS || 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const PYTHON_PART = `
import json, sys, time
from pathlib import Path
import sicc
from sicc.codec import Codec
from sicc.export.web import export_web, vendor_onnxruntime
image, out, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
data = sicc.encode(image)
(out / "image.sic").write_bytes(data)
export_web(out / "model")
vendor_onnxruntime(Path("web/node_modules/onnxruntime-web/dist"), out / "vendor")
codec = Codec.default()
first = sicc.truncate(data, level=1)
times = {}
for threads in (1, None):
    for name, blob in (("all", data), ("level1", first)):
        codec.decode(blob, threads=threads)
        runs_s = []
        for _ in range(runs):
            t = time.perf_counter(); codec.decode(blob, threads=threads); runs_s.append(time.perf_counter() - t)
        times[f"{name}-threads{threads or 'default'}"] = sorted(runs_s)[len(runs_s) // 2]
info = sicc.info(data)
print(json.dumps({"times": times, "bytes": len(data), "width": info.width, "height": info.height,
                  "level1_bytes": info.levels[0].cumulative_bytes}))
`;

function kodakImage() {
  const dir = process.env.SICC_KODAK || path.join(REPO, '..', 'shared', 'data', 'kodak');
  const kodak = path.join(dir, 'kodim01.png');
  return fs.existsSync(kodak) ? kodak : path.join(REPO, 'examples', 'kodim23.png');
}

async function nodeTimes(dir, data) {
  const bundle = await loadBundle(async (n) => new Uint8Array(fs.readFileSync(path.join(dir, 'model', n))));
  const codec = await Codec.create(bundle, ort);
  const once = async (level) => {
    const t0 = performance.now();
    const { parsed } = codec.parse(data);
    const { decoder } = codec.decodeLatents(parsed, level);
    const t1 = performance.now();
    const y = codec.completeLatent(decoder, 2.0, level === 16 ? null : seedGenerator(0, 0));
    const t2 = performance.now();
    await codec.synthesize(y, parsed.header, decoder);
    const t3 = performance.now();
    return { total: t3 - t0, entropy: t1 - t0, sampling: t2 - t1, synthesis: t3 - t2 };
  };
  const result = {};
  for (const level of [16, 1]) {
    await once(level); // warm-up: JIT and onnxruntime's first run
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(level));
    result[level] = Object.fromEntries(Object.keys(runs[0]).map((k) => [k, median(runs.map((r) => r[k]))]));
  }
  return result;
}

async function browserTimes(dir, file) {
  const out = {};
  const threads = Math.min(2, os.cpus().length);
  const configs = [['unthrottled', 1 << 20, 0, false, ''], ['throttled', 2048, 100, false, ''], ['threads', 1 << 20, 0, true, `&threads=${threads}`]];
  for (const [label, chunkBytes, delayMs, isolated, query] of configs) {
    const server = await serve({ model: path.join(dir, 'model'), vendor: path.join(dir, 'vendor'), file, chunkBytes, delayMs, isolated });
    const runs = [];
    try {
      for (let i = 0; i < RUNS + 1; i++) {
        const browser = await launch(); // a fresh browser each run: no state carried over
        try {
          const page = await browser.newPage();
          const { events, errors } = await decodeInPage(page, server.address().port, 16, 240000, query);
          if (errors.length) throw new Error(errors.join(' | '));
          const open = events.find((e) => e.type === 'open');
          const arrived = events.find((e) => e.type === 'level' && e.level === 1);
          const first = events.find((e) => e.type === 'shown' && e.level >= 1);
          const last = events.filter((e) => e.type === 'shown').pop();
          runs.push({ all: last.t - open.t, level1AfterBytes: first.t - arrived.t, firstLevel: first.level });
        } finally {
          await browser.close();
        }
      }
    } finally {
      server.close();
    }
    runs.shift(); // the first run fills the disk caches
    out.threadCount = threads;
    out[label] = { all: median(runs.map((r) => r.all)), level1AfterBytes: median(runs.map((r) => r.level1AfterBytes)), firstLevel: runs[0].firstLevel };
  }
  return out;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sicc-web-bench-'));
try {
  const image = kodakImage();
  const python = process.env.SICC_PYTHON || 'python3';
  const run = spawnSync(python, ['-c', PYTHON_PART, image, dir, String(RUNS)], {
    cwd: REPO, env: { ...process.env, PYTHONPATH: REPO }, encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`the Python part failed: ${run.stderr}`);
  const py = JSON.parse(run.stdout.trim().split('\n').pop());
  const file = path.join(dir, 'image.sic');
  const data = new Uint8Array(fs.readFileSync(file));
  const nodeResult = await nodeTimes(dir, data);
  const chromium = await browserTimes(dir, file);
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const ratio = (ms, base) => `${(ms / base).toFixed(1)}x`;
  const p = Object.fromEntries(Object.entries(py.times).map(([k, v]) => [k, v * 1000])); // ms
  console.log(`${path.basename(image)} ${py.width}x${py.height}, ${py.bytes} bytes (level 1: ${py.level1_bytes}); median of ${RUNS} runs`);
  console.log(`machine: ${os.cpus().length} CPUs (${os.cpus()[0].model}), load average ${os.loadavg().map((x) => x.toFixed(1)).join(', ')}`);
  console.log('decoder                          all 16 levels      level 1 (+15 sampled)');
  console.log(`python sicc.decode, threads=1    ${s(p['all-threads1'])}             ${s(p['level1-threads1'])}`);
  console.log(`python sicc.decode, default      ${s(p['all-threadsdefault'])}             ${s(p['level1-threadsdefault'])}`);
  const n16 = nodeResult[16], n1 = nodeResult[1];
  console.log(`node (onnxruntime-web WASM)      ${s(n16.total)} (${ratio(n16.total, p['all-threads1'])})      ${s(n1.total)} (${ratio(n1.total, p['level1-threads1'])})   vs python threads=1`);
  console.log(`  entropy decode / sampling / g_s: ${s(n16.entropy)} / ${s(n16.sampling)} / ${s(n16.synthesis)}  (all levels)`);
  console.log(`headless Chromium page (WASM)    ${s(chromium.unthrottled.all)} (${ratio(chromium.unthrottled.all, p['all-threads1'])})`);
  console.log(`Chromium, cross-origin isolated, g_s on ${chromium.threadCount} threads: ${s(chromium.threads.all)} (${ratio(chromium.threads.all, p['all-threads1'])})`);
  console.log(`first picture (level ${chromium.throttled.firstLevel}) on screen after level 1's bytes arrived (Chromium, 2 KB per 100 ms): ${chromium.throttled.level1AfterBytes.toFixed(0)} ms`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
