// The Node front door: the same story embedded and through a daemon, started by this test on
// the same root. The harness (tests/tests/node.rs) sets KETCH_TEST_ROOTFS, KETCH_BIN,
// KETCH_SHIM, KETCH_BRIDGE and KETCH_IP_FORWARD.
'use strict'
const { test, before, after } = require('node:test')
const assert = require('node:assert')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { Engine, connect } = require('..')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ketch-node-'))
const root = path.join(dir, 'root')
const sock = path.join(dir, 'ketch.sock')
let daemon

function up(socket) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10000
    const attempt = () => {
      const c = net.connect(socket)
      c.on('connect', () => { c.end(); resolve() })
      c.on('error', () => {
        if (Date.now() > deadline) reject(new Error('the daemon did not come up'))
        else setTimeout(attempt, 20)
      })
    }
    attempt()
  })
}

before(async () => {
  const e = new Engine({ root })
  await e.importImage(process.env.KETCH_TEST_ROOTFS, 'busybox')
  daemon = spawn(process.env.KETCH_BIN, ['--root', root, 'daemon', '-H', `unix://${sock}`], {
    stdio: 'ignore',
  })
  await up(sock)
})

after(async () => {
  try {
    const e = new Engine({ root })
    for (const c of await e.listContainers(true)) await e.remove(c.Id, { force: true })
  } finally {
    if (daemon) daemon.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

const NONE = { NetworkMode: 'none' }
// A hang guard for each test (not a timing claim): a test that blocks fails instead.
const GUARD = { timeout: 120000 }

// Polls `f` every 20 ms until it holds; fails naming `what` once `secs` have passed.
async function waitUntil(what, secs, f) {
  const deadline = Date.now() + secs * 1000
  while (!(await f())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${secs} s waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

// A container's log so far, as text.
async function logText(e, id) {
  let out = ''
  for await (const r of e.logs(id)) out += r.data.toString()
  return out
}

// `ketch registry serve` on a loopback port of its own, with the harness's htpasswd (user
// `node`, password `js`): its address once it listens.
function registry() {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.env.KETCH_BIN,
      ['--root', path.join(dir, 'registry'), 'registry', 'serve', '--addr', '127.0.0.1:0',
        '--htpasswd', process.env.KETCH_TEST_HTPASSWD],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let text = ''
    p.stderr.on('data', (d) => {
      text += d
      // The address once its line is whole: a chunk may end inside it.
      const m = /:\/\/(\S+)\s/.exec(text)
      if (m) resolve({ addr: m[1], stop: () => p.kill('SIGKILL') })
    })
    p.on('exit', () => reject(new Error(`registry serve exited: ${text}`)))
  })
}

for (const mode of ['embedded', 'remote']) {
  const engine = () => (mode === 'embedded' ? new Engine({ root }) : connect(`unix://${sock}`))

  test(`${mode}: create, start, wait, logs, remove`, GUARD, async () => {
    const e = engine()
    const id = await e.createContainer(
      { Image: 'busybox', Cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], HostConfig: NONE },
      `story-${mode}`,
    )
    assert.match(id, /^[0-9a-f]{64}$/)
    await e.start(id)
    assert.strictEqual(await e.wait(id), 3)
    const records = []
    for await (const r of e.logs(id)) records.push([r.stream, r.data.toString()])
    assert.deepStrictEqual(records, [['stdout', 'out\n'], ['stderr', 'err\n']])
    assert.strictEqual((await e.inspect(id)).State.ExitCode, 3)
    await e.remove(id)
    await assert.rejects(e.inspect(id), { code: 'NOT_FOUND', message: `No such container: ${id}` })
  })

  test(`${mode}: events of a run`, GUARD, async () => {
    const e = engine()
    const since = Date.now() / 1000
    const id = await e.createContainer({ Image: 'busybox', Cmd: ['true'], HostConfig: NONE })
    await e.start(id)
    await e.wait(id)
    await e.remove(id)
    const actions = []
    // Date.now() is whole milliseconds: the next one is past everything done so far.
    for await (const ev of e.events(since, (Date.now() + 1) / 1000)) {
      if (ev.Actor.ID === id) actions.push(ev.Action)
    }
    assert.deepStrictEqual(actions, ['create', 'start', 'die', 'destroy'])
  })

  test(`${mode}: errors carry their kind`, GUARD, async () => {
    const e = engine()
    const noImage = { code: 'NOT_FOUND', message: 'No such image: no-such-image:1' }
    await assert.rejects(e.createContainer({ Image: 'no-such-image:1' }), noImage)
    await assert.rejects(e.inspectImage('no-such-image:1'), noImage)
    await assert.rejects(e.createContainer({ Cmd: ['true'] }), {
      code: 'INVALID_ARGUMENT',
      message: 'config.Image is required',
    })
  })

  test(`${mode}: eight runs at once, and the event loop keeps turning`, GUARD, async () => {
    const e = engine()
    const all = [0, 1, 2, 3, 4, 5, 6, 7]
    // Each says `ready` once its trap is set, and its number and exits on SIGUSR1.
    const run = async (i) => {
      const id = await e.createContainer({
        Image: 'busybox',
        Cmd: ['sh', '-c', `trap 'echo ${i}; exit ${i}' USR1; echo ready; sleep 1000 & wait`],
        HostConfig: NONE,
      })
      await e.start(id)
      await waitUntil(`container ${i} ready`, 20, async () => (await logText(e, id)) === 'ready\n')
      return [id, (await e.inspect(id)).State.Pid]
    }
    const started = await Promise.all(all.map(run))
    // Eight waits pending at once; none can end before this thread, from the event loop,
    // signals the containers: a call that held the loop would never let it.
    const waits = started.map(([id]) => e.wait(id))
    setImmediate(() => {
      for (const [, pid] of started) process.kill(pid, 'SIGUSR1')
    })
    assert.deepStrictEqual(await Promise.all(waits), all)
    const outs = await Promise.all(started.map(([id]) => logText(e, id)))
    assert.deepStrictEqual(outs, all.map((i) => `ready\n${i}\n`))
    await Promise.all(started.map(([id]) => e.remove(id)))
  })

  test(`${mode}: exec, follow, images, networks, volumes`, GUARD, async () => {
    const e = engine()
    // It says a, runs until SIGUSR1, then says b and exits.
    const id = await e.createContainer({
      Image: 'busybox',
      Cmd: ['sh', '-c', "trap 'echo b; exit 6' USR1; echo a; sleep 1000 & wait"],
      HostConfig: NONE,
    })
    await e.start(id)
    await waitUntil('the container to say a', 20, async () => (await logText(e, id)) === 'a\n')
    const x = await e.exec(id, ['sh', '-c', 'echo in-exec; exit 4'])
    assert.deepStrictEqual([x.exitCode, x.output.toString()], [4, 'in-exec\n'])
    // Followed: what is there, then (the signal sent once a is read) what comes until it stops.
    let followed = ''
    for await (const r of e.logs(id, true)) {
      followed += r.data.toString()
      if (followed === 'a\n') await e.kill(id, 'USR1')
    }
    assert.strictEqual(followed, 'a\nb\n')
    assert.strictEqual(await e.wait(id), 6)
    await e.remove(id)
    await e.tagImage('busybox', `tagged-${mode}:1`)
    assert.ok((await e.listImages()).some((i) => i.RepoTags.includes(`tagged-${mode}:1`)))
    await e.removeImage(`tagged-${mode}:1`)
    const net = await e.createNetwork({ Name: `net-${mode}` })
    assert.ok((await e.listNetworks()).some((n) => n.Id === net))
    await e.removeNetwork(`net-${mode}`)
    const v = await e.createVolume({ Name: `vol-${mode}` })
    assert.strictEqual(v.Name, `vol-${mode}`)
    await e.removeVolume(`vol-${mode}`)
    assert.ok(!(await e.listVolumes()).some((x) => x.Name === `vol-${mode}`))
  })
}

for (const mode of ['embedded', 'remote']) {
  const engine = () => (mode === 'embedded' ? new Engine({ root }) : connect(`unix://${sock}`))

  test(`${mode}: push and pull through a registry`, GUARD, async () => {
    const reg = await registry()
    try {
      const e = engine()
      const image = `${reg.addr}/node/${mode}:1`
      await e.tagImage('busybox', image)
      const drain = async (stream) => {
        const out = []
        for await (const m of stream) out.push(m)
        return out
      }
      await assert.rejects(drain(e.push(image)), { code: 'PERMISSION_DENIED' })
      await assert.rejects(e.login({ username: 'node', password: 'no', serveraddress: reg.addr }), {
        code: 'PERMISSION_DENIED',
      })
      const auth = { username: 'node', password: 'js', serveraddress: reg.addr }
      assert.strictEqual(await e.login(auth), 'Login Succeeded')
      const pushed = await drain(e.push(image, { auth }))
      assert.ok(pushed.some((m) => m.status === 'Pushed'), JSON.stringify(pushed))
      const digest = pushed.find((m) => m.aux).aux.Digest
      assert.match(digest, /^sha256:[0-9a-f]{64}$/)
      await e.removeImage(image)
      const pulled = await drain(e.pull(image, { auth }))
      assert.ok(pulled.some((m) => m.status === `Digest: ${digest}`), JSON.stringify(pulled))
      const digests = (await e.inspectImage(image)).RepoDigests
      assert.ok(digests.includes(`${reg.addr}/node/${mode}@${digest}`), JSON.stringify(digests))
      await assert.rejects(drain(e.pull(`${reg.addr}/node/none:1`, { auth })), { code: 'NOT_FOUND' })
    } finally {
      reg.stop()
    }
  })
}

for (const mode of ['embedded', 'remote']) {
  const engine = () => (mode === 'embedded' ? new Engine({ root }) : connect(`unix://${sock}`))

  test(`${mode}: build an image from a Dockerfile`, GUARD, async () => {
    const e = engine()
    const ctx = fs.mkdtempSync(path.join(dir, 'ctx-'))
    fs.writeFileSync(
      path.join(ctx, 'Dockerfile'),
      'FROM busybox\nARG WHO=world\nCOPY hello.txt /\nRUN echo "hello $WHO" >> /hello.txt\n',
    )
    fs.writeFileSync(path.join(ctx, 'hello.txt'), 'from the context\n')
    const drain = async (stream) => {
      const out = []
      for await (const m of stream) out.push(m)
      return out
    }
    const tag = `nodebuilt-${mode}:1`
    const msgs = await drain(e.build(ctx, { tags: [tag], buildArgs: { WHO: mode }, network: 'none' }))
    assert.ok(msgs.some((m) => (m.stream || '').startsWith('Step 4/4 : RUN')), JSON.stringify(msgs))
    const id = msgs.find((m) => m.aux).aux.ID
    assert.strictEqual((await e.inspectImage(tag)).Id, id)
    const again = await drain(e.build(ctx, { tags: [tag], buildArgs: { WHO: mode }, network: 'none' }))
    assert.strictEqual(again.filter((m) => (m.stream || '').includes('Using cache')).length, 3)
    assert.strictEqual(again.find((m) => m.aux).aux.ID, id)
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN exit 4\n')
    await assert.rejects(drain(e.build(ctx, { network: 'none' })), /returned a non-zero code: 4/)
  })
}

for (const mode of ['embedded', 'remote']) {
  const engine = () => (mode === 'embedded' ? new Engine({ root }) : connect(`unix://${sock}`))

  // To a daemon on another root: the container, its changes and its labels go; it runs
  // there, and is gone here.
  test(`${mode}: a container moves to another engine`, GUARD, async () => {
    const otherRoot = path.join(dir, `other-${mode}`)
    const otherSock = path.join(dir, `other-${mode}.sock`)
    const other = spawn(process.env.KETCH_BIN, ['--root', otherRoot, 'daemon', '-H', `unix://${otherSock}`], {
      stdio: 'ignore',
    })
    try {
      await up(otherSock)
      const dest = connect(`unix://${otherSock}`)
      const e = engine()
      const body = { Image: 'busybox', Cmd: ['sh', '-c', 'echo moved > /f; exec sleep 100'], Labels: { k: 'v' }, HostConfig: NONE }
      const id = await e.createContainer(body)
      await e.start(id)
      const there = await e.moveContainer(id, dest, { name: `moved-${mode}` })
      assert.strictEqual(there, id)
      const c = await dest.inspect(id)
      assert.strictEqual(c.Name, `/moved-${mode}`)
      assert.strictEqual(c.State.Running, true)
      assert.strictEqual(c.Config.Labels.k, 'v')
      await assert.rejects(e.inspect(id), { code: 'NOT_FOUND' })
      await dest.remove(id, { force: true })
    } finally {
      other.kill('SIGKILL')
      const o = new Engine({ root: otherRoot })
      for (const c of await o.listContainers(true)) await o.remove(c.Id, { force: true })
    }
  })
}
