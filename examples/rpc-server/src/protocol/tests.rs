use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::session::Session;
use crate::store::Store;

/// Feeds `input` (whole) to a fresh session; returns the replies and whether it stayed open.
fn talk(input: &[u8]) -> (String, bool) {
    let store = Arc::new(Store::new(1 << 20));
    let mut session = Session::new(store, 1024, 1_000_000);
    let mut out = Vec::new();
    let open = session.feed(input, 1_000_000, &mut out);
    (String::from_utf8(out).unwrap(), open)
}

#[test]
fn storage_and_retrieval_follow_memcached() {
    let (out, open) = talk(
        b"set a 5 0 3\r\nabc\r\nget a b\r\nadd a 0 0 1\r\nx\r\nreplace b 0 0 1\r\nx\r\n\
          append a 0 0 2\r\nde\r\nprepend a 0 0 1\r\n_\r\ngets a\r\n",
    );
    assert!(open);
    assert_eq!(
        out,
        "STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\nNOT_STORED\r\nNOT_STORED\r\nSTORED\r\nSTORED\r\n\
         VALUE a 5 6 3\r\n_abcde\r\nEND\r\n"
    );
}

#[test]
fn cas_incr_decr_touch_delete_and_flush() {
    let (out, _) = talk(
        b"set n 0 0 2\r\n10\r\ngets n\r\ncas n 0 0 1 99 \r\n5\r\ncas n 0 0 1 1\r\n7\r\n\
          cas zz 0 0 1 1\r\n1\r\nincr n 5\r\ndecr n 100\r\nincr none 1\r\nset s 0 0 1\r\nx\r\n\
          incr s 1\r\nincr n abc\r\ntouch n 100\r\ntouch none 1\r\ndelete n\r\ndelete n\r\n\
          flush_all\r\nget s\r\n",
    );
    assert_eq!(
        out,
        "STORED\r\nVALUE n 0 2 1\r\n10\r\nEND\r\nEXISTS\r\nSTORED\r\nNOT_FOUND\r\n12\r\n0\r\n\
         NOT_FOUND\r\nSTORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n\
         CLIENT_ERROR invalid numeric delta argument\r\nTOUCHED\r\nNOT_FOUND\r\nDELETED\r\n\
         NOT_FOUND\r\nOK\r\nEND\r\n"
    );
}

#[test]
fn noreply_silences_and_errors_are_memcacheds() {
    let (out, open) = talk(
        b"set a 0 0 1 noreply\r\nx\r\ndelete a noreply\r\nbogus\r\n\r\nget\r\nset a x 0 1\r\n\
          set k 0 0 2000\r\n",
    );
    assert!(open);
    assert_eq!(
        out,
        "ERROR\r\nERROR\r\nERROR\r\n\
         CLIENT_ERROR bad command line format\r\nSERVER_ERROR object too large for cache\r\n"
    );
    let long_key = format!("get {}\r\n", "k".repeat(KEY_MAX + 1));
    assert_eq!(talk(long_key.as_bytes()).0, "CLIENT_ERROR bad command line format\r\n");
    // A block that does not end where its line said: memcached 1.6 (checked against Debian's)
    // takes length + 2 bytes as the block, refuses it, and reads on: the leftover `\r\n` is an
    // empty line (ERROR), and the connection stays in sync.
    let (out, open) = talk(b"set a 0 0 1\r\nxyz\r\nget a\r\nset b 0 0 2\r\nhi\r\nget b\r\n");
    let expected =
        "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\nSTORED\r\nVALUE b 0 2\r\nhi\r\nEND\r\n";
    assert_eq!((out.as_str(), open), (expected, true));
    let (out, open) = talk(b"version\r\nverbosity 1\r\nquit\r\nget a\r\n");
    assert!(out.starts_with("VERSION wave-rpc-server") && out.ends_with("OK\r\n"), "{out}");
    assert!(!open, "quit closes, and nothing after it is answered");
}

#[test]
fn a_refused_value_block_is_discarded_across_reads() {
    let store = Arc::new(Store::new(1 << 20));
    let mut session = Session::new(store, 4, 0);
    let mut out = Vec::new();
    assert!(session.feed(b"set big 0 0 10\r\n0123", 0, &mut out));
    assert!(session.feed(b"456789\r\nget big\r\n", 0, &mut out));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
}

#[test]
fn a_line_without_end_is_bounded() {
    let (out, open) = talk(&vec![b'a'; LINE_MAX + 10]);
    assert_eq!((out.as_str(), open), ("CLIENT_ERROR line too long\r\n", false));
}

#[test]
fn expiry_relative_absolute_and_stats() {
    let store = Arc::new(Store::new(1 << 20));
    // Beyond 30 days an exptime is a Unix time, below it seconds from now.
    let now = 2_600_000;
    let mut session = Session::new(store, 1024, now);
    let mut out = Vec::new();
    let sets = b"set r 0 10 1\r\nx\r\nset a 0 2600005 1\r\ny\r\nset g 0 -1 1\r\nz\r\n";
    session.feed(sets, now, &mut out);
    out.clear();
    session.feed(b"get r a g\r\n", now + 4, &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "VALUE r 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\nEND\r\n"
    );
    out.clear();
    session.feed(b"get r a\r\nstats\r\n", now + 10, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("END\r\nSTAT pid "), "{text}");
    assert!(text.contains("STAT get_hits 2\r\n") && text.ends_with("END\r\n"), "{text}");
}

proptest! {
    /// Any bytes, in any split: no panic, and the session's buffer stays bounded.
    #[test]
    fn garbage_in_any_split_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cut in 0usize..3000,
    ) {
        let store = Arc::new(Store::new(1 << 16));
        let mut session = Session::new(store, 512, 0);
        let mut out = Vec::new();
        let cut = cut.min(bytes.len());
        if session.feed(&bytes[..cut], 0, &mut out) {
            session.feed(&bytes[cut..], 0, &mut out);
        }
    }
}
