// Shared setup of the tests: reference data computed by the Python decoder (tests/web_reference.py)
// in a temporary folder, once per test process, and bundles loaded from the file system.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { loadBundle } from '../src/bundle.js';
import { Codec } from '../src/codec.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GOLDENS = ['shipped', 'tiny', 'tiny-gray'];

let cached = null;

/**
 * {dir, skip}: the reference folder, or why there is none. The Python is $SICC_PYTHON, else
 * `python3`, run from the repository root with it on PYTHONPATH.
 */
export function referenceDir() {
  if (cached) return cached;
  if (process.env.SICC_WEB_REFERENCE) return (cached = { dir: process.env.SICC_WEB_REFERENCE, skip: false });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sicc-web-ref-'));
  const python = process.env.SICC_PYTHON || 'python3';
  const run = spawnSync(python, ['-m', 'tests.web_reference', dir], {
    cwd: REPO, env: { ...process.env, PYTHONPATH: REPO }, encoding: 'utf8',
  });
  if (run.status !== 0) {
    const why = run.error ? run.error.message : (run.stderr || '').trim().split('\n').pop();
    cached = { dir: null, skip: `the Python reference decoder did not run (${python}: ${why}); set SICC_PYTHON to a Python with sicc's dependencies` };
  } else {
    cached = { dir, skip: false };
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return cached;
}

export function readReference(name) {
  return JSON.parse(fs.readFileSync(path.join(referenceDir().dir, `${name}.json`), 'utf8'));
}

const codecs = {};

/** The codec of a bundle folder in the reference folder (with g_s when `synthesis`). */
export async function codecFor(bundle, synthesis = true) {
  const key = `${bundle}:${synthesis}`;
  if (!codecs[key]) {
    const dir = path.join(referenceDir().dir, bundle);
    const loaded = await loadBundle(async (name) => new Uint8Array(fs.readFileSync(path.join(dir, name))));
    codecs[key] = await Codec.create(loaded, synthesis ? ort : null);
  }
  return codecs[key];
}

export function readBytes(file) {
  return new Uint8Array(fs.readFileSync(path.isAbsolute(file) ? file : path.join(referenceDir().dir, file)));
}
