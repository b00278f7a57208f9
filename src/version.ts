/**
 * Midge's version, taken from package.json at build time: the JSON import is resolved by Deno
 * and Bun alike and bundled into the compiled executable, so there is one place to bump it.
 */
import pkg from "../package.json" with { type: "json" };

/** The version from package.json, e.g. "0.1.0". */
export const VERSION: string = pkg.version;
