//! `tier-bench` from the outside: a start time already past is refused with a clear message,
//! and two runs started side by side at one instant append one header and a row each to one
//! CSV. Needs root (userfaultfd), which CI has.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_tier-bench");

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    u64::try_from(since.as_millis()).expect("fits u64")
}

fn bench(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(["--arena-mb", "4", "--warmup-seconds", "0.5", "--seconds", "0.5"]).args(args);
    command
}

#[test]
fn a_start_time_already_past_is_refused() {
    let past = (now_ms() - 60_000).to_string();
    let out = bench(&["--setup", "resident", "--start-unix-ms", &past]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("after --start-unix-ms"), "{stderr}");
}

#[test]
fn runs_side_by_side_share_one_csv() {
    let dir = std::env::temp_dir().join(format!("tier-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pairs.csv");
    let csv_arg = csv.to_str().unwrap().to_owned();
    let at = (now_ms() + 3_000).to_string();
    let runs: Vec<_> = [("resident", "twin-random"), ("random", "random")]
        .iter()
        .map(|(setup, label)| {
            bench(&["--setup", setup, "--label", label, "--csv", &csv_arg])
                .args(["--start-unix-ms", &at, "--random-percent", "50"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("tier-bench")
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one header and two rows: {text}");
    assert!(lines[0].starts_with("setup,run,"));
    let _ = std::fs::remove_dir_all(&dir);
}
