// The page in a real browser: headless Chromium (the distribution's package) loads index.html
// from a local server on 127.0.0.1 that sends a .sic file slowly, and the test checks that
// level 1 is displayed before the download ends, then reads the final pixels back and compares
// them with the Python decode (+-1). Run by tests/test_web.py, which prepares the inputs:
//
//   SICC_WEB_MODEL=DIR      the web bundle (python -m sicc.export web DIR)
//   SICC_WEB_VENDOR=DIR     onnxruntime-web's vendored files (served as /vendor/onnxruntime-web/)
//   SICC_WEB_FILE=FILE.sic  the file to stream
//   SICC_WEB_EXPECTED=FILE  the Python decode's RGB bytes (all levels)
//   SICC_WEB_EXPECTED_SAMPLE=FILE  Python's RGB bytes of level 3, seed 7 (optional: then the
//                           slider and "new sample" are driven to it and compared)
//   SICC_WEB_SCREENSHOT=PNG where to save a screenshot (optional)
//   SICC_WEB_CHUNK, SICC_WEB_DELAY_MS  the throttle: bytes per piece, milliseconds between pieces
//   CHROMIUM                the browser (default /usr/bin/chromium)
// Prints one JSON line of results; exits non-zero when a check fails.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const chunk = Number(env.SICC_WEB_CHUNK || 512);
const delay = Number(env.SICC_WEB_DELAY_MS || 40);
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

/** A static server of web/ (with the bundle and vendored files mapped in) and a throttled /stream.sic. */
export function serve({ model, vendor, file, chunkBytes = chunk, delayMs = delay, isolated = false }) {
  const server = http.createServer((request, response) => {
    // cross-origin isolation (what a page needs for WebAssembly threads), when asked for
    if (isolated) {
      response.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      response.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    const url = new URL(request.url, 'http://127.0.0.1');
    if (url.pathname === '/stream.sic') {
      const data = fs.readFileSync(file);
      response.writeHead(200, { 'Content-Type': 'image/x-sic', 'Content-Length': data.length, 'Cache-Control': 'no-store' });
      let pos = 0;
      const send = () => {
        if (pos >= data.length) return response.end();
        response.write(data.subarray(pos, pos + chunkBytes));
        pos += chunkBytes;
        setTimeout(send, delayMs);
      };
      return send();
    }
    let local;
    if (url.pathname.startsWith('/model/')) local = path.join(model, url.pathname.slice(7));
    else if (url.pathname.startsWith('/vendor/onnxruntime-web/')) local = path.join(vendor, url.pathname.slice(24));
    else local = path.join(WEB, url.pathname === '/' ? 'index.html' : url.pathname);
    const inside = [WEB, model, vendor].some((root) => path.resolve(local).startsWith(path.resolve(root) + path.sep));
    if (!inside || url.pathname.includes('/node_modules/') || !fs.existsSync(local) || !fs.statSync(local).isFile()) {
      response.writeHead(404);
      return response.end();
    }
    response.writeHead(200, { 'Content-Type': TYPES[path.extname(local)] || 'application/octet-stream' });
    response.end(fs.readFileSync(local));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function launch() {
  return puppeteer.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    protocolTimeout: 600000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
  });
}

/** Open the page on the throttled file; resolve when every level is shown. Returns the page's events. */
export async function decodeInPage(page, port, expectedLevels, timeoutMs = 240000, query = '') {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${port}/index.html?url=/stream.sic${query}`);
  await page.waitForFunction(
    (levels) => window.sicc.events.some((e) => e.type === 'error')
      || (window.sicc.state && window.sicc.state.done && window.sicc.state.level === levels),
    { timeout: timeoutMs, polling: 50 }, expectedLevels);
  const events = await page.evaluate(() => window.sicc.events);
  return { events, errors };
}

async function main() {
  const expected = fs.readFileSync(env.SICC_WEB_EXPECTED);
  const total = fs.statSync(env.SICC_WEB_FILE).size;
  const levels = Number(env.SICC_WEB_LEVELS || 16);
  const server = await serve({ model: env.SICC_WEB_MODEL, vendor: env.SICC_WEB_VENDOR, file: env.SICC_WEB_FILE });
  const browser = await launch();
  const failures = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 820, height: 600 });
    const { events, errors } = await decodeInPage(page, server.address().port, levels);
    const failed = events.find((e) => e.type === 'error');
    if (failed || errors.length) failures.push(`page errors: ${JSON.stringify(failed)} ${errors.join(' | ')}`);
    const arrived = events.find((e) => e.type === 'level' && e.level === 1);
    const firstShown = events.find((e) => e.type === 'shown' && e.level >= 1);
    const done = events.find((e) => e.type === 'done');
    if (!firstShown || !done || !(firstShown.t < done.t) || !(firstShown.received < total)) {
      failures.push(`level 1 was not displayed before the download ended (shown ${JSON.stringify(firstShown)}, done ${JSON.stringify(done)})`);
    }
    const pixels = await page.evaluate(() => {
      const c = document.getElementById('canvas');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    });
    let worst = 0, squared = 0;
    const n = expected.length / 3;
    if (pixels.length !== n * 4) failures.push(`canvas holds ${pixels.length / 4} pixels, Python's image ${n}`);
    for (let p = 0; p < n && pixels.length === n * 4; p++) {
      for (let ch = 0; ch < 3; ch++) {
        const d = Math.abs(pixels[4 * p + ch] - expected[3 * p + ch]);
        worst = Math.max(worst, d);
        squared += d * d;
      }
    }
    if (worst > 1) failures.push(`final pixels differ from Python's by up to ${worst}`);
    const mse = squared / (3 * n);
    let sampledWorst = null;
    if (env.SICC_WEB_EXPECTED_SAMPLE) { // level 3, seed 7 through the page's controls: sicc decode --level 3 --seed 7
      const want = fs.readFileSync(env.SICC_WEB_EXPECTED_SAMPLE);
      await page.evaluate(() => {
        document.getElementById('seed').value = '6';
        const slider = document.getElementById('level');
        slider.value = '3';
        slider.dispatchEvent(new Event('input'));
      });
      await page.waitForFunction(() => window.sicc.state.level === 3, { timeout: 120000, polling: 50 });
      await page.click('#sample'); // seed 6 -> 7
      await page.waitForFunction(() => window.sicc.state.level === 3 && window.sicc.state.seed === 7, { timeout: 120000, polling: 50 });
      const got = await page.evaluate(() => {
        const c = document.getElementById('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
      });
      sampledWorst = 0;
      for (let p = 0; p < n; p++) for (let ch = 0; ch < 3; ch++) sampledWorst = Math.max(sampledWorst, Math.abs(got[4 * p + ch] - want[3 * p + ch]));
      if (sampledWorst > 1) failures.push(`level 3, seed 7 differs from Python's by up to ${sampledWorst}`);
    }
    if (env.SICC_WEB_SCREENSHOT) await page.screenshot({ path: env.SICC_WEB_SCREENSHOT, type: 'png' });
    console.log(JSON.stringify({
      bytes: total, throttle: `${chunk} bytes every ${delay} ms`,
      level1_arrived_ms: arrived && arrived.t - events[0].t, level1_shown_ms: firstShown && firstShown.t - events[0].t,
      level1_shown_after_its_bytes_ms: arrived && firstShown && firstShown.t - arrived.t,
      download_done_ms: done && done.t - events[0].t, levels_shown: events.filter((e) => e.type === 'shown').map((e) => e.level),
      worst_pixel_difference: worst, psnr_vs_python_db: mse ? 10 * Math.log10((255 * 255) / mse) : Infinity,
      level3_seed7_worst_difference: sampledWorst, failures,
    }));
  } finally {
    await browser.close();
    server.close();
  }
  process.exit(failures.length ? 1 : 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
