#!/usr/bin/env python3
"""Drive an MCP server over stdio as a client does: initialize, notifications/initialized, one tools/call
(explain_xid for XID 79), then close stdin and expect a clean exit. Usage: mcp-stdio-check.py COMMAND [ARG...]
Prints one line saying what it saw; exits non-zero, saying why, on anything else. Standard library only."""
import json
import subprocess
import sys
import threading


def main(command):
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # A server that hangs must not hang the check.
    timer = threading.Timer(60, server.kill)
    timer.start()
    try:
        def send(message):
            server.stdin.write((json.dumps(message) + "\n").encode())
            server.stdin.flush()

        def answer(request_id):
            for line in server.stdout:
                message = json.loads(line)
                if message.get("id") == request_id:
                    if "error" in message:
                        raise SystemExit(f"{command}: request {request_id} failed: {message['error']}")
                    return message["result"]
            raise SystemExit(f"{command}: stdout closed before answer {request_id}: {server.stderr.read().decode()}")

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "package-check", "version": "1"}}})
        init = answer(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "explain_xid", "arguments": {"code": 79}}})
        result = answer(2)
        server.stdin.close()
        code = server.wait()
    finally:
        timer.cancel()
    catalog = (result.get("structuredContent") or {}).get("explanation", {}).get("catalog", {})
    problems = []
    if init.get("serverInfo", {}).get("name") != "gpuscope-mcp":
        problems.append(f"serverInfo {init.get('serverInfo')}")
    if result.get("isError") or catalog.get("code") != 79:
        problems.append(f"explain_xid answered {json.dumps(result)[:300]}")
    if code != 0:
        problems.append(f"exit status {code} after stdin closed")
    if problems:
        raise SystemExit(f"{command}: " + "; ".join(problems))
    print(f"ok: {' '.join(command)}: {init['serverInfo']['name']} {init['serverInfo'].get('version')}, protocol "
          f"{init['protocolVersion']}, explain_xid 79 = {catalog.get('mnemonic') or catalog.get('description')}")


if __name__ == "__main__":
    main(sys.argv[1:])
