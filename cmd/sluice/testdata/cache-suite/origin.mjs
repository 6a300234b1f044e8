// Starts the suite's origin server (npm run server does the same) bound
// to 127.0.0.1 only: its server.mjs listens on every address, and tests
// use loopback alone. The port comes from npm_config_port.
import http from 'http'

const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  return listen.call(this, port, '127.0.0.1', ...rest)
}
await import('http-cache-tests/server/server.mjs')
