'use strict'
// The native module as it is, with a log stream usable in `for await`.
const native = require('./native.js')

native.LogStream.prototype[Symbol.asyncIterator] = async function* records() {
  for (;;) {
    const record = await this.read()
    if (record === null) return
    yield record
  }
}

module.exports = native
