// Prints one jest --json result as "P of T passed, F failed, S skipped", then every failed test.
const r = require(require('path').resolve(process.argv[2]))
const skipped = r.numPendingTests + r.numTodoTests
console.log(`${r.numPassedTests} of ${r.numTotalTests} passed, ${r.numFailedTests} failed, ${skipped} skipped` +
  (r.numRuntimeErrorTestSuites ? `, ${r.numRuntimeErrorTestSuites} suites failed to run` : ''))
for (const f of r.testResults) {
  const file = f.name.replace(/.*\/(test|src)\//, '$1/')
  for (const t of f.assertionResults) if (t.status === 'failed') console.log(`FAIL ${file} › ${t.fullName}`)
  if (f.status === 'failed' && f.assertionResults.length === 0) console.log(`SUITE ${file}: ${f.message.slice(0, 300)}`)
}
