-- mobileops serve: the REST API (docs/api.md). The server is the api plugin; each request
-- that acts runs this same command line, so locking, state and cleanup are the CLI's.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "serve",
  summary = "Serve the REST API on a unix socket or on TCP with a token",
  description = "Default: the unix socket $MOBILEOPS_RUN/api.sock (mode 0600). TCP only with --token-file (clients send `Authorization: Bearer TOKEN`). SIGTERM or SIGINT stops it cleanly.",
  default = "api",
}

wf:verb{
  name = "api",
  summary = "Serve the API until SIGTERM or SIGINT (the default verb: `mobileops serve`)",
  options = {
    { name = "socket", type = "string", metavar = "PATH", summary = "unix socket (default $MOBILEOPS_RUN/api.sock); a stale one is replaced, a live one refused" },
    { name = "listen", type = "string", metavar = "HOST:PORT", summary = "serve TCP instead (e.g. 127.0.0.1:8780); needs --token-file" },
    { name = "token-file", type = "string", metavar = "FILE", summary = "the bearer token (16+ printable characters; the file must not be world-readable)" },
    { name = "tls-cert", type = "string", metavar = "FILE", summary = "PEM certificate: serve HTTPS (with --tls-key)" },
    { name = "tls-key", type = "string", metavar = "FILE", summary = "PEM private key of --tls-cert" },
    { name = "max-body", type = "int", metavar = "BYTES", summary = "largest request body (default 1048576; 413 beyond)" },
    { name = "read-timeout", type = "int", metavar = "SECONDS", summary = "a request (head, then body) must come within this, and an idle connection is closed after it (default 10)" },
    { name = "max-requests", type = "int", metavar = "N", summary = "requests under way at once (default 32; 503 beyond)" },
    { name = "max-streams", type = "int", metavar = "N", summary = "open log and event streams (default 16; 503 beyond)" },
    { name = "command-timeout", type = "int", metavar = "SECONDS", summary = "a command running longer is killed (504; default 120; streams exempt)" },
  },
  run = function(opts)
    local function nonempty(v) if v == nil or v == "" then return nil end return v end
    mo.plugins.api.serve{
      socket = nonempty(opts.socket), listen = nonempty(opts.listen),
      run_dir = mo.config("run_dir"), -- the default socket's directory
      token_file = nonempty(opts.token_file), tls_cert = nonempty(opts.tls_cert),
      tls_key = nonempty(opts.tls_key), version = mo.version,
      max_body = opts.max_body, read_timeout = opts.read_timeout,
      max_requests = opts.max_requests, max_streams = opts.max_streams,
      command_timeout = opts.command_timeout,
    }
  end,
}

return wf
