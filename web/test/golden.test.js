// The golden files decode in node exactly as in Python: the same integer latents at every level,
// the same sampled latents for a seed, pixels within +-1, and the same outcome for every prefix
// and for corrupted copies. Expected values come from the Python decoder (tests/web_reference.py).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GOLDENS, codecFor, readBytes, readReference, referenceDir } from './helpers.js';
import { LatentDecoder } from '../src/codec.js';
import { SiccError } from '../src/errors.js';
import { seedGenerator } from '../src/sampler.js';

const { skip } = referenceDir();

/** What the JS decoder does with `data`: as tests/web_reference.py's _outcome. */
function outcome(codec, data, decode, strict = false) {
  try {
    const { parsed, warnings } = codec.parse(data, { strict });
    let levels = parsed.levels.length;
    if (decode) {
      const result = codec.decodeLatents(parsed, levels, { strict });
      warnings.push(...result.warnings);
      levels = result.decoder.levels;
    }
    return { levels, warnings };
  } catch (error) {
    if (!(error instanceof SiccError)) throw error;
    return { error: error.name, message: error.message };
  }
}

function firstDifference(actual, expected) {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`;
  for (let i = 0; i < actual.length; i++) if (actual[i] !== expected[i]) return `index ${i}: ${actual[i]} != ${expected[i]}`;
  return null;
}

for (const name of GOLDENS) {
  describe(`golden-${name}`, { skip }, () => {
    test('entropy-decoded latents equal Python at every level', async () => {
      const ref = readReference(name);
      const codec = await codecFor(ref.bundle, false);
      const { parsed } = codec.parse(readBytes(ref.file));
      assert.equal(parsed.levels.length, ref.levels);
      const decoder = new LatentDecoder(codec, parsed);
      assert.equal(firstDifference(Array.from(decoder.z), ref.z), null, 'z');
      const perLevel = codec.config.group_size * decoder.h * decoder.w;
      for (let level = 1; level <= ref.levels; level++) {
        decoder.addLevel(parsed.levels[level - 1]);
        const diff = firstDifference(Array.from(decoder.coded()), ref.y.slice(0, level * perLevel));
        assert.equal(diff, null, `level ${level}`);
      }
      // and a fresh decode of each prefix of levels gives the same integers
      for (const level of [0, 1, 3, ref.levels]) {
        const { decoder: fresh } = codec.decodeLatents(parsed, level);
        assert.equal(firstDifference(Array.from(fresh.coded()), ref.y.slice(0, level * perLevel)), null, `fresh level ${level}`);
      }
    });

    test('sampled latents equal Python for the same seed', async () => {
      const ref = readReference(name);
      const codec = await codecFor(ref.bundle, false);
      const { parsed } = codec.parse(readBytes(ref.file));
      for (const c of ref.sampled) {
        const { decoder } = codec.decodeLatents(parsed, c.level);
        const y = codec.completeLatent(decoder, c.spread, seedGenerator(c.seed, c.sample));
        assert.equal(firstDifference(Array.from(y), c.y), null, `level ${c.level} seed ${c.seed} sample ${c.sample}`);
      }
    });

    test('pixels within +-1 of sicc decode', async (t) => {
      const ref = readReference(name);
      const codec = await codecFor(ref.bundle, true);
      const data = readBytes(ref.file);
      for (const [label, c] of Object.entries(ref.pixels)) {
        const expected = readBytes(c.file);
        const result = await codec.decode(data, { level: c.level, seed: c.seed, spread: c.spread });
        const { rgba, width, height } = result.images[0];
        assert.equal(expected.length, width * height * 3);
        let worst = 0, squared = 0, off = 0;
        for (let p = 0; p < width * height; p++) {
          for (let ch = 0; ch < 3; ch++) {
            const d = Math.abs(rgba[4 * p + ch] - expected[3 * p + ch]);
            worst = Math.max(worst, d);
            squared += d * d;
            if (d) off += 1;
          }
        }
        const mse = squared / (width * height * 3);
        const psnr = mse ? (10 * Math.log10((255 * 255) / mse)).toFixed(1) : 'inf';
        t.diagnostic(`${name} ${label}: worst difference ${worst}, ${off} of ${width * height * 3} values differ, PSNR vs Python ${psnr} dB`);
        assert.ok(worst <= 1, `worst difference ${worst}`);
      }
    });

    test('every prefix of the file behaves as in Python', async () => {
      const ref = readReference(name);
      const codec = await codecFor(ref.bundle, false);
      const data = readBytes(ref.file);
      assert.equal(ref.prefixes.length, data.length + 1);
      for (let n = 0; n <= data.length; n++) {
        assert.deepEqual(outcome(codec, data.subarray(0, n), false), ref.prefixes[n], `prefix of ${n} bytes`);
      }
    });

    test('corrupted files give the errors and warnings Python gives', async () => {
      const ref = readReference(name);
      const codec = await codecFor(ref.bundle, false);
      for (const [label, c] of Object.entries(ref.corrupted)) {
        const data = readBytes(c.file);
        assert.deepEqual(outcome(codec, data, true, false), c.lenient, `${label} (lenient)`);
        assert.deepEqual(outcome(codec, data, true, true), c.strict, `${label} (strict)`);
      }
    });
  });
}
