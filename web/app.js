// The SIC viewer page: open, drop or stream a .sic file; show level 1 as soon as its bytes have
// arrived and refine level by level; level slider, seed, new sample, file info, save as PNG.
// All decoding runs here (src/, onnxruntime-web vendored under vendor/); nothing leaves the page.
//
// For tests and benchmarks the page records what it did in `window.sicc.events`
// ({type: 'bytes' | 'level' | 'shown' | 'done' | 'error', t (ms, performance.now()), ...}).

import * as ort from './vendor/onnxruntime-web/ort.wasm.min.mjs';
import { loadBundle } from './src/bundle.js';
import { Codec, LatentDecoder, SAMPLES_SPREAD } from './src/codec.js';
import * as container from './src/container.js';
import { CorruptError, SiccError, TruncatedError } from './src/errors.js';
import { seedGenerator } from './src/sampler.js';

ort.env.wasm.wasmPaths = new URL('./vendor/onnxruntime-web/', import.meta.url).href;

const $ = (id) => document.getElementById(id);
const events = [];
const record = (type, detail = {}) => events.push({ type, t: performance.now(), ...detail });
window.sicc = { events, ready: null, state: null };

const params = new URLSearchParams(location.search);
const FIRST_PICTURE_BUDGET_MS = 100;
let codec = null;
let current = null; // the file being shown
let warmed = null; // the warm-up (Codec.warmUp)

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

async function loadCodec() {
  const base = new URL('./model/', location.href);
  const bundle = await loadBundle(async (name) => {
    const response = await fetch(new URL(name, base));
    if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  });
  // ?threads=N runs g_s on N threads: onnxruntime-web can only do that in a cross-origin-isolated
  // page (COOP/COEP headers; python -m http.server does not send them). Single-threaded otherwise,
  // and by default (on the 2-core test machine two threads were slower); the pixels are the same.
  const asked = Math.max(1, Math.floor(Number(params.get('threads')) || 1));
  const threads = globalThis.crossOriginIsolated ? Math.min(asked, navigator.hardwareConcurrency || 1) : 1;
  return Codec.create(bundle, ort, { threads });
}

/** One file: its bytes as they arrive, the levels decoded so far, and what is shown. */
class Viewer {
  constructor(name) {
    this.name = name;
    this.bytes = new Uint8Array(0);
    this.done = false;
    this.parsed = null;
    this.decoder = null;
    this.failed = null; // a level that did not decode: later levels are not used
    this.follow = true; // the slider follows the newest level until the user moves it
    this.level = 0;
    this.rendering = null;
    this.again = false;
    this.shown = null;
  }

  append(chunk) {
    const next = new Uint8Array(this.bytes.length + chunk.length);
    next.set(this.bytes);
    next.set(chunk, this.bytes.length);
    this.bytes = next;
    record('bytes', { received: this.bytes.length });
    this.update();
  }

  finish() {
    this.done = true;
    this.update();
    record('done', { received: this.bytes.length });
  }

  /** Parse what has arrived; decode new complete levels; ask for a render. */
  update() {
    if (this.error) return;
    let parsed;
    try {
      ({ parsed } = codec.parse(this.bytes));
    } catch (error) {
      if (error instanceof TruncatedError && !this.done) return; // the header or hyperprior is still coming
      return this.fail(error);
    }
    this.parsed = parsed;
    try {
      if (!this.decoder) this.decoder = new LatentDecoder(codec, parsed);
      const start = performance.now();
      while (!this.failed && this.decoder.levels < parsed.levels.length) {
        try {
          this.decoder.addLevel(parsed.levels[this.decoder.levels]);
        } catch (error) {
          if (!(error instanceof CorruptError)) throw error;
          this.failed = error.message;
          break;
        }
        record('level', { level: this.decoder.levels, received: this.bytes.length });
        // Before the first picture, decode the levels that are already here for at most
        // FIRST_PICTURE_BUDGET_MS (a level takes some 10-30 ms, g_s about a second): the first
        // picture is then the best one at hand, shown at once, without a whole g_s spent on a
        // level already superseded; the next levels are decoded after it.
        if (!this.shown && performance.now() - start >= FIRST_PICTURE_BUDGET_MS) break;
      }
    } catch (error) {
      return this.fail(error);
    }
    if (this.follow) this.level = this.decoder.levels;
    this.showInfo();
    this.render();
  }

  fail(error) {
    this.error = error;
    record('error', { name: error.name, message: error.message });
    status(`${this.name}: ${error instanceof SiccError ? '' : 'error: '}${error.message}`, true);
  }

  /** Render the chosen level (one render at a time; the newest request wins). */
  render() {
    // Nothing to show until level 1 has arrived (a picture of the hyperprior alone is noise),
    // unless the file holds no level at all.
    if (!this.decoder || (this.decoder.levels === 0 && !this.done)) return;
    if (this.rendering) { this.again = true; return; }
    this.rendering = this.draw().catch((error) => this.fail(error)).finally(() => {
      this.rendering = null;
      if (this.parsed && !this.failed && !this.error && this.decoder.levels < this.parsed.levels.length) this.update();
      else if (this.again) { this.again = false; this.render(); }
    });
  }

  async draw() {
    const level = Math.min(this.level, this.decoder.levels);
    const seed = Number($('seed').value) || 0;
    const spread = Math.max(0, Number($('spread').value) || 0);
    const key = `${level}/${seed}/${spread}`;
    if (this.shown === key) return;
    const complete = level === codec.config.levels || spread === 0;
    const y = codec.completeLatent(this.decoder, spread, complete ? null : seedGenerator(seed, 0), level);
    const { header } = this.parsed;
    const canvas = $('canvas');
    if (canvas.width !== header.width || canvas.height !== header.height) {
      canvas.width = header.width;
      canvas.height = header.height;
    }
    const context = canvas.getContext('2d');
    const gray = header.flags & container.FLAG_GRAYSCALE;
    // Each tile is drawn as soon as g_s has made it (over the previous picture), and the
    // browser gets a moment between tiles to paint and to take in more of the download.
    // (A gray file's tiles are drawn once its whole picture is converted.)
    const drawTile = async (done, total, [top, left, rows, cols], rgba) => {
      if (!gray) context.putImageData(new ImageData(rgba, header.width, header.height), 0, 0, left, top, cols, rows);
      await new Promise((resolve) => setTimeout(resolve, 0));
    };
    const rgba = await codec.synthesize(y, header, this.decoder, drawTile, level);
    context.putImageData(new ImageData(rgba, header.width, header.height), 0, 0);
    this.shown = key;
    record('shown', { level, seed, spread, received: this.bytes.length });
    window.sicc.state = { level, seed, spread, width: header.width, height: header.height, levels: this.decoder.levels, done: this.done };
    this.showInfo();
  }

  showInfo() {
    const { header, chunkEnds } = this.parsed;
    const pixels = header.width * header.height;
    const levels = codec.config.levels;
    const slider = $('level');
    slider.max = String(this.decoder.levels);
    slider.value = String(Math.min(this.level, this.decoder.levels));
    slider.disabled = this.decoder.levels === 0;
    $('levelOut').textContent = `${slider.value} of ${this.decoder.levels} decoded (${levels} in the model)`;
    $('sample').disabled = $('save').disabled = false;
    const rows = [];
    for (let i = 1; i <= levels; i++) {
      const have = i < chunkEnds.length && i <= this.decoder.levels;
      const shownLevel = this.shown ? Number(this.shown.split('/')[0]) : -1;
      const cls = i === shownLevel ? 'shown' : have ? '' : 'missing';
      rows.push(have
        ? `<tr class="${cls}"><td>${i}</td><td>${chunkEnds[i] - chunkEnds[i - 1]}</td><td>${chunkEnds[i]}</td><td>${((chunkEnds[i] * 8) / pixels).toFixed(3)}</td></tr>`
        : `<tr class="missing"><td>${i}</td><td colspan="3">${this.done ? 'not in the file: sampled' : 'not yet arrived: sampled'}</td></tr>`);
    }
    const note = this.failed ? `<p class="error">${escapeHtml(this.failed)}; showing the levels before it</p>`
      : this.parsed.truncated && this.done ? `<p class="error">the file is cut inside level ${this.parsed.levels.length + 1}</p>`
        : this.parsed.corruptLevel ? `<p class="error">level ${this.parsed.corruptLevel} is corrupt (${escapeHtml(this.parsed.corruptReason)})</p>` : '';
    $('info').innerHTML = `<div><b>${escapeHtml(this.name)}</b>: ${header.width}×${header.height}${header.flags & container.FLAG_GRAYSCALE ? ', gray' : ''},
      ${this.bytes.length} bytes${this.done ? '' : ' so far'}, model ${header.modelId}</div>${note}
      <table><tr><th>level</th><th>bytes</th><th>cumulative</th><th>bpp</th></tr>${rows.join('')}</table>`;
    const arrived = events.find((e) => e.type === 'level' && e.level === 1);
    const first = events.find((e) => e.type === 'shown' && e.level >= 1);
    status(this.done ? `${this.decoder.levels} levels decoded` + (arrived && first ? `; level 1 shown ${(first.t - arrived.t).toFixed(0)} ms after its bytes arrived` : '')
      : `receiving… ${this.bytes.length} bytes, ${this.decoder.levels} levels`);
  }
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function open(name, source) {
  await window.sicc.ready;
  events.length = 0;
  record('open', { name });
  current = new Viewer(name);
  status(`reading ${name}…`);
  try {
    if (source instanceof Blob) {
      const bytes = new Uint8Array(await source.arrayBuffer());
      await warmed;
      current.append(bytes);
    } else {
      const response = await fetch(source);
      await warmed; // the bytes keep arriving meanwhile
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
      const reader = response.body.getReader();
      const viewer = current;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (viewer !== current) { reader.cancel(); return; } // another file was opened
        viewer.append(value);
        if (viewer.error) { reader.cancel(); return; }
      }
    }
    current.finish();
  } catch (error) {
    current.fail(error);
  }
}

$('file').addEventListener('change', (e) => { const f = e.target.files[0]; if (f) open(f.name, f); });
$('load').addEventListener('click', () => { const url = $('url').value.trim(); if (url) open(url.split('/').pop() || url, url); });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer.files[0];
  if (f) open(f.name, f);
});
$('level').addEventListener('input', () => {
  if (!current?.decoder) return;
  current.level = Number($('level').value);
  current.follow = current.level === current.decoder.levels;
  current.render();
});
for (const id of ['seed', 'spread']) $(id).addEventListener('change', () => current?.render());
$('sample').addEventListener('click', () => {
  $('seed').value = String((Number($('seed').value) || 0) + 1);
  if (!(Number($('spread').value) > 0)) $('spread').value = String(SAMPLES_SPREAD); // spread 0 samples nothing
  current?.render();
});
$('save').addEventListener('click', () => {
  if (!current?.shown) return;
  const [level, seed] = current.shown.split('/');
  $('canvas').toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `${current.name.replace(/\.sic$/i, '')}-level${level}-seed${seed}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, 'image/png');
});

window.sicc.ready = loadCodec().then((loaded) => {
  codec = loaded;
  // Compile the hot loops and make onnxruntime's first run on a small made-up latent, so that
  // the first picture does not pay for them: after the file's request has gone out (open()
  // waits for this before it decodes), while no file is waiting otherwise.
  warmed = new Promise((resolve) => setTimeout(resolve, 0)).then(() => codec.warmUp()).catch(() => {});
  status(`model ${codec.modelId} loaded: open or drop a .sic file`);
  record('ready');
  window.sicc.threads = ort.env.wasm.numThreads;
  if (params.get('seed')) $('seed').value = params.get('seed');
  if (params.get('url')) open(params.get('url').split('/').pop(), params.get('url'));
}, (error) => {
  status(`the model did not load: ${error.message}`, true);
  record('error', { name: error.name, message: error.message });
  throw error;
});
