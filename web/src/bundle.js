// The web model bundle written by `python -m sicc.export web DIR` (sicc/export/web.py): the
// manifest, the exact probability model's integer tables and the g_s graph. Every file is checked
// against the SHA-256 in the manifest on load, and a SIC file is decoded only with the bundle
// whose model id its header names (codec.js).

import { WeightsError } from './errors.js';
import { LevelFilm } from './level_film.js';
import { ProbabilityModel } from './probability.js';

export const WEB_FORMAT = 'sicc-web-1';
/** sicc-web-1 plus the level tables (sicc/export/web.py): the bundle of weights that have them. */
export const LEVEL_FILM_WEB_FORMAT = 'sicc-web-2';
/** sicc-web-2 plus the inner level tables, and a g_s graph that takes their rows (film_gain, film_shift). */
export const INNER_FILM_WEB_FORMAT = 'sicc-web-3';
/** The formats this decoder reads; any other (a later one) is refused rather than decoded wrong. */
export const WEB_FORMATS = [WEB_FORMAT, LEVEL_FILM_WEB_FORMAT, INNER_FILM_WEB_FORMAT];

async function sha256Hex(bytes) {
  // Browsers and node >= 19 have crypto.subtle as a global; node 18 has it in node:crypto.
  const subtle = globalThis.crypto?.subtle ?? (await import('node:crypto')).webcrypto.subtle;
  const digest = await subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function view(buffer, entry) {
  const count = entry.shape.reduce((a, b) => a * b, 1);
  if (entry.dtype === 'int32') return Float64Array.from(new Int32Array(buffer, entry.offset, count));
  if (entry.dtype === 'float64') return new Float64Array(buffer.slice(entry.offset, entry.offset + 8 * count));
  throw new WeightsError(`unknown table type ${entry.dtype}`);
}

/** Why the manifest's level tables are not what its format says (null: they are), as "with ..." or "without ...". */
function tablesProblem(manifest) {
  const film = manifest.tables?.level_film;
  const inner = [film?.inner_scale, film?.inner_shift].filter(Boolean).length;
  if ((manifest.format !== WEB_FORMAT) !== Boolean(film)) return `${film ? 'with' : 'without'} level tables`;
  if ((manifest.format === INNER_FILM_WEB_FORMAT) !== (inner > 0)) return `${inner ? 'with' : 'without'} inner level tables`;
  if (inner === 1) return 'with one of the two inner level tables';
  return null;
}

/** The most hidden layers inner tables may address (MAX_INNER_LAYERS of sicc/model/level_film.py). */
export const MAX_INNER_LAYERS = 8;

/** The inner tables of a sicc-web-3 bundle as LevelFilm takes them: {scale, shift, layers, hidden}. */
function innerTables(buffer, film, config) {
  const shape = film.inner_scale.shape;
  if (shape.length !== 3 || shape[0] !== config.levels || shape[2] !== config.hidden
      || !(shape[1] >= 1 && shape[1] <= MAX_INNER_LAYERS)
      || film.inner_shift.shape.join() !== shape.join()) {
    throw new RangeError(`inner tables of shapes [${shape}] and [${film.inner_shift.shape}], not [${config.levels}, 1..${MAX_INNER_LAYERS}, ${config.hidden}]`);
  }
  return { scale: view(buffer, film.inner_scale), shift: view(buffer, film.inner_shift), layers: shape[1], hidden: shape[2] };
}

/**
 * Load a bundle through `readFile(name) -> Promise<Uint8Array>` (fetch in a browser, the file
 * system in node). Returns {manifest, modelId, probability: ProbabilityModel, levelFilm: LevelFilm or null,
 * synthesisGraph}.
 */
export async function loadBundle(readFile) {
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(await readFile('manifest.json')));
  } catch (error) {
    throw new WeightsError(`model bundle has no readable manifest.json (${error.message})`);
  }
  if (!WEB_FORMATS.includes(manifest.format)) {
    throw new WeightsError(`model bundle format ${manifest.format} is not one of ${WEB_FORMATS.join(', ')}`);
  }
  const problem = tablesProblem(manifest);
  if (problem) throw new WeightsError(`model bundle of format ${manifest.format} ${problem}`);
  const files = {};
  for (const [name, info] of Object.entries(manifest.files)) {
    const bytes = await readFile(name);
    if (bytes.length !== info.bytes || (await sha256Hex(bytes)) !== info.sha256) {
      throw new WeightsError(`model bundle file ${name} does not match its manifest (damaged or from another model)`);
    }
    files[name] = bytes;
  }
  const tablesBytes = files['tables.bin'];
  const buffer = tablesBytes.buffer.slice(tablesBytes.byteOffset, tablesBytes.byteOffset + tablesBytes.length);
  const t = manifest.tables;
  const probability = new ProbabilityModel({
    config: manifest.config,
    scaleOffset: manifest.scale_offset,
    scaleTable: view(buffer, t.scale_table),
    zFrequencies: (() => {
      const flat = view(buffer, t.z_frequencies);
      const [rows, cols] = t.z_frequencies.shape;
      return Array.from({ length: rows }, (_, r) => flat.subarray(r * cols, (r + 1) * cols));
    })(),
    hyperLayers: t.hyper_layers.map((layer) => ({
      weight: view(buffer, layer.weight), shape: layer.weight.shape, bias: view(buffer, layer.bias),
      transposed: layer.transposed, stride: layer.stride, relu: layer.relu,
    })),
    levelLayers: t.level_layers.map((level) => ({
      causalW: view(buffer, level.causal_w), causalShape: level.causal_w.shape, causalB: view(buffer, level.causal_b),
      midW: view(buffer, level.mid_w), midB: view(buffer, level.mid_b),
      outW: view(buffer, level.out_w), outB: view(buffer, level.out_b),
    })),
  });
  let levelFilm = null;
  if (t.level_film) {
    try {
      const inner = t.level_film.inner_scale ? innerTables(buffer, t.level_film, manifest.config) : null;
      levelFilm = new LevelFilm(view(buffer, t.level_film.scale), view(buffer, t.level_film.shift),
        manifest.config.levels, manifest.config.latent, inner);
    } catch (error) {
      throw new WeightsError(`model bundle has invalid level tables (${error.message})`);
    }
  }
  return { manifest, modelId: manifest.model_id, probability, levelFilm, synthesisGraph: files['g_s.onnx'] };
}
