// Compiled with `tsc --noEmit` by the tests: index.d.ts describes the API as it is used.
import { Engine, connect, LogRecord, ExecResult } from '..'

async function story(e: Engine): Promise<number> {
  const id: string = await e.createContainer({ Image: 'busybox', Cmd: ['true'] }, 'typed')
  await e.start(id)
  const code: number = await e.wait(id)
  for await (const r of e.logs(id, true)) {
    const rec: LogRecord = r
    rec.data.toString()
  }
  const x: ExecResult = await e.exec(id, ['true'])
  await e.remove(id, { force: true })
  for await (const ev of e.events(0, Date.now() / 1000)) ev.Action
  const images: any[] = await e.listImages()
  const auth = { username: 'u', password: 'p', serveraddress: 'localhost:5000' }
  const status: string = await e.login(auth)
  for await (const m of e.pull('localhost:5000/x:1', { platform: 'linux/amd64', auth })) m.status
  for await (const m of e.push('localhost:5000/x:1', { auth })) m.aux
  const built = { tags: ['x:1'], buildArgs: { A: 'b' }, labels: { l: 'v' }, noCache: true, target: 's' }
  for await (const m of e.build('/tmp/ctx', built)) m.stream
  return code + x.exitCode + images.length + status.length
}

story(new Engine({ root: '/tmp/r' }))
story(connect('unix:///run/ketch/ketch.sock'))
