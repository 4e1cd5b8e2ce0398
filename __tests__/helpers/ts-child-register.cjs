// Preloaded (after ts-node/register/transpile-only) into a child `node` that
// runs the TypeScript sources directly: maps the `.js` suffixes of relative
// imports to the `.ts` files, as jest's moduleNameMapper does.
const Module = require('node:module');

const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  if (request.startsWith('.') && request.endsWith('.js')) {
    try {
      return resolve.call(this, `${request.slice(0, -3)}.ts`, parent, ...rest);
    } catch {
      // Not a TypeScript source: resolve as written.
    }
  }
  return resolve.call(this, request, parent, ...rest);
};
