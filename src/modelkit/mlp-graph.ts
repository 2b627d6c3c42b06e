import type { Mlp } from './mlp.js';
import type { OnnxGraphBuilder } from './onnx-builder.js';

/**
 * Appends a trained MLP's layers to a graph: Gemm (weights [in, out], transB = 0) and the
 * layer's activation, up to and including layer `upTo` (default: the output layer with its head).
 * Returns the name of the last value.
 */
export function appendMlp(
  b: OnnxGraphBuilder,
  input: string,
  mlp: Mlp,
  options: { readonly prefix: string; readonly upTo?: number },
): string {
  const upTo = options.upTo ?? mlp.layers.length - 1;
  let x = input;
  for (let l = 0; l <= upTo; l++) {
    const layer = mlp.layers[l];
    if (layer === undefined) throw new Error(`the MLP has no layer ${l}`);
    const w = b.initializer(
      `${options.prefix}_w${l}`,
      'float32',
      [layer.inputs, layer.outputs],
      layer.weights,
    );
    const bias = b.initializer(`${options.prefix}_b${l}`, 'float32', [layer.outputs], layer.bias);
    x = b.gemm(x, w, bias);
    switch (layer.activation) {
      case 'relu':
        x = b.relu(x);
        break;
      case 'tanh':
        x = b.tanh(x);
        break;
      case 'sigmoid':
        x = b.sigmoid(x);
        break;
      case 'softmax':
        x = b.softmax(x, -1);
        break;
      case 'linear':
        break;
    }
  }
  return x;
}
