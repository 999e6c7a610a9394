#!/usr/bin/env node
// Runs the prebuilt gpuscope-mcp binary for this platform. npm installs exactly one of the optional
// dependencies `gpuscope-mcp-<platform>-<arch>` (each declares its os and cpu), and this launcher finds it.
// stdin, stdout and stderr are the binary's own, so MCP over stdio passes through untouched.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");

const target = `${process.platform}-${process.arch}`;
const pkg = `gpuscope-mcp-${target}`;
let binary;
try {
  binary = path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "bin", "gpuscope-mcp");
} catch {
  process.stderr.write(
    `gpuscope-mcp: no prebuilt binary for ${target} (the npm package ${pkg} is not installed).\n` +
      "Prebuilt binaries exist for: " + Object.keys(require("../package.json").optionalDependencies).join(", ") +
      ".\nElsewhere, build it: cargo install --git https://github.com/gpuscope/gpuscope gpuscope-mcp\n",
  );
  process.exit(1);
}

const child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });
// The MCP client stops the server with a signal: pass it on, and let the binary shut down cleanly.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("error", (err) => {
  process.stderr.write(`gpuscope-mcp: cannot run ${binary}: ${err.message}\n`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    process.kill(process.pid, signal);
  } else {
    process.exit(code ?? 1);
  }
});
