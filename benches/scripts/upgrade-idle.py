# N idle clients (psycopg 3) with SET state and a server-side prepared
# statement, then SIGUSR2: how long until the old process exits, and
# whether every client's next queries run on the new one with its settings.
#
#   python3 benches/scripts/upgrade-idle.py BIN N PG_PORT
#   e.g. .venv/bin/python benches/scripts/upgrade-idle.py target/release/pooler 1000 55432
import os, re, signal, subprocess, sys, tempfile, time, psycopg
binary, n, pg_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
port = 6510
work = tempfile.mkdtemp()
cfg = os.path.join(work, "up.toml")
open(cfg, "w").write(f"""[server]
listen = "127.0.0.1:{port}"
max_client_connections = 5000
shutdown_timeout = "10s"
[pool]
mode = "transaction"
size = 20
[auth]
method = "trust"
[[nodes]]
host = "127.0.0.1"
port = {pg_port}
""")
log = open(os.path.join(work, "up.log"), "w")
p = subprocess.Popen([binary, "--config", cfg], stderr=log, stdout=subprocess.DEVNULL)
for _ in range(100):
    try:
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close(); break
    except Exception:
        time.sleep(0.1)
conns = []
for i in range(n):
    c = psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True, prepare_threshold=0)
    c.execute(f"SET work_mem = '{5001 + 2 * i}kB'")
    c.execute("SELECT %s::int", (i,))
    conns.append(c)
t0 = time.monotonic()
os.kill(p.pid, signal.SIGUSR2)
p.wait()
gone = time.monotonic() - t0
bad = 0
for i, c in enumerate(conns):
    try:
        wm = c.execute("SHOW work_mem").fetchone()[0]
        x = c.execute("SELECT %s::int", (i,)).fetchone()[0]
        if (wm != f"{5001 + 2 * i}kB") or (x != i):
            bad += 1
            print("wrong", i, wm, x)
    except Exception as e:
        bad += 1
        print("failed", i, repr(e))
print(f"{n} idle clients: old process gone {gone*1000:.0f} ms after SIGUSR2; {bad} clients wrong or failed")
text = open(os.path.join(work, "up.log")).read()
for line in text.splitlines():
    if "the new process serves" in line or "shutdown complete" in line or "handed over" in line and "servers=" in line:
        print(line[:160])
succ = re.search(r"started the new process pid=(\d+)", text)
if succ:
    os.kill(int(succ.group(1)), signal.SIGTERM)
