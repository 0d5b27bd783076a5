#!/usr/bin/env python3
"""What Lua costs inside Redis: EVALSHA microseconds (INFO commandstats) of
synthetic scripts shaped like statushook's, against a redis-server on
loopback. Uses database 9 and flushes it at the end.

    python3 core/benches/support/redis_lua_costs.py [port]   # default 6379

Reported in BENCHMARKS.md ("Fourth pass"): much of a script's time is
outside its commands' own time (arguments turned into Lua strings, each
redis.call's trip through the Lua bridge, Lua string work), which is why
fewer commands per delivery saved little.
"""
import socket
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
s = socket.create_connection(("127.0.0.1", PORT))
f = s.makefile("rb")
def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
def read():
    line = f.readline()
    t = line[:1]
    if t in b"+-:": return line
    if t == b"$":
        n = int(line[1:]); 
        if n < 0: return None
        d = f.read(n + 2); return d[:-2]
    if t == b"*":
        n = int(line[1:]); return [read() for _ in range(max(n,0))]
def cmd(*a):
    s.sendall(enc(*a)); return read()
def stats(name):
    txt = cmd("INFO", "commandstats").decode()
    for l in txt.splitlines():
        if l.startswith("cmdstat_%s:" % name):
            d = dict(kv.split("=") for kv in l.split(":",1)[1].split(","))
            return int(d["calls"]), int(d["usec"])
    return 0, 0
def run(label, script, args, n=300):
    sha = cmd("SCRIPT", "LOAD", script).decode()
    c0, u0 = stats("evalsha")
    for _ in range(n):
        r = cmd("EVALSHA", sha, 0, *args)
    c1, u1 = stats("evalsha")
    print("%-50s %8.1f us/call" % (label, (u1 - u0) / (c1 - c0)))
body = "x" * 600
cmd("SELECT", 9)
run("empty script, 5 args", "return 1", ["a"] * 5)
run("empty script, 1000 short args", "return 1", ["a"] * 1000)
run("empty script, 100 x 600B args", "return 1", [body] * 100)
run("loop 100: 6 concats, table of 12", """
local n=0
for i=1,100 do local a = ARGV[1]..':job:'..i; local t = {'meta', ARGV[1], 'body', ARGV[1], 'bot', 'b', 'lane', 'l'}; table.insert(t,'m'); table.insert(t,'x'); table.insert(t,'r'); table.insert(t,'y'); n = n + #t end
return n""", ["pfx"])
run("100 x redis.call EXISTS", "for i=1,100 do redis.call('EXISTS', 'k'..i) end return 1", [])
run("100 x redis.call HSET 600B", "for i=1,100 do redis.call('HSET', 'tmpjob:'..i, 'body', ARGV[1], 'meta', ARGV[1]) end return 1", [body])
run("100 x ZADD one member", "for i=1,100 do redis.call('ZADD', 'tmpz', i, 'id'..i) end return 1", [])
run("1 x ZADD 100 members", "local t={} for i=1,100 do table.insert(t,i) table.insert(t,'id'..i) end redis.call('ZADD', 'tmpz', unpack(t)) return 1", [])
run("return 16 rows of {id,tok,600B,600B,n}", "local out={} for i=1,16 do table.insert(out,{'id'..i, i, ARGV[1], ARGV[1], 0}) end return out", [body])
run("16 x HMGET 6 fields (600B)", "for i=1,16 do redis.call('HMGET', 'tmpjob:'..i, 'meta','body','base','ord','msg','rank') end return 1", [])
cmd("FLUSHDB")
