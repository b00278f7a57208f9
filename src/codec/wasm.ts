/**
 * Loading the embedded WebAssembly modules (AssemblyScript output, base64 in
 * `wasm_bytes.generated.ts`). Portable: uses only `atob` and the `WebAssembly` global.
 */

/** Decodes a base64 string into bytes. */
export function base64ToBytes(base64: string): Uint8Array {
  const bin = atob(base64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Compiles and instantiates a module given as base64. AssemblyScript modules import
 * `env.abort`; a default that throws is supplied unless `imports` provides one.
 */
export function instantiate(
  base64: string,
  imports: WebAssembly.Imports = {},
): WebAssembly.Instance {
  const env = {
    abort(_msg: number, _file: number, line: number, col: number): never {
      throw new Error(`wasm abort at ${line}:${col}`);
    },
    ...(imports.env ?? {}),
  };
  const module = new WebAssembly.Module(base64ToBytes(base64) as Uint8Array<ArrayBuffer>);
  return new WebAssembly.Instance(module, { ...imports, env });
}
