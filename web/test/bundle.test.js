// The web bundle is checked on load: a damaged file is refused, and a SIC file of another model
// is refused with the message Python gives.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { codecFor, readBytes, readReference, referenceDir } from './helpers.js';
import { loadBundle } from '../src/bundle.js';
import { parseHeader } from '../src/container.js';
import { UnsupportedError, WeightsError } from '../src/errors.js';

const { dir, skip } = referenceDir();

test('a bundle file that does not match its manifest is refused', { skip }, async () => {
  const files = path.join(dir, 'bundle-tiny');
  const read = (damage) => async (name) => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(files, name)));
    if (name === damage) bytes[bytes.length >> 1] ^= 1;
    return bytes;
  };
  await loadBundle(read(null));
  await assert.rejects(loadBundle(read('tables.bin')), WeightsError);
  await assert.rejects(loadBundle(read('g_s.onnx')), WeightsError);
  await assert.rejects(loadBundle(async () => new TextEncoder().encode('{"format": "other"}')), WeightsError);
});

test("a file of another model is refused, naming both models", { skip }, async () => {
  const shipped = readReference('shipped');
  const tiny = await codecFor('bundle-tiny', false);
  const data = readBytes(shipped.file);
  const { modelId } = parseHeader(data);
  assert.notEqual(modelId, tiny.modelId);
  assert.throws(() => tiny.parse(data), (e) => e instanceof UnsupportedError
    && e.message === `file was encoded with model ${modelId}, this sicc has model ${tiny.modelId}`);
});
