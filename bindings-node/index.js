'use strict'
// The native module as it is, with its streams usable in `for await`.
const native = require('./native.js')

// Log records and events, usable in `for await`.
async function* items() {
  for (;;) {
    const item = await this.read()
    if (item === null) return
    yield item
  }
}
native.LogStream.prototype[Symbol.asyncIterator] = items
native.EventStream.prototype[Symbol.asyncIterator] = items

module.exports = native
