// Level tables (sicc/model/level_film.py, web/src/level_film.js): a tiny model given random tables
// decodes in node within +-1 of the Python decoder at every level tried, while the same latents
// through g_s without the tables are further off (so the tables are applied, and applied for the
// level decoded). Expected values come from the Python decoder (tests/web_reference.py).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { codecFor, readBytes, referenceDir } from './helpers.js';
import { LevelFilm, filmTransform } from '../src/level_film.js';

const { dir, skip } = referenceDir();

function worst(rgba, expected, width, height) {
  let most = 0;
  for (let p = 0; p < width * height; p++) {
    for (let ch = 0; ch < 3; ch++) most = Math.max(most, Math.abs(rgba[4 * p + ch] - expected[3 * p + ch]));
  }
  return most;
}

describe('level tables', { skip }, () => {
  test('a bundle with level tables is sicc-web-2 and carries them', async () => {
    const ref = JSON.parse(fs.readFileSync(path.join(dir, 'tiny-film.json'), 'utf8'));
    const codec = await codecFor(ref.bundle, false);
    assert.equal(codec.bundle.manifest.format, 'sicc-web-2');
    assert.equal(codec.modelId, ref.model_id);
    assert.ok(codec.levelFilm instanceof LevelFilm);
    const plain = await codecFor('bundle-tiny', false);
    assert.equal(plain.levelFilm, null);
  });

  test('pixels within +-1 of sicc decode at each level, and not without the tables', async (t) => {
    const ref = JSON.parse(fs.readFileSync(path.join(dir, 'tiny-film.json'), 'utf8'));
    const codec = await codecFor(ref.bundle, true);
    const data = readBytes(ref.file);
    for (const [label, c] of Object.entries(ref.pixels)) {
      const result = await codec.decode(data, { level: c.level, seed: c.seed, spread: c.spread });
      const { rgba, width, height } = result.images[0];
      const expected = readBytes(c.file), plain = readBytes(c.plain);
      const here = worst(rgba, expected, width, height), without = worst(rgba, plain, width, height);
      t.diagnostic(`${label}: worst difference ${here} from Python, ${without} from Python without the tables`);
      assert.ok(here <= 1, `${label}: worst difference ${here}`);
      assert.ok(without > 1, `${label}: the tables change nothing (${without})`);
    }
  });

  test('the affine is float32 arithmetic, identity for level 0 and without tables', () => {
    const film = new LevelFilm([0.1, -0.5, 0, 0], [0.25, 0, 0, 0], 2, 2);
    const tile = new Float32Array([1, 3, -2, 7]);
    film.apply(tile, [1, 2, 1, 2], 1);
    assert.deepEqual(Array.from(tile), [Math.fround(Math.fround(1 * Math.fround(1.1)) + 0.25),
      Math.fround(Math.fround(3 * Math.fround(1.1)) + 0.25), -1, 3.5]);
    const same = new Float32Array([1, 2, 3, 4]);
    film.apply(same, [1, 2, 1, 2], 0);
    assert.deepEqual(Array.from(same), [1, 2, 3, 4]);
    const synthesis = { run: () => 'g_s' };
    assert.equal(filmTransform(synthesis, null, 3), synthesis);
    assert.equal(filmTransform(synthesis, film, 0), synthesis);
    assert.notEqual(filmTransform(synthesis, film, 1), synthesis);
  });
});
