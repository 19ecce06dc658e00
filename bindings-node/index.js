'use strict'
// The native module as it is, with its streams usable in `for await`.
let native
try {
  native = require('./native.js')
} catch (e) {
  // A package installed from its source folder has no addon until it is built there.
  if (e && /Cannot find (module|native binding)|Failed to load native binding/.test(String(e.message))) {
    throw new Error(
      "ketch's native addon is not built in " + __dirname + ': run `npm install && npm run build` ' +
        'there (Rust and napi-rs build it), or install the tarball `npm pack` writes, which carries it',
      { cause: e },
    )
  }
  throw e
}

// Log records, events and progress messages, usable in `for await`.
async function* items() {
  for (;;) {
    const item = await this.read()
    if (item === null) return
    yield item
  }
}
native.LogStream.prototype[Symbol.asyncIterator] = items
native.EventStream.prototype[Symbol.asyncIterator] = items
native.ProgressStream.prototype[Symbol.asyncIterator] = items

module.exports = native
