// Inner level tables (sicc/model/level_film.py, web/src/level_film.js): a tiny model given random
// input and inner tables (a sicc-web-3 bundle, made with torch by tests/web_reference.py) decodes in
// node within +-1 of the Python decoder at every level tried, level 0 included, while the same
// latents through g_s with identity inner rows are further off (so the rows are fed, and those of
// the level decoded). Expected values come from the Python decoder.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { codecFor, readBytes, referenceDir } from './helpers.js';
import { INNER_FILM_WEB_FORMAT, LEVEL_FILM_WEB_FORMAT, loadBundle } from '../src/bundle.js';
import { WeightsError } from '../src/errors.js';
import { GAIN_INPUT, LevelFilm, SHIFT_INPUT, filmTransform } from '../src/level_film.js';

const { dir, skip: noReference } = referenceDir();
const ref = noReference ? null : JSON.parse(fs.readFileSync(path.join(dir, 'tiny-inner-film.json'), 'utf8'));
const skip = noReference || ref.skip || false; // ref.skip: why Python made no such model (torch missing)

function worst(rgba, expected, width, height) {
  let most = 0;
  for (let p = 0; p < width * height; p++) {
    for (let ch = 0; ch < 3; ch++) most = Math.max(most, Math.abs(rgba[4 * p + ch] - expected[3 * p + ch]));
  }
  return most;
}

/** The bundle's files, its manifest edited by `edit(manifest)` (the manifest is not among the checked files). */
function editedBundle(edit) {
  const files = path.join(dir, ref.bundle);
  return async (name) => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(files, name)));
    if (name !== 'manifest.json') return bytes;
    const manifest = JSON.parse(new TextDecoder().decode(bytes));
    edit(manifest);
    return new TextEncoder().encode(JSON.stringify(manifest));
  };
}

describe('inner level tables', { skip }, () => {
  test('a bundle with inner tables is sicc-web-3 and carries them, as float32 gains', async () => {
    const codec = await codecFor(ref.bundle, true);
    const { manifest } = codec.bundle;
    assert.equal(manifest.format, INNER_FILM_WEB_FORMAT);
    assert.equal(codec.modelId, ref.model_id);
    const film = codec.levelFilm;
    assert.ok(film instanceof LevelFilm && film.hasInner);
    assert.deepEqual([film.layers, film.hidden], [ref.layers, ref.hidden]);
    const tables = readBytes(path.join(dir, ref.bundle, 'tables.bin'));
    const table = (entry) => new Float64Array(tables.buffer.slice(entry.offset, entry.offset + 8 * entry.shape.reduce((a, b) => a * b, 1)));
    const scale = table(manifest.tables.level_film.inner_scale), shift = table(manifest.tables.level_film.inner_shift);
    assert.deepEqual(manifest.tables.level_film.inner_scale.shape, [manifest.config.levels, ref.layers, ref.hidden]);
    assert.ok(scale.some((v) => v !== 0) && shift.some((v) => v !== 0));
    assert.deepEqual(Array.from(film.innerGain), Array.from(scale, (v) => Math.fround(1 + Math.fround(v))));
    assert.deepEqual(Array.from(film.innerShift), Array.from(shift));
    assert.ok(codec.synthesis.session.inputNames.includes(GAIN_INPUT) && codec.synthesis.session.inputNames.includes(SHIFT_INPUT));
    await codec.warmUp(); // the page's first run: a decode of no level, through the identity rows
  });

  test('pixels within +-1 of sicc decode at each level, and not with identity inner rows', async (t) => {
    const codec = await codecFor(ref.bundle, true);
    const data = readBytes(ref.file);
    for (const [label, c] of Object.entries(ref.pixels)) {
      const result = await codec.decode(data, { level: c.level, seed: c.seed, spread: c.spread });
      const { rgba, width, height } = result.images[0];
      const here = worst(rgba, readBytes(c.file), width, height);
      const without = c.plain === null ? null : worst(rgba, readBytes(c.plain), width, height);
      t.diagnostic(`${label}: worst difference ${here} from Python, ${without ?? '-'} from Python with identity inner rows`);
      assert.ok(here <= 1, `${label}: worst difference ${here}`);
      if (without !== null) assert.ok(without > 1, `${label}: the inner tables change nothing (${without})`);
    }
  });

  test('a bundle whose format and tables disagree is refused, and so is a format not known', async () => {
    await loadBundle(editedBundle(() => {}));
    const cases = [ // [edit, the message it gives]
      [(m) => { m.format = LEVEL_FILM_WEB_FORMAT; }, /^model bundle of format sicc-web-2 with inner level tables$/],
      [(m) => { delete m.tables.level_film.inner_scale; delete m.tables.level_film.inner_shift; },
        /^model bundle of format sicc-web-3 without inner level tables$/],
      [(m) => { delete m.tables.level_film.inner_shift; }, /^model bundle of format sicc-web-3 with one of the two inner level tables$/],
      [(m) => { delete m.tables.level_film; }, /^model bundle of format sicc-web-3 without level tables$/],
      [(m) => { m.tables.level_film.inner_scale.shape[2] += 1; }, /^model bundle has invalid level tables \(inner tables of shapes/],
      [(m) => { for (const t of ['inner_scale', 'inner_shift']) m.tables.level_film[t].shape = [m.config.levels, 9, m.config.hidden]; },
        /^model bundle has invalid level tables \(inner tables of shapes .* not \[\d+, 1\.\.8, \d+\]\)$/],
      [(m) => { m.format = 'sicc-web-4'; }, /^model bundle format sicc-web-4 is not one of sicc-web-1, sicc-web-2, sicc-web-3$/],
    ];
    for (const [edit, message] of cases) {
      await assert.rejects(loadBundle(editedBundle(edit)), (e) => e instanceof WeightsError && message.test(e.message));
    }
  });
});

test('inner rows are float32 gains 1 + scale and shifts, the identity at level 0, fed at every level', async () => {
  const scale = [0.1, -0.3, 0.7, 0.2, 0.5, 0.5, -0.5, 0.25], shift = [0.5, -1.25, 0.1, 2, 3, -3, 0.75, 0];
  const film = new LevelFilm([0, 0, 0, 0], [0, 0, 0, 0], 2, 2, { scale, shift, layers: 2, hidden: 2 });
  const rows = film.innerRows(1);
  assert.deepEqual(Object.keys(rows).sort(), [GAIN_INPUT, SHIFT_INPUT].sort());
  assert.ok(rows[GAIN_INPUT].data instanceof Float32Array && rows[SHIFT_INPUT].data instanceof Float32Array);
  assert.deepEqual(rows[GAIN_INPUT].dims, [2, 2]);
  assert.deepEqual(Array.from(rows[GAIN_INPUT].data), [0.1, -0.3, 0.7, 0.2].map((v) => Math.fround(1 + Math.fround(v))));
  assert.deepEqual(Array.from(rows[SHIFT_INPUT].data), [0.5, -1.25, 0.1, 2].map(Math.fround));
  const identity = film.innerRows(0);
  assert.deepEqual(Array.from(identity[GAIN_INPUT].data), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(identity[SHIFT_INPUT].data), [0, 0, 0, 0]);
  assert.deepEqual(identity[SHIFT_INPUT].dims, [2, 2]);
  rows[GAIN_INPUT].data[0] = 9; // the rows are copies: the table stays as it was
  assert.equal(film.innerRows(1)[GAIN_INPUT].data[0], Math.fround(1.1));
  assert.deepEqual(new LevelFilm([0, 0], [0, 0], 1, 2).innerRows(1), {}); // no inner tables: no feeds

  const seen = [];
  const synthesis = { run: (data, dims, feeds) => seen.push(feeds) };
  for (const level of [0, 2]) await filmTransform(synthesis, film, level).run(new Float32Array(2), [1, 2, 1, 1]);
  assert.deepEqual(Array.from(seen[0][GAIN_INPUT].data), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(seen[0][SHIFT_INPUT].data), [0, 0, 0, 0]);
  assert.deepEqual(Array.from(seen[1][GAIN_INPUT].data), [1.5, 1.5, 0.5, 1.25]); // level 2's rows
  assert.deepEqual(Array.from(seen[1][SHIFT_INPUT].data), [3, -3, 0.75, 0]);
  assert.throws(() => new LevelFilm([0, 0], [0, 0], 1, 2, { scale: [0], shift: [0], layers: 1, hidden: 2 }), RangeError);
});
