// Counts a run of the HTTP caching test suite the way its result pages
// do: required tests pass or fail, optimal and check tests are counted
// apart, and a test whose setup failed or that depends on a failed test
// is neither. Reads the cli's JSON on stdin; prints one JSON object.
import fs from 'fs'
import tests from 'http-cache-tests/tests/index.mjs'
import surrogate from 'http-cache-tests/tests/surrogate-control.mjs'

const suites = [...tests, surrogate]
const byId = new Map()
for (const s of suites) for (const t of s.tests) byId.set(t.id, t)
const results = JSON.parse(fs.readFileSync(0, 'utf8'))

function passed (id) {
  return results[id] === true
}

function verdict (id) {
  const t = byId.get(id)
  const r = results[id]
  if (r === undefined) return 'untested'
  for (const dep of t.depends_on || []) {
    if (!passed(dep)) return 'dependency_failed'
  }
  if (Array.isArray(r) && r[0] === 'Setup') return 'setup_failed'
  const kind = t.kind || 'required'
  if (kind === 'required') return r === true ? 'pass' : 'fail'
  if (kind === 'optimal') return r === true ? 'optimal_pass' : 'optimal_fail'
  return r === true ? 'check_yes' : 'check_no'
}

const counts = { total: byId.size }
const failures = []
for (const [id, t] of byId) {
  if (t.browser_only) { counts.browser_only = (counts.browser_only || 0) + 1; continue }
  const v = verdict(id)
  counts[v] = (counts[v] || 0) + 1
  if (v === 'fail') failures.push({ id, name: t.name, result: results[id] })
}
console.log(JSON.stringify({ counts, failures }, null, 1))
