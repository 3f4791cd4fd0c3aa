// sicc-web: a second, independent decoder for SIC files. See web/README.md.
export * as container from './container.js';
export * from './errors.js';
export { Codec, LatentDecoder, DEFAULT_SPREAD, SAMPLES_SPREAD, SINGLE_SPREAD, defaultSpread } from './codec.js';
export { loadBundle } from './bundle.js';
export { LevelFilm, filmTransform } from './level_film.js';
export { decodeGaussian, decodeCategorical } from './range_coding.js';
export { ProbabilityModel } from './probability.js';
export { SeedSequence, PCG64, seedGenerator, uniform } from './sampler.js';
