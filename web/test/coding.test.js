// The range decoder against constriction: random symbols coded by sicc.coding (constriction's
// RangeEncoder) over the whole range of means and scales decode to the same integers, and the
// exactness check accepts exactly what constriction wrote (tests/web_reference.py coding_cases).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { referenceDir } from './helpers.js';
import { CodingError, decodeCategorical, decodeGaussian, gaussianLeft } from '../src/range_coding.js';

const { dir, skip } = referenceDir();
const cases = () => JSON.parse(fs.readFileSync(path.join(dir, 'coding.json'), 'utf8'));
const bytes = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));

test('symbols coded by constriction decode to the same integers', { skip }, () => {
  let total = 0;
  for (const c of cases()) {
    const out = c.kind === 'gaussian'
      ? decodeGaussian(bytes(c.data), Float64Array.from(c.means), Float64Array.from(c.scales))
      : decodeCategorical(bytes(c.data), c.frequencies, c.count);
    assert.deepEqual(Array.from(out), c.symbols, `${c.kind}, ${c.symbols.length} symbols`);
    total += out.length;
  }
  assert.ok(total > 80000);
});

test('data that is not exactly the encoding of its symbols is refused', { skip }, () => {
  const c = cases().find((x) => x.kind === 'gaussian' && x.symbols.length === 1000);
  const data = bytes(c.data);
  const means = Float64Array.from(c.means), scales = Float64Array.from(c.scales);
  const longer = new Uint8Array(data.length + 4);
  longer.set(data);
  assert.throws(() => decodeGaussian(longer, means, scales), (e) => e instanceof CodingError && /left data unused/.test(e.message));
  assert.throws(() => decodeGaussian(data.subarray(0, data.length - 4), means, scales), CodingError);
  assert.throws(() => decodeGaussian(data.subarray(0, 6), means, scales), /whole number of 32-bit words/);
  assert.throws(() => decodeGaussian(new Uint8Array(0), means, scales), CodingError);
});

test("the quantized Gaussian's cumulative frequencies are constriction's, integer for integer", { skip }, () => {
  const lefts = JSON.parse(fs.readFileSync(path.join(dir, 'lefts.json'), 'utf8'));
  let wrong = 0, first = null;
  for (const [symbol, mean, scale, left] of lefts) {
    const mine = gaussianLeft(symbol, mean, scale);
    if (mine !== left) { wrong += 1; first ??= { symbol, mean, scale, left, mine }; }
  }
  assert.equal(wrong, 0, `${wrong} of ${lefts.length} differ, first ${JSON.stringify(first)}`);
});
