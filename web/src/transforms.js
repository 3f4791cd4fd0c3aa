// The synthesis transform g_s as an ONNX graph run by onnxruntime-web's WASM backend (mirrors
// sicc/model/transforms.py). The onnxruntime module is passed in, so the same code runs in node
// (`import * as ort from 'onnxruntime-web'`) and in the page (the vendored ort.wasm.min.mjs).

export class Synthesis {
  constructor(ort, session) {
    this.ort = ort;
    this.session = session;
  }

  /** One session, single-threaded as in Python (the arithmetic does not depend on threads). */
  static async create(ort, graph, { threads = 1 } = {}) {
    ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create(graph, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
    return new Synthesis(ort, session);
  }

  /**
   * g_s on a (1, C, h, w) float32 tile: {data: Float32Array, dims}. `feeds`: the graph's other
   * inputs by name, {data: Float32Array, dims} each (film_gain and film_shift, [layers, hidden], of a
   * bundle with inner level tables: LevelFilm.innerRows).
   */
  async run(data, dims, feeds = {}) {
    const inputs = { input: new this.ort.Tensor('float32', data, dims) };
    for (const [name, feed] of Object.entries(feeds)) inputs[name] = new this.ort.Tensor('float32', feed.data, feed.dims);
    const result = await this.session.run(inputs);
    return result.output;
  }
}
