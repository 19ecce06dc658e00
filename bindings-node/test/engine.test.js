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

for (const mode of ['embedded', 'remote']) {
  const engine = () => (mode === 'embedded' ? new Engine({ root }) : connect(`unix://${sock}`))

  test(`${mode}: create, start, wait, logs, remove`, async () => {
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
    await assert.rejects(e.inspect(id), { code: 'NOT_FOUND' })
  })

  test(`${mode}: events of a run`, async () => {
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

  test(`${mode}: errors carry their kind`, async () => {
    const e = engine()
    await assert.rejects(e.createContainer({ Image: 'no-such-image:1' }), { code: 'NOT_FOUND' })
    await assert.rejects(e.inspectImage('no-such-image:1'), { code: 'NOT_FOUND' })
    await assert.rejects(e.createContainer({ Cmd: ['true'] }), { code: 'INVALID_ARGUMENT' })
  })

  test(`${mode}: eight runs at once, and the event loop keeps turning`, async () => {
    const e = engine()
    let ticks = 0
    const timer = setInterval(() => { ticks++ }, 5)
    const run = async (i) => {
      const id = await e.createContainer({ Image: 'busybox', Cmd: ['sh', '-c', `sleep 0.3; echo ${i}`], HostConfig: NONE })
      await e.start(id)
      const code = await e.wait(id)
      let out = ''
      for await (const r of e.logs(id)) out += r.data.toString()
      await e.remove(id)
      return [code, out]
    }
    const results = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(run))
    clearInterval(timer)
    assert.deepStrictEqual(results, [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [0, `${i}\n`]))
    // The runs took at least 300 ms; a loop blocked by them would have ticked a few times.
    assert.ok(ticks >= 20, `the event loop turned only ${ticks} times`)
  })

  test(`${mode}: exec, follow, images, networks, volumes`, async () => {
    const e = engine()
    const id = await e.createContainer({ Image: 'busybox', Cmd: ['sh', '-c', 'echo a; sleep 0.5; echo b'], HostConfig: NONE })
    await e.start(id)
    const x = await e.exec(id, ['sh', '-c', 'echo in-exec; exit 4'])
    assert.deepStrictEqual([x.exitCode, x.output.toString()], [4, 'in-exec\n'])
    let followed = ''
    for await (const r of e.logs(id, true)) followed += r.data.toString()
    assert.strictEqual(followed, 'a\nb\n')
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
