"""The same byte streams (error paths, mostly) sent to rpc-server and to Debian's memcached, on
fresh connections; every reply must be the same, and so must the connection's state after it
(a `get` of a key never set, answered or not). Usage: memcached_diff.py OURS_IP THEIR_IP PORT;
prints one line per difference and `cases N differ K`; exits 1 if any differ."""
import socket, sys, time
CASES = [
    [b"set a 0 0 1\r\nxyz\r\nget a\r\nset b 0 0 2\r\nhi\r\nget b\r\n"],
    [b"set c 0 0 1\r\nxy", b"z\r\nget c\r\n"],
    [b"set big 0 0 2000000\r\n" + b"x" * 2000002 + b"get big\r\nset d 0 0 1\r\nd\r\nget d\r\n"],
    [b"bogus\r\n\r\nget\r\nset a x 0 1\r\nincr nokey 1\r\ndelete nokey\r\ntouch nokey 10\r\n"],
    [b"set n 0 0 1\r\n5\r\nincr n abc\r\nincr n 3\r\ndecr n 100\r\nget n\r\n"],
    [b"cas a 0 0 1\r\nx\r\ncas a 0 0 1 99\r\nx\r\nappend zz 0 0 1\r\nq\r\n"],
    [b"gets\r\nset a 0 0\r\nadd a 0 0\r\ndelete\r\ndelete a b c\r\ndelete a 0\r\ndelete a 1\r\n"],
    [b"incr a\r\nincr a 1 2 3\r\ntouch a\r\nflush_all a b\r\nflush_all x\r\nverbosity\r\n"],
]
def talk(addr, parts):
    s = socket.create_connection(addr, timeout=5)
    for p in parts:
        s.sendall(p); time.sleep(0.15)
    s.settimeout(0.5)
    got = b""
    try:
        while True:
            c = s.recv(65536)
            if not c: got += b"<EOF>"; break
            got += c
    except socket.timeout:
        pass
    s.sendall(b"get never_set\r\n")
    try:
        tail = s.recv(100)
    except Exception as e:
        tail = repr(e).encode()
    s.close()
    return got, tail
bad = 0
for i, parts in enumerate(CASES):
    ours = talk((sys.argv[1], 11211), parts)
    theirs = talk((sys.argv[2], int(sys.argv[3])), parts)
    if ours != theirs:
        bad += 1
        print("case", i, "differs:\n ours  ", ours, "\n theirs", theirs)
print("cases", len(CASES), "differ", bad)
sys.exit(1 if bad else 0)
